//! Drills of backups written by the real tools people use (GNU tar, bsdtar,
//! busybox, Python's tarfile, git, rsync, cp), run in the test. Each verdict is
//! judged against what the tool's own restore gives: a faithful backup passes,
//! a damaged one fails and names the file.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::is_empty_dir;
use rstest::rstest;
use verifier::driver::{DirDriver, Driver, TarDriver};
use verifier::{DrillEnv, DrillSpec, Record, Verdict, VerifySpec, run_drill};

/// Fails loudly when a tool the test needs is missing (scripts/test.sh
/// installs them all).
fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; run scripts/test.sh (it installs every tool the tests use)"
    );
}

/// Runs a command that must succeed; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str, dir: &Path) -> String {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir))
}

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn spec(&self, driver: Box<dyn Driver>, source: &Path) -> DrillSpec {
        DrillSpec {
            job: "real".into(),
            system: None,
            driver,
            source: Some(source.to_path_buf()),
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

    fn drill(&self, spec: &DrillSpec) -> Record {
        let env = DrillEnv::new(self.path("sandbox"), self.path("state"));
        std::fs::create_dir_all(self.path("sandbox")).unwrap();
        let rec = run_drill(spec, &env);
        assert!(rec.sandbox.removed, "sandbox not removed: {rec:#?}");
        assert!(is_empty_dir(&self.path("sandbox")));
        rec
    }

    fn drill_dir(&self, copy: &Path, source: &Path) -> Record {
        self.drill(&self.spec(
            Box::new(DirDriver {
                path: copy.to_path_buf(),
                backup_time: None,
            }),
            source,
        ))
    }

    fn drill_tar(&self, archive: &Path, source: &Path) -> Record {
        self.drill(&self.spec(
            Box::new(TarDriver {
                path: archive.display().to_string(),
                backup_time: None,
            }),
            source,
        ))
    }
}

fn reasons(r: &Record) -> String {
    r.reasons.join("\n")
}

fn assert_pass(r: &Record) {
    assert_eq!(r.result, Verdict::Pass, "{}", reasons(r));
    assert!(r.verify.files_compared > 0, "{r:#?}");
}

/// Flips one byte of `p` in place and puts its times back: bit rot, which no
/// tool notices by the file's times.
fn rot(p: &Path, at: usize) {
    let meta = std::fs::symlink_metadata(p).unwrap();
    let mut data = std::fs::read(p).unwrap();
    data[at] ^= 0x55;
    std::fs::write(p, &data).unwrap();
    let m = filetime::FileTime::from_last_modification_time(&meta);
    let a = filetime::FileTime::from_last_access_time(&meta);
    filetime::set_file_times(p, a, m).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// 200 files written by a batch job within one second (distinct sub-second
/// times inside it), as the newest files of a share.
fn batch_tree(root: &Path) {
    std::fs::create_dir_all(root.join("batch")).unwrap();
    std::fs::write(root.join("old.txt"), "older\n").unwrap();
    let old = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    filetime::set_file_mtime(root.join("old.txt"), old).unwrap();
    for i in 0..200u32 {
        let p = root.join(format!("batch/out-{i:03}.csv"));
        std::fs::write(&p, format!("{i},{}\n", "x".repeat(100 + i as usize))).unwrap();
        let t = filetime::FileTime::from_unix_time(1_765_000_000, 1_000_000 + i * 4_000_000);
        filetime::set_file_mtime(&p, t).unwrap();
    }
    // The directories changed when the last file was made, in the same second.
    let last = filetime::FileTime::from_unix_time(1_765_000_000, 900_000_000);
    filetime::set_file_mtime(root.join("batch"), last).unwrap();
    filetime::set_file_mtime(root, last).unwrap();
}

// Pins: the newest second of a mirror was excused as "changed since backup",
// so rot in a file a batch job wrote in that second passed.
#[rstest]
#[case::rsync_a("rsync -a source/ copy/")]
#[case::cp_a("cp -a source copy")]
fn rot_in_the_newest_files_of_a_mirror_fails(#[case] copier: &str) {
    need(copier.split(' ').next().unwrap());
    let site = Site::new();
    let source = site.path("source");
    batch_tree(&source);
    sh(copier, site.tmp.path());
    let copy = site.path("copy");
    assert_pass(&site.drill_dir(&copy, &source));

    rot(&copy.join("batch/out-117.csv"), 5);
    let rec = site.drill_dir(&copy, &source);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("content mismatch: batch/out-117.csv (content differs at byte 5)"),
        "{}",
        reasons(&rec)
    );
    assert!(rec.verify.changed_since_backup.is_empty(), "{rec:#?}");
}

#[test]
fn a_source_file_rewritten_after_the_mirror_is_drift() {
    need("rsync");
    let site = Site::new();
    let source = site.path("source");
    batch_tree(&source);
    sh("rsync -a source/ copy/", site.tmp.path());
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(source.join("batch/out-003.csv"), "rewritten later\n").unwrap();
    chmod(&source.join("batch/out-004.csv"), 0o600);
    let rec = site.drill_dir(&site.path("copy"), &source);
    assert_pass(&rec);
    assert!(
        rec.verify
            .changed_since_backup
            .contains("batch/out-003.csv")
    );
    assert!(
        rec.verify
            .changed_since_backup
            .contains("batch/out-004.csv")
    );
}

// Pins: a tree deployed with `cp -a`, `rsync` or `tar -x` has ctimes later than
// every mtime it keeps, and a mode damaged in the copy was excused as drift.
#[rstest]
#[case::cp_a("cp -a staging source")]
#[case::rsync("rsync -a staging/ source/")]
#[case::tar_x("mkdir source && tar -C staging -cf - . | tar -C source -xpf -")]
fn a_mode_damaged_in_the_copy_of_a_deployed_tree_fails(#[case] deploy: &str) {
    need("rsync");
    need("tar");
    let site = Site::new();
    let staging = site.path("staging");
    batch_tree(&staging);
    chmod(&staging.join("old.txt"), 0o640);
    sh(deploy, site.tmp.path());
    std::thread::sleep(Duration::from_millis(20));
    sh("rsync -a source/ copy/", site.tmp.path());
    let (source, copy) = (site.path("source"), site.path("copy"));
    assert_pass(&site.drill_dir(&copy, &source));

    chmod(&copy.join("old.txt"), 0o666);
    let rec = site.drill_dir(&copy, &source);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("mode mismatch: old.txt (mode: 0640 in source, 0666 restored)"),
        "{}",
        reasons(&rec)
    );
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// An archive of `share/` where the directory `share/docs` is stored twice:
/// first with mode `first`, then appended (`tar -r`) with mode `last`. The
/// source ends with mode `source_mode`; the archive's time is after that.
fn twice_stored_dir(site: &Site, first: u32, last: u32, source_mode: u32) -> (PathBuf, PathBuf) {
    let share = site.path("share");
    std::fs::create_dir_all(share.join("docs")).unwrap();
    std::fs::write(share.join("docs/a.txt"), "a\n").unwrap();
    chmod(&share.join("docs"), first);
    let tar = site.path("share.tar");
    sh("tar -C share -cf share.tar .", site.tmp.path());
    chmod(&share.join("docs"), last);
    sh(
        "tar -C share --no-recursion -rf share.tar ./docs",
        site.tmp.path(),
    );
    chmod(&share.join("docs"), source_mode);
    std::thread::sleep(Duration::from_millis(20));
    filetime::set_file_mtime(
        &tar,
        filetime::FileTime::from_system_time(SystemTime::now()),
    )
    .unwrap();
    // What GNU tar itself restores: the last member's mode.
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh("tar -C gnu -xpf share.tar", site.tmp.path());
    assert_eq!(mode_of(&site.path("gnu/docs")), last);
    (tar, share)
}

// Pins: the first of two members for one directory set its mode.
#[test]
fn a_directory_stored_twice_takes_the_last_members_mode() {
    need("tar");
    let site = Site::new();
    let (tar, share) = twice_stored_dir(&site, 0o755, 0o750, 0o750);
    assert_pass(&site.drill_tar(&tar, &share));

    // The first member matches the source, the last (what tar restores) does not.
    let site = Site::new();
    let (tar, share) = twice_stored_dir(&site, 0o755, 0o700, 0o755);
    let rec = site.drill_tar(&tar, &share);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("mode mismatch: docs (mode: 0755 in source, 0700 restored)"),
        "{}",
        reasons(&rec)
    );
}

