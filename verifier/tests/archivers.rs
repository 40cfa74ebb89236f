//! Drills of backups written by the real tools people use (GNU tar, bsdtar,
//! busybox, Python's tarfile, git, rsync, cp), run in the test. Each verdict is
//! judged against what the tool's own restore gives: a faithful backup passes,
//! a damaged one fails and names the file.

#[path = "../../tests/support/fixtures.rs"]
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
                root: None,
            }),
            source,
        ))
    }

    /// A drill of the tar archive at `archive`, its root found.
    fn tar_spec(&self, archive: &Path, source: &Path) -> DrillSpec {
        self.spec(
            Box::new(TarDriver {
                path: archive.display().to_string(),
                backup_time: None,
                root: None,
            }),
            source,
        )
    }

    fn drill_tar(&self, archive: &Path, source: &Path) -> Record {
        self.drill(&self.tar_spec(archive, source))
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
        let mut spec = self.tar_spec(tar, share);
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

/// A FIFO (mode 0640) and a Unix socket beside a file.
fn specials_tree(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    run(Command::new("mkfifo")
        .args(["-m", "0640"])
        .arg(root.join("pipe")));
    let sock = std::os::unix::net::UnixListener::bind(root.join("app.sock")).unwrap();
    drop(sock);
}

// Pins: any FIFO failed the drill ("FIFO not restored", "special file"), and
// `exclude` could not help; sockets, which no archiver stores, counted too.
#[rstest]
#[case::gnu_tar("tar", "tar -C share -cf share.tar .")]
#[case::bsdtar("bsdtar", "bsdtar -C share -cf share.tar .")]
#[case::rsync_dir("rsync", "rsync -a share/ copy/")]
#[case::cp_a_dir("cp", "cp -a share copy")]
fn fifos_are_restored_and_sockets_skipped(#[case] tool: &str, #[case] script: &str) {
    need(tool);
    let site = Site::new();
    let share = site.path("share");
    specials_tree(&share);
    // Neither archiver stores the socket; both say so and go on.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(site.tmp.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let drill = |site: &Site| {
        if script.contains("copy") {
            site.drill_dir(&site.path("copy"), &share)
        } else {
            site.drill_tar(&site.path("share.tar"), &share)
        }
    };
    let rec = drill(&site);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 2, "{rec:#?}");
    assert_eq!(rec.verify.skipped_special.count, 1, "{rec:#?}");
    assert!(rec.verify.skipped_special.contains("app.sock"));

    // The FIFO's mode is compared: a source changed since is drift, and the
    // same mode damaged in the backup would fail.
    std::thread::sleep(Duration::from_millis(20));
    chmod(&share.join("pipe"), 0o600);
    let rec = drill(&site);
    assert_pass(&rec);
    assert!(rec.verify.changed_since_backup.contains("pipe"), "{rec:#?}");
}

const LINK_TIME: filetime::FileTime = filetime::FileTime::from_unix_time(1_700_000_000, 0);

// Pins: absolute symlinks and relative ones above the tree were refused, so
// a tree with `current -> /srv/app/releases/42` could never pass.
#[rstest]
#[case::gnu_tar("tar -C share -cf share.tar .")]
#[case::bsdtar("bsdtar -C share -cf share.tar .")]
#[case::cp_a_dir("cp -a share copy")]
fn links_that_point_anywhere_are_restored_as_links(#[case] script: &str) {
    need(script.split(' ').next().unwrap());
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    std::os::unix::fs::symlink("/srv/app/releases/42", share.join("current")).unwrap();
    filetime::set_symlink_file_times(share.join("current"), LINK_TIME, LINK_TIME).unwrap();
    std::os::unix::fs::symlink("../../outside/x", share.join("docs/up")).unwrap();
    sh(script, site.tmp.path());
    let drill = |site: &Site| {
        if script.contains("copy") {
            site.drill_dir(&site.path("copy"), &share)
        } else {
            site.drill_tar(&site.path("share.tar"), &share)
        }
    };
    let rec = drill(&site);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 6, "{rec:#?}");

    // The target text is what is compared: a link with the backup's own time
    // and another target is damage.
    std::fs::remove_file(share.join("current")).unwrap();
    std::os::unix::fs::symlink("/srv/app/releases/41", share.join("current")).unwrap();
    filetime::set_symlink_file_times(share.join("current"), LINK_TIME, LINK_TIME).unwrap();
    let rec = drill(&site);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains(
            "current (symlink target: /srv/app/releases/41 in source, /srv/app/releases/42 restored"
        ),
        "{}",
        reasons(&rec)
    );
}

