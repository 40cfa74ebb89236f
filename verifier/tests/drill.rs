//! Drills of the committed fixtures through the library: the driver conformance
//! table (good backups pass, each broken one yields its finding), drift, safety.

#[path = "../../tests/support/fixtures.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rstest::rstest;
use verifier::driver::{DirDriver, Driver, TarDriver};
use verifier::{ContentSelection, DrillEnv, DrillSpec, Record, Verdict, VerifySpec, run_drill};

struct Lab {
    tmp: tempfile::TempDir,
    source: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let source = source_tree(&tmp.path().join("source"));
        Lab { tmp, source }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn tar(&self, name: &str) -> Box<dyn Driver> {
        let p = archive(name, &self.path("backups"));
        Box::new(TarDriver {
            path: p.display().to_string(),
            backup_time: None,
            root: None,
        })
    }

    fn spec(&self, driver: Box<dyn Driver>) -> DrillSpec {
        DrillSpec {
            job: "fixture".into(),
            system: Some("Fixture file server".into()),
            driver,
            source: Some(self.source.clone()),
            manifest: None,
            verify: VerifySpec::default(),
            timeout: Some(Duration::from_secs(120)),
            rto: None,
            rpo: None,
            max_restore_bytes: None,
            checks: Vec::new(),
            isolation: Default::default(),
        }
    }

    /// Drills one day after the backup was taken.
    fn drill(&self, spec: &DrillSpec) -> Record {
        self.drill_at(spec, BACKUP_TIME + 86_400)
    }

    fn drill_at(&self, spec: &DrillSpec, now: u64) -> Record {
        let mut env = DrillEnv::new(self.path("sandbox"), self.path("state"));
        env.now = Some(at(now));
        let rec = run_drill(spec, &env);
        assert!(rec.sandbox.removed, "sandbox not removed: {rec:#?}");
        assert!(
            is_empty_dir(&self.path("sandbox")),
            "sandbox dir not empty after the drill"
        );
        rec
    }
}

fn reasons(r: &Record) -> String {
    r.reasons.join("\n")
}

#[rstest]
#[case::tar("good.tar")]
#[case::tar_gz("good.tar.gz")]
#[case::tar_zst("good.tar.zst")]
#[case::dir("dir")]
fn good_backups_pass(#[case] name: &str) {
    let lab = Lab::new();
    let driver: Box<dyn Driver> = if name == "dir" {
        let copy = lab.path("backups/copy");
        copy_tree(&lab.source, &copy);
        Box::new(DirDriver {
            path: copy,
            backup_time: None,
            root: None,
        })
    } else {
        lab.tar(name)
    };
    let rec = lab.drill(&lab.spec(driver));
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert!(rec.reasons.is_empty());
    let files = file_count(&lab.source);
    assert_eq!(
        files, 9,
        "the fixture tree has 9 files (8 regular, 1 symlink)"
    );
    assert_eq!(rec.verify.files_compared, files);
    assert_eq!(rec.restore.files, files);
    assert_eq!(
        rec.verify.content_checked, 8,
        "every regular file's bytes are checked"
    );
    assert_eq!(rec.verify.bytes_checked, rec.restore.bytes);
    assert!(
        rec.verify.missing.is_empty()
            && rec.verify.mismatched.is_empty()
            && rec.verify.extra.is_empty()
    );
    // The run manifest lists every content-checked file with its SHA-256.
    let manifest = std::fs::read_to_string(
        lab.path("state")
            .join(rec.artifacts.as_ref().unwrap())
            .join("manifest.jsonl"),
    )
    .unwrap();
    assert_eq!(manifest.lines().count(), 8);
    assert!(manifest.contains("\"path\":\"経理/請求書.txt\""));
    if name != "dir" {
        assert_eq!(rec.backup.sha256.as_ref().unwrap().len(), 64);
        assert_eq!(rec.backup.age_seconds, Some(86_400));
    }
}

