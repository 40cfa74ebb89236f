//! What each fuzz target checks, for one input. Shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and by the regression test that replays
//! every committed input on stable Rust (`tests/fuzz.rs`), so a crash found
//! once is checked on every CI run.
//!
//! A panic, or an assertion below that fails, is a finding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use verifier::driver::{Driver, RestoreStats, TarDriver};
use verifier::{Deadline, DrillEnv, Ledger, Verdict, note_record};

/// Where each target's committed inputs are, relative to the repository:
/// seeds first, then every crash the fuzzer found (`fuzz/regressions/<t>`).
/// `scripts/fuzz.sh` starts from the same seeds.
pub fn inputs(target: &str) -> Vec<&'static str> {
    let seeds: &[&'static str] = match target {
        "config" => &["fuzz/seeds/config", "deploy"],
        "ledger" => &["fuzz/seeds/ledger"],
        "tar" => &["fixtures/tar", "fuzz/seeds/tar"],
        other => panic!("no fuzz target {other}"),
    };
    let regressions = match target {
        "config" => "fuzz/regressions/config",
        "ledger" => "fuzz/regressions/ledger",
        _ => "fuzz/regressions/tar",
    };
    seeds.iter().copied().chain([regressions]).collect()
}

/// The config parser: any text gives a config or errors with positions;
/// never a panic. A config that parses can be described.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/fuzz/config.toml");
    match restore_verifier::config::parse(path, text, restore_verifier::config::Check::Values) {
        Ok(cfg) => {
            let _ = restore_verifier::describe::config(&cfg, chrono::Utc::now());
        }
        Err(errors) => {
            let shown = errors.to_string();
            assert!(!shown.is_empty(), "an error that says nothing");
        }
    }
}

/// The ledger reader and appender on any file content: reading and verifying
/// never panic, and an append loses no byte: what it cuts off as a torn last
/// line is kept aside whole. The file holds the input cut short (by an amount
/// the input chooses) while the head file names the input's last line, and
/// the copy the ledger reads lost records back from offers the input's lines:
/// put back or noted as lost, a ledger that verified still verifies.
pub fn ledger(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("ledger.jsonl");
    let cut = data.len() - data.len() * usize::from(data.first().map_or(0, |b| b % 4)) / 8;
    let written = &data[..cut];
    std::fs::write(&path, written).expect("write the ledger");
    let lines: Vec<String> = String::from_utf8_lossy(data)
        .lines()
        .map(String::from)
        .collect();
    if let Some(last) = lines.last()
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(last)
        && let (Some(seq), Some(hash)) = (v["seq"].as_u64(), v["hash"].as_str())
    {
        std::fs::write(
            dir.path().join("ledger.jsonl.head"),
            format!("{seq} {hash}\n"),
        )
        .expect("write the head file");
    }
    let offered = lines.clone();
    let ledger = Ledger::new(&path).recovering_from(std::sync::Arc::new(move |lost| {
        let from = usize::try_from(lost.from)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        offered.iter().skip(from).cloned().collect()
    }));
    let whole_verified = {
        let full = dir.path().join("whole.jsonl");
        std::fs::write(&full, data).expect("write the whole input");
        Ledger::new(&full)
            .verify()
            .is_ok_and(|r| r.problem.is_none())
    };
    let _ = ledger.verify();
    if let Ok(records) = ledger.records() {
        for r in records.take(10_000) {
            let _ = r;
        }
    }
    let env = DrillEnv::new(dir.path().join("sandbox"), dir.path());
    let mut rec = note_record(
        &env,
        "fuzz".into(),
        "fuzz",
        None,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        Verdict::Error,
        vec!["fuzz".into()],
    );
    let appended = ledger.append(&mut rec);
    let now = std::fs::read(&path).expect("the ledger is still there");
    let torn: Vec<u8> = std::fs::read_dir(dir.path())
        .expect("list the dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-line"))
        .map(|e| std::fs::read(e.path()).expect("read the torn bytes"))
        .next()
        .unwrap_or_default();
    assert!(
        written.ends_with(&torn),
        "the bytes kept aside are not the ledger's tail"
    );
    let kept = &written[..written.len() - torn.len()];
    assert!(
        now.starts_with(kept),
        "the append changed what was already in the ledger ({appended:?})"
    );
    if appended.is_ok() {
        assert!(now.ends_with(b"\n"), "the ledger does not end a line");
        assert!(now.len() > kept.len(), "the append wrote nothing");
        if whole_verified {
            let rep = ledger.verify().expect("verify after the append");
            assert!(
                rep.problem.is_none(),
                "a ledger that verified does not after a loss and an append: {:?}",
                rep.problem
            );
        }
    }
}

/// Every entry under `root`, except `skip`: type, size, mtime.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, (bool, u64, SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.path() != skip)
        .flatten()
        .map(|e| {
            let m = e.path().symlink_metadata().expect("stat");
            (
                e.path().to_path_buf(),
                (m.is_dir(), m.len(), m.modified().expect("mtime")),
            )
        })
        .collect()
}

/// The tar driver on any archive bytes (plain, gzip or zstd, by magic):
/// never a panic, bounded output, and nothing outside the sandbox changes.
/// Links the driver leaves in the sandbox must stay inside it, or be refused
/// by the check every drill runs after a restore.
pub fn tar(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let archive = dir.path().join("backup.tar");
    std::fs::write(&archive, data).expect("write the archive");
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir(&sandbox).expect("make the sandbox");
    let before = snapshot(dir.path(), &sandbox);
    let driver = TarDriver {
        path: archive.display().to_string(),
        backup_time: None,
        root: None,
    };
    let deadline = Deadline::after(Duration::from_secs(20));
    if let Ok(mut info) = driver.locate(&deadline) {
        let mut stats = RestoreStats {
            max_bytes: Some(64 << 20),
            ..RestoreStats::default()
        };
        let _ = driver.restore(&mut info, &sandbox, &deadline, &mut stats);
        assert!(
            stats.bytes <= 64 << 20,
            "wrote {} bytes past the cap",
            stats.bytes
        );
        let _ = verifier::driver::check_all_links(&sandbox);
    }
    assert_eq!(
        before,
        snapshot(dir.path(), &sandbox),
        "something outside the sandbox changed"
    );
}
