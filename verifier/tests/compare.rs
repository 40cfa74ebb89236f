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

/// The walk keeps the directories near the root open; deeper, it opens a
/// directory again when it comes back to it. Both must give the same
/// inventory and content checks.
#[test]
fn a_tree_deeper_than_the_open_directories_is_compared() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut files = Vec::new();
    let mut dir = String::new();
    for depth in 0..90 {
        dir.push_str(&format!("d{depth}/"));
        files.push((format!("{dir}f"), format!("at depth {depth}").into_bytes()));
    }
    write_tree(&a, &files);
    write_tree(&b, &files);
    let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
    assert!(!r.has_differences(), "{r:?}");
    assert_eq!(
        (r.dirs_compared, r.files_compared, r.content_checked),
        (90, 90, 90)
    );

    let deep = b.join(&files[80].0);
    std::fs::write(&deep, b"at depth 8X").unwrap();
    std::fs::remove_file(b.join(&files[85].0)).unwrap();
    std::fs::write(b.join(&files[3].0), b"at depth X").unwrap();
    let r = compare(Some(&a), &b, &CompareOptions::default()).unwrap();
    let paths = |f: &verifier::Findings| -> Vec<(String, String)> {
        f.items
            .iter()
            .map(|i| (i.path.clone(), i.what.clone()))
            .collect()
    };
    assert_eq!(
        paths(&r.mismatched),
        // Tree order: d3/d4/… sorts before d3/f.
        [
            (files[80].0.clone(), "content differs at byte 10".into()),
            (files[3].0.clone(), "content differs at byte 9".into()),
        ]
    );
    assert_eq!(paths(&r.missing), [(files[85].0.clone(), "file".into())]);
}

/// A root given through a symlink is followed (a source is often configured
/// as a link to its volume); a symlink inside the tree is an entry of its own,
/// compared by target and never descended into.
#[test]
fn only_the_root_is_followed_through_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files = [("docs/x".to_string(), b"x".to_vec())];
    write_tree(&a, &files);
    write_tree(&b, &files);
    let outside = tmp.path().join("outside");
    write_tree(&outside, &[("secret".to_string(), b"s".to_vec())]);
    std::os::unix::fs::symlink(&outside, a.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, b.join("link")).unwrap();
    let via = tmp.path().join("via");
    std::os::unix::fs::symlink(&a, &via).unwrap();
    let r = compare(Some(&via), &b, &CompareOptions::default()).unwrap();
    assert!(!r.has_differences(), "{r:?}");
    // docs, docs/x and link: nothing under the link.
    assert_eq!(
        (r.dirs_compared, r.files_compared, r.content_checked),
        (1, 2, 1)
    );

    std::fs::remove_file(b.join("link")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), b.join("link")).unwrap();
    let r = compare(Some(&via), &b, &CompareOptions::default()).unwrap();
    assert_eq!(r.mismatched.count, 1, "{r:?}");
    assert!(r.mismatched.items[0].what.starts_with("symlink target:"));
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

/// The run manifest of a compare, as (path, size, sha256, match) lines.
fn manifest_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// However many workers read files, the report and the run manifest are the
    /// same, in tree order.
    #[test]
    fn workers_do_not_change_the_outcome(
        files in tree_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..6),
        threads in 2usize..6,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_tree(&a, &files);
        let mut changed = files.clone();
        for (f, at) in &flips {
            if changed.is_empty() { break; }
            let k = f.index(changed.len());
            if !changed[k].1.is_empty() {
                let i = at.index(changed[k].1.len());
                changed[k].1[i] ^= 0x55;
            }
        }
        write_tree(&b, &changed);
        let run = |threads: usize, name: &str| {
            let out = tmp.path().join(name);
            let opts = CompareOptions {
                threads,
                manifest_out: Some(out.clone()),
                ..Default::default()
            };
            let r = compare(Some(&a), &b, &opts).unwrap();
            (r, std::fs::read(&out).unwrap())
        };
        let (one, m1) = run(1, "one.jsonl");
        let (many, m2) = run(threads, "many.jsonl");
        prop_assert_eq!(&one, &many);
        prop_assert_eq!(m1, m2);
        let lines = manifest_lines(&tmp.path().join("one.jsonl"));
        let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
        let mut sorted = paths.clone();
        sorted.sort_by(|x, y| Path::new(x).cmp(Path::new(y)));
        prop_assert_eq!(paths, sorted);
    }
}

