//! The fault matrix: each way a restore or the machine can go wrong ends with
//! a true record or a clear startup error, never a lost or false `pass`, and
//! the sandbox is always removed.

use std::process::Stdio;

use std::time::{Duration, Instant};

use super::*;

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: install {package} (scripts/test.sh does)"
    );
}

/// `run --json` under /usr/bin/time: the output and the run's peak RSS in KiB.
fn run_measured(site: &Site) -> (Output, u64) {
    need("/usr/bin/time", "time");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib %M", "-o"])
        .arg(site.path("rss"))
        .arg(env!("CARGO_BIN_EXE_restore-verifier"))
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .env_remove("RESTORE_VERIFIER_CONFIG")
        .output()
        .unwrap();
    let rss = std::fs::read_to_string(site.path("rss"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib ")?.trim().parse().ok())
        .unwrap();
    (out, rss)
}

/// Asserts the record's first reason contains `text`.
fn first_reason_says(rec: &Value, text: &str) {
    let first = rec["reasons"][0].as_str().unwrap_or_default();
    assert!(first.contains(text), "{}", rec["reasons"]);
}

#[rstest]
#[case::exits_non_zero(
    "cp -a \"$1/.\" \"$2/\"; echo disk quota exceeded >&2; exit 3",
    "fail",
    "failed (exit code 3): disk quota exceeded",
    "10s"
)]
#[case::killed_by_a_signal(
    "cp -a \"$1/.\" \"$2/\"; kill -9 $$",
    "fail",
    "(killed by signal 9)",
    "10s"
)]
#[case::hangs("sleep 600", "fail", "timed out after 2s", "2s")]
#[case::prints_gigabytes(
    "head -c 1200000000 /dev/zero | tr '\\\\0' x; head -c 300000000 /dev/zero >&2; cp -a \"$1/.\" \"$2/\"",
    "pass",
    "",
    "60s"
)]
fn restore_tool_faults(
    #[case] restore: &str,
    #[case] result: &str,
    #[case] reason: &str,
    #[case] timeout: &str,
) {
    let site = command_site(restore, &format!("timeout = \"{timeout}\"\n"));
    let t0 = Instant::now();
    // Peak memory of the whole run, measured from outside.
    let (out, rss) = run_measured(&site);
    let rec = one_record(&out);
    assert_eq!(rec["result"], result, "{rec}");
    let why = rec["reasons"].to_string();
    assert!(why.contains(reason), "{why}");
    if result == "pass" {
        assert!(rec["verify"]["files_compared"].as_u64().unwrap() > 0);
        // 2 GB of output: the record keeps a bounded tail, memory stays small,
        // and the drill is not held up reading it.
        let tail = rec["restore"]["steps"][0]["output_tail"].as_str().unwrap();
        assert!(tail.len() <= 4096, "{}", tail.len());
    }
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(
        is_empty_dir(&site.path("sandbox")),
        "the sandbox is removed"
    );
    assert_eq!(
        site.run(&["evidence", "verify"]).status.code(),
        Some(0),
        "the record is in an intact ledger"
    );
}