// Pins: an appended update whose member changed type (a file that became a
// directory), and a hard link to a symlink, both of which GNU tar restores.
#[test]
fn appended_type_changes_and_hard_links_to_symlinks_restore_as_gnu_tar_does() {
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    std::fs::write(share.join("x"), "a file first\n").unwrap();
    sh("tar -C share -cf share.tar .", site.tmp.path());
    std::fs::remove_file(share.join("x")).unwrap();
    std::fs::create_dir(share.join("x")).unwrap();
    chmod(&share.join("x"), 0o755);
    std::fs::write(share.join("x/y"), "then a directory\n").unwrap();
    // `ln -P`: a second name for the symlink itself, which tar stores as a
    // hard link to the first.
    run(Command::new("ln")
        .arg("-P")
        .arg(share.join("latest"))
        .arg(share.join("latest2")));
    sh(
        "tar -C share -rf share.tar ./x ./latest ./latest2",
        site.tmp.path(),
    );
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh("tar -C gnu -xpf share.tar", site.tmp.path());
    assert!(site.path("gnu/x/y").is_file());
    assert!(
        site.path("gnu/latest2")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let listing = run(Command::new("tar").arg("-tvf").arg(site.path("share.tar")));
    assert!(listing.contains(" link to ./latest"), "{listing}");
    let rec = site.drill_tar(&site.path("share.tar"), &share);
    assert_pass(&rec);
    assert!(rec.verify.changed_since_backup.is_empty(), "{rec:#?}");
}

// Pins: bsdtar's v7 format stores directories as regular members named `…/`.
#[test]
fn v7_archives_restore_their_directories() {
    need("bsdtar");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(
        "bsdtar --format v7 -C share -cf share.tar .",
        site.tmp.path(),
    );
    let rec = site.drill_tar(&site.path("share.tar"), &share);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
    assert_eq!(rec.verify.dirs_compared, 2, "{rec:#?}");
}

// Pins: `tar czf x.tgz /srv/share` stores `srv/share/…`, and the drill found
// "entries missing… nothing was verified"; the record names the root used.
#[rstest]
#[case::absolute_path("tar -czf share.tgz \"$PWD/share\"", true)]
#[case::relative_path("tar -czf share.tgz share", false)]
fn archives_of_the_sources_own_path_find_their_root(#[case] script: &str, #[case] abs: bool) {
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(script, site.tmp.path());
    let rec = site.drill_tar(&site.path("share.tgz"), &share);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
    let want = if abs {
        share.strip_prefix("/").unwrap().display().to_string()
    } else {
        "share".to_string()
    };
    assert_eq!(rec.restore.root.as_deref(), Some(want.as_str()));
}

#[test]
fn an_explicit_root_picks_the_subtree_of_a_wider_archive() {
    need("tar");
    let site = Site::new();
    let share = site.path("srv/share");
    share_tree(&share);
    std::fs::write(site.path("srv/other.txt"), "not the share\n").unwrap();
    sh("tar -C srv -cf srv.tar .", site.tmp.path());
    // Without `root` the archive's top is compared, and the share is not there.
    let rec = site.drill_tar(&site.path("srv.tar"), &share);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    let mut spec = site.spec(
        Box::new(TarDriver {
            path: site.path("srv.tar").display().to_string(),
            backup_time: None,
            root: Some("share".into()),
        }),
        &share,
    );
    let rec = site.drill(&spec);
    assert_pass(&rec);
    assert_eq!(rec.restore.root.as_deref(), Some("share"));
    // A root the archive lacks says so.
    spec.driver = Box::new(TarDriver {
        path: site.path("srv.tar").display().to_string(),
        backup_time: None,
        root: Some("srv/share".into()),
    });
    let rec = site.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("the restore produced no srv/share in the sandbox"),
        "{}",
        reasons(&rec)
    );
}

