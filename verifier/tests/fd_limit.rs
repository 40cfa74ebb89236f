//! Compares side by side (drills of several jobs at once) share the process's
//! limit on open files. Its own test binary: it lowers that limit for the
//! whole process.

use std::path::Path;

use verifier::{CompareOptions, compare};

/// A large file first, then each small file in its own directory: with one
/// worker busy on the large file, the walk runs ahead, and every file it
/// queues holds its directory open on each side.
fn tree(root: &Path, changed: Option<usize>) {
    std::fs::create_dir_all(root.join("0000")).unwrap();
    std::fs::write(root.join("0000/big"), vec![7u8; 48 << 20]).unwrap();
    for i in 1..=600 {
        let d = root.join(format!("{i:04}"));
        std::fs::create_dir(&d).unwrap();
        let n = if changed == Some(i) { i + 1 } else { i };
        std::fs::write(d.join("f"), format!("file {n}")).unwrap();
    }
}

#[test]
fn compares_side_by_side_stay_within_the_open_file_limit_together() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let tmp = tempfile::tempdir().unwrap();
    let sides: Vec<_> = (0..3)
        .map(|k| {
            let (a, b) = (
                tmp.path().join(format!("a{k}")),
                tmp.path().join(format!("b{k}")),
            );
            tree(&a, None);
            tree(&b, Some(300 + k));
            (a, b)
        })
        .collect();
    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(200),
            maximum: before.maximum,
        },
    )
    .unwrap();
    let reports: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = sides
            .iter()
            .map(|(a, b)| {
                s.spawn(move || {
                    let opts = CompareOptions {
                        threads: 1,
                        ..CompareOptions::default()
                    };
                    compare(Some(a), b, &opts).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    setrlimit(Resource::Nofile, before).unwrap();
    for (k, r) in reports.iter().enumerate() {
        assert_eq!(r.unreadable.count, 0, "{:?}", r.unreadable);
        assert_eq!(r.source_unreadable.count, 0, "{:?}", r.source_unreadable);
        assert_eq!(r.content_checked, 601);
        assert_eq!(r.mismatched.count, 1);
        assert_eq!(r.mismatched.items[0].path, format!("{:04}/f", 300 + k));
    }
}