/// A small share with files, a subdirectory and a relative symlink.
fn share_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/sub")).unwrap();
    std::fs::write(root.join("docs/report.txt"), "quarterly report\n").unwrap();
    std::fs::write(root.join("docs/sub/data.bin"), vec![7u8; 70_000]).unwrap();
    std::fs::write(root.join("readme.md"), "# share\n").unwrap();
    std::os::unix::fs::symlink("docs/report.txt", root.join("latest")).unwrap();
    for d in ["docs", "docs/sub"] {
        chmod(&root.join(d), 0o755);
    }
}

// Pins: a member read in the archive's last second kept whole seconds while
// the source has nanoseconds; rot in it must still fail, in either format.
#[rstest]
#[case::gnu("gnu")]
#[case::posix("posix")]
fn rot_in_a_tar_member_fails_in_either_time_precision(#[case] format: &str) {
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    let tar = site.path("share.tar");
    sh(
        &format!("tar --format={format} -C share -cf share.tar ."),
        site.tmp.path(),
    );
    assert_pass(&site.drill_tar(&tar, &share));
    // The member's data is stored as is: flip a byte of it in the archive.
    let bytes = std::fs::read(&tar).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == b"quarterly report")
        .unwrap();
    rot(&tar, at + 2);
    let rec = site.drill_tar(&tar, &share);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("content mismatch: docs/report.txt (content differs at byte 2)"),
        "{}",
        reasons(&rec)
    );
}