/// The newest snapshot of the site's restic repository, its path found.
fn restic_latest(site: &Site) -> Box<dyn Driver> {
    Box::new(verifier::driver::ResticDriver {
        repository: site.path("restic-repo").display().to_string(),
        password_file: site.path("restic-pw"),
        snapshot: "latest".into(),
        host: None,
        tags: Vec::new(),
        path: None,
    })
}

fn restic_in(site: &Site, cwd: &Path, args: &str) {
    let repo = site.path("restic-repo");
    sh(
        &format!(
            "restic --repo '{}' --password-file '{}' --no-cache -q {args}",
            repo.display(),
            site.path("restic-pw").display()
        ),
        cwd,
    );
}

// Pins: `cd /srv/share && restic backup .` records paths = ["/srv/share"] but
// keeps the content at the top, and the drill failed with "the restore
// produced no srv/share in the sandbox".
#[rstest]
#[case::absolute("", "backup \"$PWD/share\"")]
#[case::dot("share", "backup .")]
#[case::relative("", "backup share")]
fn restic_snapshots_are_found_however_restic_was_run(#[case] cwd: &str, #[case] args: &str) {
    need("restic");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    std::fs::write(site.path("restic-pw"), "pw\n").unwrap();
    restic_in(&site, site.tmp.path(), "init");
    restic_in(&site, &site.tmp.path().join(cwd), args);
    let rec = site.drill(&site.spec(restic_latest(&site), &share));
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
    // What is not compared yet is said, not implied.
    assert!(
        rec.verify
            .metadata_not_compared
            .iter()
            .any(|n| n == "acl: not compared for restic backups yet"),
        "{rec:#?}"
    );
}

// Pins: the same for `borg create` run with absolute or relative paths.
#[rstest]
#[case::absolute("", "\"$PWD/share\"")]
#[case::relative("", "share")]
#[case::dot("share", ".")]
fn borg_archives_are_found_however_borg_was_run(#[case] cwd: &str, #[case] what: &str) {
    need("borg");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    let env = format!(
        "export BORG_BASE_DIR='{}' BORG_PASSPHRASE='' BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes; ",
        site.path("borg-home").display()
    );
    let repo = site.path("borg-repo").display().to_string();
    sh(
        &format!("{env} borg init -e none '{repo}'"),
        site.tmp.path(),
    );
    sh(
        &format!("{env} borg create '{repo}::nightly' {what}"),
        &site.tmp.path().join(cwd),
    );
    let driver = verifier::driver::BorgDriver {
        repository: repo,
        passphrase_file: None,
        key_file: None,
        archive: "latest".into(),
        path: None,
        base_dir: site.path("state/borg"),
    };
    let rec = site.drill(&site.spec(Box::new(driver), &share));
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
}