#[test]
fn a_child_that_starts_its_own_session_does_not_outlive_the_drill() {
    // `setsid` takes the child out of the step's process group, so the group
    // kill misses it; it also holds the step's output pipes open.
    let marker = ["sleep", "3217"];
    let site = command_site("cp -a \"$1/.\" \"$2/\"; setsid sleep 3217 &", "");
    let t0 = Instant::now();
    let out = site.run(&["run", "--json"]);
    let rec = one_record(&out);
    assert_eq!(rec["result"], "pass", "{rec}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(running(&marker), 0, "the escaped child still runs");
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn a_state_dir_that_cannot_be_written_is_a_clear_startup_error() {
    let site = Site::new(&format!(
        "{}  [job.verify]\n  content = \"all\"\n",
        job("good", "backups/good/share-*.tar")
    ));
    let state = site.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test mounts a read-only tmpfs and must run as root (CI does)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(state.clone());
    for args in [&["run"][..], &["agent"][..]] {
        let out = site.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("state_dir")
                && err.contains("is not writable")
                && err.contains("Read-only file system"),
            "{err}"
        );
        assert!(
            !err.contains("PASS") && !text(&out.stdout).contains("PASS"),
            "no drill ran: {err}"
        );
    }
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn the_clock_going_back_between_drills_gives_true_records() {
    need("faketime", "faketime");
    let site = Site::new(
        &job("good", "backups/good/share-*.tar")
            .replace("  [job.backup]", "rpo = \"26h\"\n  [job.backup]"),
    );
    // The backup was made now; its time comes from the archive.
    let archive = site.path("backups/good/share-2026-01-02.tar");
    filetime::set_file_mtime(&archive, filetime::FileTime::now()).unwrap();
    let first = one_record(&site.run(&["run", "--json"]));
    assert_eq!(first["result"], "pass", "{first}");

    // Two days back: the backup now looks as if it came from the future.
    let out = site
        .under("faketime", &["-f", "-2d"])
        .args(["run", "--json"])
        .output()
        .unwrap();
    let back = one_record(&out);
    assert_eq!(back["seq"], 2);
    assert_eq!(
        back["result"], "fail",
        "never a pass on a wrong clock: {back}"
    );
    assert!(
        back["reasons"]
            .to_string()
            .contains("the clock is wrong or went backwards, so the RPO cannot be shown to be met"),
        "{}",
        back["reasons"]
    );
    assert_eq!(back["objectives"]["rpo_met"], false);
    assert!(is_empty_dir(&site.path("sandbox")));

    let out = site.run(&["evidence", "verify"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("clock     seq 2: finished at")
            && said.contains("before seq 1 finished")
            && said.contains("the clock went backwards"),
        "{said}"
    );
}

/// Mounts a tmpfs of `size` at `dir` for the life of the guard (root only; CI
/// runs as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "this test mounts a tmpfs and must run as root (CI does)"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tar job over a source holding one file of `bytes` random bytes.
/// `tar -cf archive -C src .` with GNU tar options `extra`.
fn tar_create(archive: &Path, src: &Path, extra: &[&str]) {
    let ok = Command::new("tar")
        .args(extra)
        .arg("-cf")
        .arg(archive)
        .arg("-C")
        .arg(src)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success(), "tar -cf {}", archive.display());
}

fn big_tar_site(bytes: usize, extra: &str) -> Site {
    let site = Site::new("");
    let src = site.path("big-source");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..bytes).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(src.join("data.bin"), data).unwrap();
    let archive = site.path("big.tar");
    tar_create(&archive, &src, &[]);
    std::fs::write(
        &site.config,
        format!(
            "{AGENT}\n[[job]]\nname = \"big\"\nsource = \"big-source\"\n{extra}  [job.backup]\n  type = \"tar\"\n  path = \"big.tar\"\n"
        ),
    )
    .unwrap();
    site
}

#[test]
fn a_restore_larger_than_max_restore_bytes_is_refused_before_it_starts() {
    let site = big_tar_site(3 << 20, "max_restore_bytes = \"1MiB\"\n");
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "error", "{rec}");
    first_reason_says(&rec, "more than max_restore_bytes (1.0 MiB)");
    assert_eq!(rec["restore"]["bytes"], 0, "nothing was written");
    assert!(is_empty_dir(&site.path("sandbox")));
    // A bad size is a config error with its place.
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(&site.config, cfg.replace("1MiB", "1 lightyear")).unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("job[0].max_restore_bytes: unknown size unit"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_restore_that_cannot_fit_in_sandbox_dir_is_refused_with_the_figures() {
    let site = big_tar_site(3 << 20, "");
    let _fs = Tmpfs::mount(&site.path("sandbox"), "2m");
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "error", "{rec}");
    let why = rec["reasons"][0].as_str().unwrap();
    assert!(
        why.contains("not enough space in sandbox_dir")
            && why.contains("the restore needs about 3.0 MiB"),
        "{why}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn running_out_of_space_mid_restore_fails_cleanly_and_frees_the_space() {
    // A runbook gives no size in advance: the disk fills during the restore.
    let site = command_site(
        "cp -a \"$1/.\" \"$2/\" && head -c 3000000 /dev/zero > \"$2/filler\"",
        "",
    );
    let _fs = Tmpfs::mount(&site.path("sandbox"), "1m");
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "fail", "{rec}");
    first_reason_says(&rec, "No space left on device");
    assert!(
        is_empty_dir(&site.path("sandbox")),
        "the sandbox is removed"
    );
    let out = Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(site.path("sandbox"))
        .output()
        .unwrap();
    let used: u64 = text(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        used < 64 * 1024,
        "the tmpfs is empty again: {used} bytes used"
    );
}

// A member that stores gigabytes of zeros (not holes: the archive holds them
// as data) is a decompression bomb; a sparse member's holes, by contrast, take
// no room (verifier/tests/archivers.rs).
#[test]
fn a_member_of_4_gib_of_zeros_is_stopped_at_max_restore_bytes() {
    let site = Site::new("");
    let src = site.path("zeros-source");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::File::create(src.join("zeros.img"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    // The tar of it, itself kept sparse on disk: a header saying 4 GiB, the
    // zeros, the end-of-archive blocks.
    let archive = site.path("zeros.tar");
    {
        use std::io::Write;
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros.img").unwrap();
        h.set_size(4 << 30);
        h.set_mode(0o644);
        h.set_mtime(1_767_225_600);
        h.set_cksum();
        let mut f = std::fs::File::create(&archive).unwrap();
        f.write_all(h.as_bytes()).unwrap();
        f.set_len(512 + (4 << 30) + 1024).unwrap();
    }
    // Without a cap, the size its headers claim is checked against free space.
    std::fs::write(
        &site.config,
        format!(
            "{AGENT}\n[[job]]\nname = \"zeros\"\nsource = \"zeros-source\"\n  [job.backup]\n  type = \"tar\"\n  path = \"zeros.tar\"\n"
        ),
    )
    .unwrap();
    {
        let _fs = Tmpfs::mount(&site.path("sandbox"), "100m");
        let rec = one_record(&site.run(&["run", "--json"]));
        assert_eq!(rec["result"], "error", "{rec}");
        first_reason_says(&rec, "the restore needs about 4.0 GiB");
    }
    std::fs::write(
        &site.config,
        format!(
            "{AGENT}\n[[job]]\nname = \"zeros\"\nsource = \"zeros-source\"\nmax_restore_bytes = \"64MiB\"\n  [job.backup]\n  type = \"tar\"\n  path = \"zeros.tar.zst\"\n"
        ),
    )
    .unwrap();
    // Compressed without its size in the frame, the archive does not say how
    // much it holds: the cap stops the restore as it writes.
    let ok = Command::new("zstd")
        .args(["-1", "-q", "-T2", "--no-content-size"])
        .arg(&archive)
        .arg("-o")
        .arg(site.path("zeros.tar.zst"))
        .status()
        .unwrap();
    assert!(ok.success());
    let t0 = Instant::now();
    let (out, rss) = run_measured(&site);
    let rec = one_record(&out);
    assert_eq!(rec["result"], "error", "{rec}");
    first_reason_says(
        &rec,
        "passed max_restore_bytes (64.0 MiB) while writing zeros.img",
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn a_dir_drill_leaves_the_source_and_the_backup_as_they_were() {
    let site = Site::new("");
    copy_tree(&site.path("source"), &site.path("mirror"));
    std::fs::write(
        &site.config,
        format!(
            "{AGENT}\n[[job]]\nname = \"copy\"\nsource = \"source\"\n  [job.backup]\n  type = \"dir\"\n  path = \"mirror\"\n"
        ),
    )
    .unwrap();
    let backup = fingerprint(&site.path("mirror"));
    // `Site::run` checks the source.
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "pass", "{rec}");
    assert!(
        backup == fingerprint(&site.path("mirror")),
        "the drill changed the backup"
    );
}

#[test]
fn an_archive_of_a_million_empty_entries_is_restored_in_bounded_memory() {
    let site = Site::new("");
    let archive = site.path("million.tar");
    {
        let mut b = tar::Builder::new(std::io::BufWriter::new(
            std::fs::File::create(&archive).unwrap(),
        ));
        for i in 0..1_000_000u32 {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(
                &mut h,
                format!("d{:03}/e{i:07}", i % 1000),
                std::io::empty(),
            )
            .unwrap();
        }
        b.into_inner().unwrap();
    }
    std::fs::write(
        &site.config,
        format!("{AGENT}\n[[job]]\nname = \"million\"\ntimeout = \"20m\"\n  [job.backup]\n  type = \"tar\"\n  path = \"million.tar\"\n"),
    )
    .unwrap();
    let (out, rss) = run_measured(&site);
    let rec = one_record(&out);
    assert_eq!(rec["result"], "pass", "{rec}");
    assert_eq!(rec["restore"]["files"], 1_000_000);
    assert_eq!(rec["verify"]["files_compared"], 1_000_000);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB for a million entries");
    assert!(
        is_empty_dir(&site.path("sandbox")),
        "the sandbox is removed"
    );
}