// Pins: pax global headers (git archive, Python's tarfile, GNU tar's
// `/tmp/GlobalHead.N`) were refused as unsupported or absolute entries.
#[rstest]
#[case::git_archive(
    "git",
    "git init -q -b main . && git add -A && git -c user.name=t -c user.email=t@t commit -qm x && git -c tar.umask=0022 archive --format=tar -o ../share.tar HEAD"
)]
#[case::python_tarfile(
    "python3",
    "python3 -c \"import tarfile; t = tarfile.open('../share.tar', 'w', format=tarfile.PAX_FORMAT, pax_headers={'comment': 'nightly'}); t.add('.', arcname='.'); t.close()\""
)]
#[case::gnu_pax_option(
    "tar",
    "tar --format=posix --pax-option=comment=nightly -cf ../share.tar ."
)]
fn pax_global_headers_are_not_members(#[case] tool: &str, #[case] script: &str) {
    need(tool);
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(script, &share);
    let tar = site.path("share.tar");
    let listing = run(Command::new("tar").arg("-tvf").arg(&tar));
    let rec = site.drill(&site.spec_excluding_git(&tar, &share));
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{listing}\n{rec:#?}");
}

impl Site {
    fn spec_excluding_git(&self, tar: &Path, share: &Path) -> DrillSpec {
        let mut spec = self.spec(
            Box::new(TarDriver {
                path: tar.display().to_string(),
                backup_time: None,
            }),
            share,
        );
        spec.verify.exclude = vec![".git".into()];
        spec
    }
}

// Pins: GNU incremental archives (`D` dump directories, also in a level-0
// full backup) and volume labels (`V`) were refused.
#[rstest]
#[case::listed_incremental_level_0(
    "tar --listed-incremental=../share.snar -C . -cf ../share.tar ."
)]
#[case::volume_label("tar -V nightly-2026-12-02 -cf ../share.tar .")]
#[case::both("tar -V full --listed-incremental=../share.snar -cf ../share.tar .")]
fn gnu_incremental_dumps_and_volume_labels_pass(#[case] script: &str) {
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(script, &share);
    let tar = site.path("share.tar");
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh("tar -C gnu -xpf share.tar", site.tmp.path());
    let rec = site.drill_tar(&tar, &share);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
}