// Pins: only gzip and zstd were read, by name; xz, bzip2 and lz4 failed as
// "damaged: numeric field was not a number" with binary in the reason.
#[rstest]
#[case::xz("xz", "tar -C share -cJf share.tar.xz .", "share.tar.xz")]
#[case::bzip2("bzip2", "tar -C share -cjf share.tar.bz2 .", "share.tar.bz2")]
#[case::lz4(
    "lz4",
    "tar -C share -cf - . | lz4 -q > share.tar.lz4",
    "share.tar.lz4"
)]
#[case::xz_named_tar("xz", "tar -C share -cf - . | xz > share.tar", "share.tar")]
#[case::zstd_long_31(
    "zstd",
    "tar -C share -cf - . | zstd -q --long=31 -o share.tar.zst",
    "share.tar.zst"
)]
#[case::gzip_members(
    "gzip",
    "tar -C share -cf share.tar . && head -c 20000 share.tar | gzip > share.tar.gz && tail -c +20001 share.tar | gzip >> share.tar.gz",
    "share.tar.gz"
)]
#[case::gzip_padded_to_a_tape_block(
    "gzip",
    "tar -C share -czf - . | dd of=share.tar.gz bs=10240 conv=sync status=none",
    "share.tar.gz"
)]
fn compressions_are_read_by_content(#[case] tool: &str, #[case] script: &str, #[case] name: &str) {
    need(tool);
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(script, site.tmp.path());
    // The tool itself reads it back (the ground truth).
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh(
        &format!(
            "{tool} -dc --long=31 < {name} 2>/dev/null | tar -C gnu -xf - || {tool} -dc < {name} | tar -C gnu -xf -"
        ),
        site.tmp.path(),
    );
    assert!(site.path("gnu/docs/sub/data.bin").is_file());
    let spec = site.tar_spec(&site.path(name), &share);
    let rec = site.drill(&spec);
    assert_pass(&rec);
}

#[test]
fn a_compression_that_is_not_read_is_an_error_that_names_it() {
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    // The header `compress` writes (LZW, 16 bits, block mode), then data.
    std::fs::write(site.path("share.tar.Z"), [0x1f, 0x9d, 0x90, 1, 2, 3, 4]).unwrap();
    let rec = site.drill_tar(&site.path("share.tar.Z"), &share);
    assert_eq!(rec.result, Verdict::Error, "{rec:#?}");
    let why = reasons(&rec);
    assert!(
        why.contains(
            "is compressed with compress (.Z), which restore-verifier does not read; recompress it"
        ),
        "{why}"
    );
    assert!(!why.contains("damaged"), "{why}");
}

/// A 256 MiB file with three 4 KiB data blocks: the rest is holes.
fn sparse_tree(root: &Path) -> PathBuf {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("small.txt"), "small\n").unwrap();
    let p = root.join("disk.img");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(256 << 20).unwrap();
    f.write_all_at(&[0xaa; 4096], 0).unwrap();
    f.write_all_at(b"middle", 100 << 20).unwrap();
    f.write_all_at(b"end", (256 << 20) - 3).unwrap();
    p
}

// Pins: pax sparse members came back as `GNUSparseFile.N/name` or at the
// size of their data; their holes were written out, so an archive of a few
// KiB needed the whole logical size in the sandbox (an error with a budget).
#[rstest]
#[case::gnu_pax_0_0("tar --format=posix --sparse-version=0.0 -S -C share -cf share.tar .")]
#[case::gnu_pax_0_1("tar --format=posix --sparse-version=0.1 -S -C share -cf share.tar .")]
#[case::gnu_pax_1_0("tar --format=posix --sparse-version=1.0 -S -C share -cf share.tar .")]
#[case::gnu_old_sparse("tar --format=gnu -S -C share -cf share.tar .")]
#[case::bsdtar("bsdtar -C share -cf share.tar .")]
#[case::gnu_pax_1_0_zstd("tar --format=posix -S -C share -cf - . | zstd -q -o share.tar")]
fn sparse_files_are_restored_sparse(#[case] script: &str) {
    need("tar");
    need("bsdtar");
    need("zstd");
    let site = Site::new();
    let share = site.path("share");
    let img = sparse_tree(&share);
    sh(script, site.tmp.path());
    assert!(std::fs::metadata(site.path("share.tar")).unwrap().len() < 1 << 20);
    // GNU tar's own restore gives the file back whole.
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh("tar -C gnu -xf share.tar", site.tmp.path());
    assert_eq!(
        std::fs::metadata(site.path("gnu/disk.img")).unwrap().len(),
        256 << 20
    );
    let mut spec = site.tar_spec(&site.path("share.tar"), &share);
    // Far less than the file's logical size: the holes must stay holes.
    spec.max_restore_bytes = Some(1 << 20);
    let rec = site.drill(&spec);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 2, "{rec:#?}");
    assert_eq!(rec.verify.bytes_checked, (256 << 20) + 6, "{rec:#?}");
    assert!(rec.restore.bytes < 1 << 20, "{rec:#?}");

    // A byte of the data changed in the source, with the same mtime: damage.
    let meta = std::fs::metadata(&img).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(b"M", 100 << 20).unwrap();
    }
    filetime::set_file_mtime(&img, filetime::FileTime::from_last_modification_time(&meta)).unwrap();
    let rec = site.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains(&format!(
            "content mismatch: disk.img (content differs at byte {})",
            100 << 20
        )),
        "{}",
        reasons(&rec)
    );
}