#[rstest]
#[case::byte_changed("byte-changed.tar", "content mismatch: finance/ledger.csv")]
#[case::member_missing(
    "member-missing.tar",
    "missing from the restore: drawings/part-0002.bin"
)]
#[case::truncated("truncated.tar", "truncated.tar is damaged")]
#[case::truncated_zst("truncated.tar.zst", "truncated.tar.zst is damaged")]
#[case::renamed_member("renamed-member.tar", "missing from the restore: docs/report.txt")]
#[case::empty("empty.tar", "the restore produced no files")]
#[case::truncated_at_boundary(
    "truncated-at-boundary.tar",
    "ends without its end-of-archive blocks"
)]
fn broken_backups_fail_naming_the_path(#[case] name: &str, #[case] reason: &str) {
    let lab = Lab::new();
    let rec = lab.drill(&lab.spec(lab.tar(name)));
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains(reason),
        "expected {reason:?} in:\n{}",
        reasons(&rec)
    );
}

#[test]
fn renamed_member_is_also_extra() {
    let lab = Lab::new();
    let rec = lab.drill(&lab.spec(lab.tar("renamed-member.tar")));
    assert!(rec.verify.extra.contains("docs/report-old.txt"));
    assert!(
        rec.verify.mismatched.contains("latest"),
        "the symlink target changed too"
    );
}

#[test]
fn empty_archive_lists_every_missing_file() {
    let lab = Lab::new();
    let rec = lab.drill(&lab.spec(lab.tar("empty.tar")));
    // 9 files and 6 directories.
    assert_eq!(rec.verify.missing.count, 15);
}

#[test]
fn backup_older_than_rpo_fails() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.rpo = Some(Duration::from_secs(26 * 3600));
    let rec = lab.drill_at(&spec, BACKUP_TIME + 3600);
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert_eq!(rec.objectives.rpo_met, Some(true));
    let rec = lab.drill_at(&spec, BACKUP_TIME + 3 * 86_400);
    assert_eq!(rec.result, Verdict::Fail);
    assert_eq!(rec.objectives.rpo_met, Some(false));
    assert!(
        reasons(&rec).contains("backup is 3d old, older than the RPO of 1d 2h"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn restore_slower_than_rto_fails() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.rto = Some(Duration::from_nanos(1));
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert_eq!(rec.objectives.rto_met, Some(false));
    assert!(reasons(&rec).contains("longer than the RTO"));
}

#[test]
fn missing_canary_fails() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("member-missing.tar"));
    spec.verify.expect = vec!["drawings/part-0002.bin".into(), "finance/ledger.csv".into()];
    let rec = lab.drill(&spec);
    assert!(
        reasons(&rec).contains("canary missing: drawings/part-0002.bin"),
        "{}",
        reasons(&rec)
    );
    assert!(!reasons(&rec).contains("canary missing: finance/ledger.csv"));

    // A canary that is nowhere at all also fails, even when everything else passes.
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.verify.expect = vec!["finance/ledger.xlsx".into()];
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(reasons(&rec).contains("canary missing: finance/ledger.xlsx"));
}

#[test]
fn canaries_are_content_checked_even_when_sampling() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("byte-changed.tar"));
    spec.verify.selection = ContentSelection::Sample { files: 1, seed: 1 };
    spec.verify.expect = vec!["finance/ledger.csv".into()];
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec).contains("canary does not match the source: finance/ledger.csv"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn fewer_than_min_files_fails() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.verify.min_files = 10;
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(reasons(&rec).contains("only 9 files restored, fewer than min_files = 10"));
}

fn set_mtime(p: &Path, secs: u64) {
    let t = filetime::FileTime::from_system_time(at(secs));
    filetime::set_file_mtime(p, t).unwrap();
}

