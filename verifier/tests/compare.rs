//! The compare engine on generated trees.

use std::path::Path;

use proptest::prelude::*;
use verifier::{CompareOptions, compare};

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

fn tree_strategy() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop::sample::select(vec!["a", "b", "a.b", "a-b", "b0", "日本", "z"]);
    let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
    prop::collection::btree_map(path, prop::collection::vec(any::<u8>(), 0..300), 0..25).prop_map(
        |m| {
            // A path cannot be both a file and a directory.
            let keys: Vec<String> = m.keys().cloned().collect();
            m.into_iter()
                .filter(|(k, _)| !keys.iter().any(|o| o.starts_with(&format!("{k}/"))))
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_tree_equals_its_copy(files in tree_strategy()) {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_tree(&a, &files);
        write_tree(&b, &files);
        let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
        prop_assert!(!r.has_differences(), "{:?}", r);
        prop_assert_eq!(r.files_compared, files.len() as u64);
        prop_assert_eq!(r.content_checked, files.len() as u64);
    }

    #[test]
    fn one_changed_byte_is_found(files in tree_strategy(), pick: prop::sample::Index, at: prop::sample::Index) {
        let files: Vec<_> = files.into_iter().filter(|(_, d)| !d.is_empty()).collect();
        prop_assume!(!files.is_empty());
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_tree(&a, &files);
        let mut changed = files.clone();
        let k = pick.index(files.len());
        let i = at.index(changed[k].1.len());
        changed[k].1[i] ^= 0x80;
        let path = changed[k].0.clone();
        write_tree(&b, &changed);
        let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
        prop_assert_eq!(r.mismatched.count, 1);
        prop_assert_eq!(&r.mismatched.items[0].path, &path);
        prop_assert_eq!(&r.mismatched.items[0].what, &format!("content differs at byte {i}"));
    }
}

#[test]
fn change_at_start_middle_and_end_of_a_large_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
    write_tree(&a, &[("big.bin".into(), data.clone())]);
    for at in [0, data.len() / 2, data.len() - 1] {
        let mut d = data.clone();
        d[at] ^= 1;
        write_tree(&b, &[("big.bin".into(), d)]);
        let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
        assert_eq!(
            r.mismatched.items[0].what,
            format!("content differs at byte {at}")
        );
    }
}

#[test]
fn excluded_paths_are_not_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tree(
        &a,
        &[
            ("x.tmp".into(), b"1".to_vec()),
            ("cache/c".into(), b"2".to_vec()),
            ("keep".into(), b"3".to_vec()),
        ],
    );
    write_tree(
        &b,
        &[
            ("keep".into(), b"3".to_vec()),
            ("d/y.tmp".into(), b"4".to_vec()),
        ],
    );
    std::fs::create_dir_all(b.join("cache")).unwrap();
    let opts = CompareOptions {
        exclude: vec!["*.tmp".into(), "cache/**".into()],
        ..Default::default()
    };
    let r = compare(Some(&a), &b, &opts).unwrap();
    assert!(r.missing.is_empty() && r.mismatched.is_empty(), "{r:?}");
    // Only the directory `d` (whose file was excluded) is extra.
    assert_eq!(r.extra.count, 1);
    assert_eq!(r.extra.items[0].path, "d");
}

#[test]
fn finding_lists_are_capped_but_counts_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files: Vec<_> = (0..250).map(|i| (format!("f{i:03}"), vec![1u8])).collect();
    write_tree(&a, &files);
    std::fs::create_dir_all(&b).unwrap();
    let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
    assert_eq!(r.missing.count, 250);
    assert_eq!(r.missing.items.len(), verifier::LIST_CAP);
}