// Pins: a cut archive said "unexpected EOF during skip" without naming the
// member it cut.
#[rstest]
#[case::plain("head -c 60000 full.tar > cut.tar", "cut.tar")]
#[case::gzip(
    "gzip -c full.tar > f.gz && head -c $(( $(wc -c < f.gz) / 2 )) f.gz > cut.tar.gz",
    "cut.tar.gz"
)]
fn truncation_names_the_member_it_cut(#[case] script: &str, #[case] name: &str) {
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    std::fs::create_dir_all(&share).unwrap();
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(share.join("a.bin"), noise).unwrap();
    std::fs::write(share.join("b.txt"), "b\n").unwrap();
    sh("tar -C share -cf full.tar ./a.bin ./b.txt", site.tmp.path());
    sh(script, site.tmp.path());
    let rec = site.drill_tar(&site.path(name), &share);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(reasons(&rec).contains("a.bin"), "{}", reasons(&rec));
    assert!(reasons(&rec).contains("truncated?"), "{}", reasons(&rec));
}

// Pins: two names that are not UTF-8 were recorded alike (U+FFFD each).
#[test]
fn names_that_are_not_utf8_stay_apart_in_the_record() {
    use std::os::unix::ffi::OsStringExt;
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    std::fs::create_dir_all(&share).unwrap();
    let names = [b"a\xffb".to_vec(), b"a\xfeb".to_vec()];
    for n in &names {
        let p = share.join(std::ffi::OsString::from_vec(n.clone()));
        std::fs::write(&p, "data\n").unwrap();
    }
    sh("tar -C share -cf share.tar .", site.tmp.path());
    assert_pass(&site.drill_tar(&site.path("share.tar"), &share));
    for n in &names {
        rot(&share.join(std::ffi::OsString::from_vec(n.clone())), 0);
    }
    let rec = site.drill_tar(&site.path("share.tar"), &share);
    assert_eq!(rec.verify.mismatched.count, 2, "{rec:#?}");
    let paths: Vec<&str> = rec
        .verify
        .mismatched
        .items
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(paths, ["a\u{0}feb", "a\u{0}ffb"]);
    for p in paths {
        assert!(
            verifier::from_display(p).exists() || share.join(verifier::from_display(p)).exists()
        );
    }
}

/// A share whose permissions are data: a named-user ACL (which makes the
/// mode's group bits the ACL's mask), a default ACL on a directory, and a
/// user attribute.
fn acl_tree(root: &Path) {
    share_tree(root);
    sh(
        "setfacl -m u:nobody:rw docs/report.txt && setfacl -d -m g:nogroup:rx docs/sub && setfattr -n user.origin -v scanner docs/report.txt",
        root,
    );
}