#[test]
fn source_changed_after_backup_is_drift_not_failure() {
    let lab = Lab::new();
    let report = lab.source.join("docs/report.txt");
    std::fs::write(&report, "rewritten after the backup\n").unwrap();
    set_mtime(&report, BACKUP_TIME + 600);
    let new = lab.source.join("docs/new-after-backup.txt");
    std::fs::write(&new, "new\n").unwrap();
    set_mtime(&new, BACKUP_TIME + 700);
    let rec = lab.drill(&lab.spec(lab.tar("good.tar")));
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert!(rec.verify.changed_since_backup.contains("docs/report.txt"));
    assert!(
        rec.verify
            .new_since_backup
            .contains("docs/new-after-backup.txt")
    );
}

#[test]
fn silent_source_corruption_before_backup_time_fails() {
    let lab = Lab::new();
    let p = lab.source.join("drawings/part-0001.bin");
    let mut data = std::fs::read(&p).unwrap();
    data[4000] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    set_mtime(&p, TREE_TIME);
    let rec = lab.drill(&lab.spec(lab.tar("good.tar")));
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec)
            .contains("content mismatch: drawings/part-0001.bin (content differs at byte 4000)"),
        "{}",
        reasons(&rec)
    );
}

#[rstest]
#[case::dotdot("escape-dotdot.tar", "path contains '..'")]
#[case::absolute("escape-absolute.tar", "absolute path")]
#[case::symlink_out("symlink-out-then-write.tar", "would write through symlink out")]
#[case::symlink_in("symlink-in-then-write.tar", "would write through symlink alias")]
#[case::hardlink_out(
    "hardlink-outside.tar",
    "hard link to ../../etc/passwd outside the archive"
)]
fn hostile_entries_are_refused(#[case] name: &str, #[case] why: &str) {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("sandbox")).unwrap();
    let spec = lab.spec(lab.tar(name));
    let before = snapshot(lab.tmp.path());
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec).contains("refused") && reasons(&rec).contains(why),
        "{}",
        reasons(&rec)
    );
    let mut after = snapshot(lab.tmp.path());
    // The sandbox dir's own mtime changes as sandboxes come and go; nothing else may.
    after.insert(lab.path("sandbox"), before[&lab.path("sandbox")]);
    assert_eq!(before, after, "something outside the sandbox changed");
    assert!(!Path::new("/tmp/restore-verifier-fixture-absolute.txt").exists());
    assert!(
        !lab.path("escaped-dotdot.txt").exists()
            && !lab.path("sandbox/escaped-dotdot.txt").exists()
    );
    assert!(!lab.path("sandbox/outside").exists());
}

#[test]
fn a_setuid_bit_the_source_lacks_is_contained_and_fails_the_drill() {
    let lab = Lab::new();
    // Backup time now: the mode difference cannot be drift.
    let rec = drill_now(&lab, &lab.spec(tar_now(&lab, "setuid.tar")));
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec)
            .contains("mode mismatch: scripts/run.sh (mode: 0755 in source, 4755 restored)"),
        "{}",
        reasons(&rec)
    );
    assert!(rec.sandbox.removed);
    assert!(is_empty_dir(&lab.path("sandbox")));
}

