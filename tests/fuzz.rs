//! Every committed fuzz input, replayed on stable Rust through the same checks
//! the fuzz targets make: the seeds and each crash the fuzzer found
//! (`fuzz/regressions/<target>/`). `scripts/fuzz.sh` runs the fuzzer itself.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Runs `check` on every committed input of `target` and returns how many
/// there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut n = 0;
    for dir in harness::inputs(target) {
        let dir = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten().filter(|e| e.path().is_file()) {
            let data = std::fs::read(e.path()).unwrap();
            let name = e.path().display().to_string();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "fuzz input {name} fails its check");
            n += 1;
        }
    }
    n
}

#[test]
fn config_inputs() {
    assert!(
        replay("config", harness::config) >= 5,
        "the seeds are missing"
    );
}

#[test]
fn ledger_inputs() {
    assert!(
        replay("ledger", harness::ledger) >= 3,
        "the seeds are missing"
    );
}

#[test]
fn tar_inputs() {
    assert!(replay("tar", harness::tar) >= 5, "the seeds are missing");
}