// Pins: bsdtar writes the ACL's group entry into the mode field and the
// drill saw a "mode mismatch" where `bsdtar -xpf` restores the file exactly;
// ACLs and attributes were neither restored nor compared.
#[rstest]
#[case::bsdtar("bsdtar -C share -cf share.tar .")]
#[case::gnu_tar_acls_xattrs("tar --acls --xattrs -C share -cf share.tar .")]
#[case::gnu_tar_pax_acls("tar --format=posix --acls --xattrs -C share -cf share.tar .")]
fn acls_and_attributes_are_restored_and_compared(#[case] script: &str) {
    need("setfacl");
    need("setfattr");
    need(script.split(' ').next().unwrap());
    let site = Site::new();
    let share = site.path("share");
    acl_tree(&share);
    sh(script, site.tmp.path());
    let mut spec = site.tar_spec(&site.path("share.tar"), &share);
    spec.verify.metadata = Some(
        verifier::tree::metadata::MetadataSet::parse(&[
            "mode".into(),
            "acl".into(),
            "xattr".into(),
        ])
        .unwrap(),
    );
    let rec = site.drill(&spec);
    assert_pass(&rec);
    assert_eq!(rec.verify.metadata, ["mode", "acl", "xattr"], "{rec:#?}");
    assert!(rec.verify.metadata_not_compared.is_empty(), "{rec:#?}");

    // An ACL changed in the source after the backup is drift, not damage.
    std::thread::sleep(Duration::from_millis(20));
    sh("setfacl -m u:nobody:r docs/report.txt", &share);
    let rec = site.drill(&spec);
    assert_pass(&rec);
    assert!(
        rec.verify.changed_since_backup.contains("docs/report.txt"),
        "{rec:#?}"
    );
}

#[test]
fn an_archive_without_acls_says_they_were_not_compared() {
    need("setfacl");
    need("tar");
    let site = Site::new();
    let share = site.path("share");
    acl_tree(&share);
    sh("tar -C share -cf share.tar .", site.tmp.path());
    let rec = site.drill_tar(&site.path("share.tar"), &share);
    assert_pass(&rec);
    assert!(
        !rec.verify.metadata.contains(&"acl".to_string()),
        "{rec:#?}"
    );
    assert!(
        rec.verify
            .metadata_not_compared
            .iter()
            .any(|n| n == "acl: the backup holds no ACLs"),
        "{rec:#?}"
    );
}

#[test]
fn acls_attributes_and_owners_damaged_in_a_copy_fail() {
    need("setfacl");
    need("setfattr");
    need("rsync");
    let site = Site::new();
    let share = site.path("share");
    acl_tree(&share);
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        std::os::unix::fs::chown(share.join("readme.md"), Some(1234), Some(1234)).unwrap();
    }
    sh("rsync -aAX share/ copy/", site.tmp.path());
    let copy = site.path("copy");
    let mut spec = site.spec(
        Box::new(DirDriver {
            path: copy.clone(),
            backup_time: None,
            root: None,
        }),
        &share,
    );
    spec.verify.metadata = Some(
        verifier::tree::metadata::MetadataSet::parse(&[
            "mode".into(),
            "owner".into(),
            "acl".into(),
            "xattr".into(),
        ])
        .unwrap(),
    );
    let rec = site.drill(&spec);
    assert_pass(&rec);
    std::thread::sleep(Duration::from_millis(20));
    sh(
        "setfacl -n -m u:nobody:r docs/report.txt && setfattr -n user.origin -v tampered docs/sub/data.bin",
        &copy,
    );
    if as_root {
        std::os::unix::fs::chown(copy.join("readme.md"), Some(0), Some(0)).unwrap();
    }
    let rec = site.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    let why = reasons(&rec);
    assert!(
        why.contains("docs/report.txt (acl: the access ACL differs"),
        "{why}"
    );
    assert!(
        why.contains("docs/sub/data.bin (xattr: [] in source, [user.origin] restored)"),
        "{why}"
    );
    if as_root {
        assert!(
            why.contains("readme.md (owner: 1234:1234 in source, 0:0 restored)"),
            "{why}"
        );
    }
}