#[test]
fn sandbox_is_removed_after_error() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.source = Some(lab.path("no-such-source"));
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Error);
    assert!(
        reasons(&rec).contains("cannot verify: cannot read source"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn missing_backup_fails() {
    let lab = Lab::new();
    let spec = lab.spec(Box::new(TarDriver {
        path: lab.path("backups/none-*.tar").display().to_string(),
        backup_time: None,
        root: None,
    }));
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec).contains("backup not found: no file matches"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn newest_matching_archive_wins() {
    let lab = Lab::new();
    let dir = lab.path("backups");
    let old = archive("byte-changed.tar", &dir);
    std::fs::rename(&old, dir.join("share-1.tar")).unwrap();
    set_mtime(&dir.join("share-1.tar"), BACKUP_TIME - 86_400);
    let new = archive("good.tar", &dir);
    std::fs::rename(&new, dir.join("share-2.tar")).unwrap();
    let spec = lab.spec(Box::new(TarDriver {
        path: dir.join("share-*.tar").display().to_string(),
        backup_time: None,
        root: None,
    }));
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert_eq!(rec.backup.id.as_deref(), Some("share-2.tar"));
}

#[test]
fn timeout_fails_the_drill() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.timeout = Some(Duration::ZERO);
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(reasons(&rec).contains("timed out"), "{}", reasons(&rec));
}

fn manifest_paths(lab: &Lab, rec: &Record) -> Vec<String> {
    let text = std::fs::read_to_string(
        lab.path("state")
            .join(rec.artifacts.as_ref().unwrap())
            .join("manifest.jsonl"),
    )
    .unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn same_seed_same_sample() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.verify.selection = ContentSelection::Sample { files: 3, seed: 42 };
    let a = lab.drill(&spec);
    let b = lab.drill(&spec);
    assert_eq!(a.verify.content_checked, 3);
    assert_eq!(a.verify.sample_seed, Some(42));
    assert_eq!(manifest_paths(&lab, &a), manifest_paths(&lab, &b));
    assert_eq!(a.verify.manifest_sha256, b.verify.manifest_sha256);
}

#[test]
fn rotation_covers_every_file_in_n_drills() {
    let lab = Lab::new();
    let mut seen = std::collections::BTreeSet::new();
    for slice in 0..3 {
        let mut spec = lab.spec(lab.tar("good.tar"));
        spec.verify.selection = ContentSelection::Rotate {
            over: 3,
            slice,
            seed: 0,
        };
        let rec = lab.drill(&spec);
        assert_eq!(rec.result, Verdict::Pass);
        for p in manifest_paths(&lab, &rec) {
            assert!(seen.insert(p), "slices overlap");
        }
    }
    assert_eq!(seen.len(), 8);
}

#[test]
fn without_source_the_restore_is_read_in_full() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.source = None;
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert_eq!(rec.verify.against, "none");
    assert_eq!(rec.verify.files_compared, 9);
    assert_eq!(rec.verify.content_checked, 8);
}

#[test]
fn cancelled_drill_is_an_error_and_cleans_up() {
    let lab = Lab::new();
    let spec = lab.spec(lab.tar("good.tar"));
    let mut env = DrillEnv::new(lab.path("sandbox"), lab.path("state"));
    env.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
        true,
    )));
    let rec = run_drill(&spec, &env);
    assert_eq!(rec.result, Verdict::Error);
    assert!(reasons(&rec).contains("interrupted"), "{}", reasons(&rec));
    assert!(rec.sandbox.removed && is_empty_dir(&lab.path("sandbox")));
}

/// A tar driver dated now: for tests that need the source's real ctime and
/// birth time to be older than the backup.
fn tar_now(lab: &Lab, name: &str) -> Box<dyn Driver> {
    let p = archive(name, &lab.path("backups"));
    Box::new(TarDriver {
        path: p.display().to_string(),
        backup_time: Some(std::time::SystemTime::now()),
        root: None,
    })
}

fn drill_now(lab: &Lab, spec: &DrillSpec) -> Record {
    let env = DrillEnv::new(lab.path("sandbox"), lab.path("state"));
    let rec = run_drill(spec, &env);
    assert!(is_empty_dir(&lab.path("sandbox")));
    rec
}