#[test]
fn every_content_checked_file_has_its_sha256_in_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files: Vec<(String, Vec<u8>)> = (0..300u32)
        .map(|i| {
            let len = (i as usize * 977) % 70_000;
            let data = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            (format!("d{}/f{i}", i % 9), data)
        })
        .collect();
    write_tree(&a, &files);
    write_tree(&b, &files);
    let out = tmp.path().join("m.jsonl");
    let opts = CompareOptions {
        manifest_out: Some(out.clone()),
        ..Default::default()
    };
    let r = compare(Some(&a), &b, &opts).unwrap();
    assert!(!r.has_differences(), "{r:?}");
    assert_eq!(r.content_checked, 300);
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(r.bytes_checked, total);
    let lines = manifest_lines(&out);
    assert_eq!(lines.len(), 300);
    let by_path: std::collections::HashMap<&str, &Vec<u8>> =
        files.iter().map(|(p, d)| (p.as_str(), d)).collect();
    for l in &lines {
        let data = by_path[l["path"].as_str().unwrap()];
        assert_eq!(l["sha256"], sha256_hex(data));
        assert_eq!(l["size"], data.len() as u64);
        assert_eq!(l["match"], true);
    }
}

#[test]
fn one_changed_file_among_many_small_ones_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let files: Vec<(String, Vec<u8>)> = (0..20_000u32)
        .map(|i| {
            let data = format!("file {i} {}", "x".repeat((i % 700) as usize)).into_bytes();
            (format!("{:03}/{i}.txt", i % 200), data)
        })
        .collect();
    write_tree(&a, &files);
    let mut changed = files.clone();
    let k = 13_579;
    let at = changed[k].1.len() / 2;
    changed[k].1[at] ^= 1;
    write_tree(&b, &changed);
    let progress = std::sync::Arc::new(verifier::Progress::default());
    let opts = CompareOptions {
        progress: Some(progress.clone()),
        ..Default::default()
    };
    let r = compare(Some(&a), &b, &opts).unwrap();
    assert_eq!(r.content_checked, 20_000);
    assert_eq!(r.mismatched.count, 1, "{:?}", r.mismatched);
    assert_eq!(r.mismatched.items[0].path, changed[k].0);
    assert_eq!(
        r.mismatched.items[0].what,
        format!("content differs at byte {at}")
    );
    // The counters a progress bar reads add up to the report's.
    let s = progress.snapshot();
    assert_eq!((s.files_done, s.bytes_done), (20_000, r.bytes_checked));
    assert_eq!(s.files_queued, 20_000);
    assert!(s.walk_done);
}

#[test]
fn a_cancelled_compare_stops_its_workers_and_says_so() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let big = vec![7u8; 32 << 20];
    let files: Vec<(String, Vec<u8>)> = (0..8).map(|i| (format!("f{i}"), big.clone())).collect();
    write_tree(&a, &files);
    write_tree(&b, &files);
    let flag = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(verifier::Progress::default());
    let opts = CompareOptions {
        deadline: verifier::Deadline::none().with_cancel(Some(flag.clone())),
        progress: Some(progress.clone()),
        threads: 2,
        ..Default::default()
    };
    let setter = {
        let (flag, progress) = (flag.clone(), progress.clone());
        std::thread::spawn(move || {
            while progress.snapshot().bytes_done == 0 {
                std::thread::yield_now();
            }
            flag.store(true, Ordering::Relaxed);
        })
    };
    let r = compare(Some(&a), &b, &opts);
    setter.join().unwrap();
    assert!(
        matches!(
            r,
            Err(verifier::CompareError::Stopped(verifier::Stop::Cancelled))
        ),
        "{r:?}"
    );
    assert!(
        progress.snapshot().bytes_done < 8 * (32 << 20),
        "the workers stopped before reading everything"
    );
}