// The other archivers of the corpus: their tar output passes as GNU tar's does.
#[rstest]
#[case::busybox("busybox", "busybox tar -cf ../share.tar .")]
#[case::cpio_ustar(
    "cpio",
    "find . -mindepth 1 | sort | cpio --quiet -o -H ustar > ../share.tar"
)]
#[case::pax_ustar("pax", "pax -w -x ustar -f ../share.tar .")]
#[case::python_gnu(
    "python3",
    "python3 -c \"import tarfile; t = tarfile.open('../share.tar', 'w', format=tarfile.GNU_FORMAT); t.add('.', arcname='.'); t.close()\""
)]
fn other_archivers_pass(#[case] tool: &str, #[case] script: &str) {
    need(tool);
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    sh(script, &share);
    std::fs::create_dir_all(site.path("gnu")).unwrap();
    sh("tar -C gnu -xpf share.tar", site.tmp.path());
    let rec = site.drill_tar(&site.path("share.tar"), &share);
    assert_pass(&rec);
    assert_eq!(rec.verify.files_compared, 4, "{rec:#?}");
}

// Pins (review): a source version from before the snapshot began must be in
// the snapshot; only a later one is drift.
#[test]
fn a_restic_snapshot_must_hold_what_the_source_had_when_it_began() {
    need("restic");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    let report = share.join("docs/report.txt");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    filetime::set_file_mtime(&report, filetime::FileTime::from_system_time(hour_ago)).unwrap();
    std::fs::write(site.path("restic-pw"), "pw\n").unwrap();
    restic_in(&site, site.tmp.path(), "init");
    restic_in(&site, site.tmp.path(), "backup share");
    let spec = site.spec(restic_latest(&site), &share);
    // Other bytes, dated before the snapshot began (and after the version it holds).
    std::fs::write(&report, "another version\n").unwrap();
    let before = hour_ago + Duration::from_secs(60);
    filetime::set_file_mtime(&report, filetime::FileTime::from_system_time(before)).unwrap();
    let rec = site.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("docs/report.txt")
            && reasons(&rec).contains("older than the backup's start"),
        "{}",
        reasons(&rec)
    );
    // Written after the snapshot: drift.
    std::fs::write(&report, "written after the backup\n").unwrap();
    let rec = site.drill(&spec);
    assert_pass(&rec);
    assert!(
        rec.verify.changed_since_backup.contains("docs/report.txt"),
        "{rec:#?}"
    );
}

// Pins (issue 15, item 2): a runbook over an `rsync -a` mirror took the
// mirror directory's mtime (the source's, copied) as the backup time, so rot
// in a file edited after that passed as "changed since backup".
#[test]
fn a_runbook_over_a_mirror_without_backup_time_excuses_nothing() {
    need("rsync");
    let site = Site::new();
    let share = site.path("share");
    share_tree(&share);
    // Edited in place later: its mtime is after its directory's.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(share.join("docs/report.txt"), "quarterly report, revised\n").unwrap();
    sh("rsync -a share/ mirror/", site.tmp.path());
    let spec = site.spec(
        Box::new(verifier::driver::CommandDriver {
            steps: vec![vec![
                "cp".into(),
                "-a".into(),
                "{backup}/.".into(),
                "{sandbox}".into(),
            ]],
            backup: Some(site.path("mirror").display().to_string()),
            backup_time: None,
            isolation: Default::default(),
        }),
        &share,
    );
    assert_pass(&site.drill(&spec));
    rot(&site.path("mirror/docs/report.txt"), 3);
    let rec = site.drill(&spec);
    assert_eq!(rec.result, Verdict::Fail, "{rec:#?}");
    assert!(
        reasons(&rec).contains("content mismatch: docs/report.txt"),
        "{}",
        reasons(&rec)
    );
    assert!(rec.backup.created_at.is_none(), "{rec:#?}");
    // The record says so, in the notes `evidence show` prints.
    assert!(
        rec.restore
            .notes
            .iter()
            .any(|n| n.starts_with("the backup time is unknown")),
        "{:?}",
        rec.restore.notes
    );
}