#[test]
fn wrong_mode_in_the_backup_fails() {
    let lab = Lab::new();
    let rec = drill_now(&lab, &lab.spec(tar_now(&lab, "mode-changed.tar")));
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec)
            .contains("mode mismatch: scripts/run.sh (mode: 0755 in source, 0644 restored)"),
        "{}",
        reasons(&rec)
    );

    // The same through the dir driver, and setgid directories survive a tar restore.
    let lab = Lab::new();
    let copy = lab.path("backups/copy");
    copy_tree(&lab.source, &copy);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        copy.join("scripts/run.sh"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let spec = lab.spec(Box::new(DirDriver {
        path: copy,
        backup_time: Some(std::time::SystemTime::now()),
        root: None,
    }));
    let rec = drill_now(&lab, &spec);
    assert!(
        reasons(&rec)
            .contains("mode mismatch: scripts/run.sh (mode: 0755 in source, 0600 restored)"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn setgid_directory_modes_are_restored() {
    let lab = Lab::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        lab.source.join("docs"),
        std::fs::Permissions::from_mode(0o2775),
    )
    .unwrap();
    let copy = lab.path("backups/copy");
    copy_tree(&lab.source, &copy);
    std::fs::set_permissions(copy.join("docs"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    let spec = lab.spec(Box::new(DirDriver {
        path: copy,
        backup_time: Some(std::time::SystemTime::now()),
        root: None,
    }));
    let rec = drill_now(&lab, &spec);
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
}

#[test]
fn busy_old_file_missing_from_the_backup_fails() {
    // Regression: a file written all the time (mtime after the backup) but
    // created long before it was taken for "new since backup" and passed.
    let lab = Lab::new();
    let spec = lab.spec(tar_now(&lab, "member-missing.tar"));
    let busy = lab.source.join("drawings/part-0002.bin");
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    filetime::set_file_mtime(&busy, filetime::FileTime::from_system_time(later)).unwrap();
    let rec = drill_now(&lab, &spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(reasons(&rec).contains("missing from the restore: drawings/part-0002.bin"));
}

#[test]
fn a_drill_that_verified_nothing_fails() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("good.tar"));
    spec.verify.exclude = vec!["**".into()];
    spec.verify.min_files = 0;
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail);
    assert!(
        reasons(&rec).contains("nothing was verified"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn sandbox_inside_the_source_is_refused_before_anything_is_written() {
    let lab = Lab::new();
    let spec = lab.spec(lab.tar("good.tar"));
    let before = snapshot(&lab.source);
    let env = DrillEnv::new(lab.source.join(".rv-sandbox"), lab.path("state"));
    let rec = run_drill(&spec, &env);
    assert_eq!(rec.result, Verdict::Error);
    assert!(
        reasons(&rec).contains("sandbox_dir") && reasons(&rec).contains("overlap"),
        "{}",
        reasons(&rec)
    );
    assert_eq!(before, snapshot(&lab.source), "the source was written to");
}

/// A check that would succeed: it must not run when a link leads out.
fn true_check() -> verifier::CheckSpec {
    verifier::CheckSpec {
        run: vec!["true".into()],
        expect_exit: 0,
        expect_stdout: None,
        timeout: None,
    }
}

// Links are data: a chain that resolves outside (`up3 -> ../../..`, then
// `x -> up3/../../../etc/shadow`) is restored as links and never followed;
// the checks, which would follow it, do not run.
#[test]
fn links_leading_out_are_restored_as_links_and_keep_checks_from_running() {
    let lab = Lab::new();
    // The archive holds only the two links: read it without a source.
    let mut spec = lab.spec(lab.tar("symlink-chain-escape.tar"));
    spec.source = None;
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Pass, "{}", reasons(&rec));
    assert_eq!(rec.verify.files_compared, 2, "{rec:#?}");

    spec.checks = vec![true_check()];
    let rec = lab.drill(&spec);
    assert_eq!(rec.result, Verdict::Error, "{rec:#?}");
    assert!(rec.checks.is_empty(), "{rec:#?}");
    assert!(
        reasons(&rec)
            .contains("checks not run: the restored symlink a/b/c/x leads out of the sandbox"),
        "{}",
        reasons(&rec)
    );
}

// A device node holds no data: it is not made in the sandbox (nor refused as
// unsafe), and is counted as a skipped special file.
#[test]
fn device_nodes_are_skipped_and_counted() {
    let lab = Lab::new();
    let mut spec = lab.spec(lab.tar("device-node.tar"));
    spec.source = None;
    spec.verify.min_files = 0;
    let rec = lab.drill(&spec);
    assert!(
        rec.verify.skipped_special.contains("dev/console"),
        "{rec:#?}"
    );
    assert!(!reasons(&rec).contains("unsafe"), "{}", reasons(&rec));
}
