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

/// A command job that restores the fixture source with `restore` (a shell
/// snippet run by `sh -c`, with the mirror in $1 and the sandbox in $2).
fn command_site(restore: &str, extra: &str) -> Site {
    let site = Site::new("");
    copy_tree(&site.path("source"), &site.path("mirror"));
    let snippet = restore.replace('"', "\\\"");
    let jobs = format!(
        "\n[[job]]\nname = \"faulty\"\nsource = \"source\"\n{extra}[job.backup]\ntype = \"command\"\npath = \"{}\"\nbackup_time = \"2026-06-01T00:00:00Z\"\nrestore = [[\"sh\", \"-c\", \"{snippet}\", \"restore\", \"{{backup}}\", \"{{sandbox}}\"]]\n",
        site.path("mirror").display()
    );
    std::fs::write(&site.config, format!("{AGENT}{jobs}")).unwrap();
    site
}

fn one_record(out: &Output) -> Value {
    let recs = records(out);
    assert_eq!(recs.len(), 1, "{}", text(&out.stderr));
    recs.into_iter().next().unwrap()
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
    need("/usr/bin/time", "time");
    let site = command_site(restore, &format!("timeout = \"{timeout}\"\n"));
    let t0 = Instant::now();
    // Peak memory of the whole run, measured from outside.
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
    let rss: u64 = std::fs::read_to_string(site.path("rss"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib ")?.trim().parse().ok())
        .unwrap();
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
        assert!(!err.contains("PASS"), "no drill ran: {err}");
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
    let out = Command::new("faketime")
        .args(["-f", "-2d"])
        .arg(env!("CARGO_BIN_EXE_restore-verifier"))
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .env_remove("RESTORE_VERIFIER_CONFIG")
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
