//! The command line end to end: `run` and its exit codes, `compare`, `demo`,
//! an interrupted run, and how file names and roots are shown.

use super::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_restore-verifier"));
    c.env_remove("RESTORE_VERIFIER_CONFIG");
    c
}

#[test]
fn run_reports_pass_and_fail_with_exit_codes() {
    let site = two_jobs();
    let out = site.run(&["run", "good", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["result"], "pass");
    assert_eq!(recs[0]["trigger"]["kind"], "manual");
    assert_eq!(recs[0]["verify"]["files_compared"], 9);
    assert_eq!(recs[0]["backup"]["id"], "share-2026-01-02.tar");
    assert!(recs[0]["restore"]["duration_seconds"].is_number());
    assert!(recs[0]["verify"]["duration_seconds"].is_number());
    assert!(
        recs[0]["started_at"].as_str().unwrap().ends_with("+09:00"),
        "timestamps in the configured zone"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("good: PASS") && err.contains("9 files compared"),
        "{err}"
    );

    // Without --json the verdict is on stdout (`run bad > out.txt` holds
    // it), and no log line is woven into it.
    let out = site.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let so = text(&out.stdout);
    assert!(so.starts_with("bad: FAIL"), "{so}");
    assert!(so.contains("content mismatch: finance/ledger.csv"), "{so}");
    assert!(!so.contains("WARN") && !text(&out.stderr).contains("bad: FAIL"));

    let out = site.run(&[
        "run",
        "--trigger",
        "change",
        "--reason",
        "CHG-1234 kernel update",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "one of the two jobs fails");
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["trigger"]["kind"], "change");
    assert_eq!(recs[0]["trigger"]["reason"], "CHG-1234 kernel update");
    assert!(is_empty_dir(&site.path("sandbox")), "sandboxes are removed");
}

#[test]
fn unknown_job_is_a_usage_error() {
    let site = two_jobs();
    let out = site.run(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no job named \"nope\"; configured jobs: good, bad"));
}

/// Lines of `out` that start with `prefix`.
fn lines_starting<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

// Pins: a file named "x\n  verify   0 problems: PASS" printed a fake verify
// line in the summary and in `evidence show`, and a name with ESC sent a
// terminal escape.
#[test]
fn file_names_are_escaped_for_people_and_exact_in_json() {
    let site = Site::new(&job("names", "backups/names/share-*.tar"));
    let source = site.path("source");
    let fake = "x\n  verify   0 problems: PASS";
    let odd = "tab\there \x1b[31mred";
    // Whole seconds, as GNU tar records them.
    let t = filetime::FileTime::from_unix_time(TREE_TIME as i64, 0);
    for name in [fake, odd] {
        let p = source.join(name);
        std::fs::write(&p, format!("what {name:?} holds\n")).unwrap();
        filetime::set_file_mtime(&p, t).unwrap();
    }
    std::fs::create_dir_all(site.path("backups/names")).unwrap();
    let tar = Command::new("tar")
        .args([
            "-C",
            "source",
            "-cf",
            "backups/names/share-2026-12-01.tar",
            ".",
        ])
        .current_dir(site.tmp.path())
        .output()
        .expect("GNU tar (scripts/test.sh installs it)");
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    // Bit rot in the source after the backup: other bytes, the same mtime.
    for name in [fake, odd] {
        let p = source.join(name);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(&p, bytes).unwrap();
        filetime::set_file_mtime(&p, t).unwrap();
    }

    let out = site.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let human = text(&out.stderr);
    assert_eq!(
        lines_starting(&human, "  verify").len(),
        1,
        "a name faked a line:\n{human}"
    );
    assert!(
        human.contains("names: FAIL")
            && human.contains(r"  reason   content mismatch: x\n  verify   0 problems: PASS (")
            && human.contains(r"  reason   content mismatch: tab\there \x1b[31mred ("),
        "{human}"
    );
    assert!(!human.contains(['\t', '\x1b']), "{human:?}");
    // The record keeps the exact names.
    let rec = records(&out).remove(0);
    assert_eq!(rec["result"], "fail");
    let mismatched: Vec<&str> = rec["verify"]["mismatched"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        mismatched.contains(&fake) && mismatched.contains(&odd),
        "{mismatched:?}"
    );
    let reasons = rec["reasons"].to_string();
    assert!(
        reasons.contains(r#""content mismatch: x\n  verify   0 problems: PASS ("#),
        "{reasons}"
    );

    let out = site.run(&["evidence", "show", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert_eq!(
        lines_starting(&shown, "  verify").len(),
        1,
        "a name faked a line:\n{shown}"
    );
    assert!(
        shown.contains("mismatched: 2")
            && shown.contains(r"  x\n  verify   0 problems: PASS  (content")
            && shown.contains(r"  tab\there \x1b[31mred  (content"),
        "{shown}"
    );
    assert!(!shown.contains(['\t', '\x1b']), "{shown:?}");
    let out = site.run(&["evidence", "show", "1", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verify"]["mismatched"], rec["verify"]["mismatched"]);
    assert_eq!(v["reasons"], rec["reasons"]);

    let listed = text(&site.run(&["evidence", "list"]).stdout);
    assert_eq!(
        listed.lines().count(),
        2,
        "a header and one record:\n{listed}"
    );
    // The first reason, in tree order.
    assert!(
        listed.contains(r"  content mismatch: tab\there \x1b[31mred ("),
        "{listed}"
    );
    assert!(!listed.contains(['\t', '\x1b']), "{listed:?}");
}

#[test]
fn compare_command_exits_1_on_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let a = source_tree(&tmp.path().join("a"));
    let b = source_tree(&tmp.path().join("b"));
    let out = bin().arg("compare").arg(&a).arg(&b).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("no differences"));
    std::fs::write(b.join("docs/report.txt"), "changed").unwrap();
    std::fs::remove_file(b.join("empty.txt")).unwrap();
    let out = bin()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mismatched"]["count"], 1);
    assert_eq!(v["mismatched"]["items"][0]["path"], "docs/report.txt");
    assert_eq!(v["missing"]["items"][0]["path"], "empty.txt");
}

/// Each small file in its own directory, behind a large file that keeps the
/// only worker busy: the walk runs ahead, and every file it queues holds its
/// directory open on each side. With a low limit on open files the compare
/// must still read everything instead of failing with "Too many open files".
#[test]
fn compare_stays_within_a_low_open_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for root in [&a, &b] {
        std::fs::create_dir_all(root.join("0000")).unwrap();
        std::fs::write(root.join("0000/big"), vec![7u8; 96 << 20]).unwrap();
        for i in 1..=1500 {
            let d = root.join(format!("{i:04}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("f"), format!("file {i}")).unwrap();
        }
    }
    std::fs::write(b.join("1234/f"), "file 1235").unwrap();
    let out = Command::new("prlimit")
        .arg("--nofile=160:160")
        .arg(env!("CARGO_BIN_EXE_restore-verifier"))
        .args(["--quiet", "compare", "--json", "--threads", "1"])
        .arg(&a)
        .arg(&b)
        .output()
        .expect("prlimit (util-linux) is needed: scripts/test.sh installs it");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    assert_eq!(v["unreadable"]["count"], 0, "{v}");
    assert_eq!(v["source_unreadable"]["count"], 0, "{v}");
    assert_eq!(v["content_checked"], 1501, "{v}");
    assert_eq!(v["mismatched"]["count"], 1, "{v}");
    assert_eq!(v["mismatched"]["items"][0]["path"], "1234/f");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn unseeded_sample_records_its_seed_and_the_seed_replays_it() {
    let sampled = |seed: &str| {
        format!(
            "{}  [job.verify]\n  content = \"sample\"\n  sample_files = 3\n{seed}",
            job("s", "backups/good/share-*.tar")
        )
    };
    let site = Site::new(&sampled(""));
    let first = records(&site.run(&["run", "--json"])).remove(0);
    let seed = first["verify"]["sample_seed"]
        .as_u64()
        .expect("the seed used is recorded");
    assert_eq!(first["verify"]["content_checked"], 3);
    std::fs::write(
        &site.config,
        format!("{AGENT}{}", sampled(&format!("  seed = {seed}\n"))),
    )
    .unwrap();
    let again = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(again["verify"]["sample_seed"].as_u64(), Some(seed));
    assert_eq!(manifest_paths(&site, &first), manifest_paths(&site, &again));
}

#[test]
fn demo_shows_one_pass_and_one_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = bin().args(["demo", "--dir"]).arg(&dir).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("demo-fileserver: PASS"), "{err}");
    assert!(err.contains("demo-corrupted: FAIL"), "{err}");
    assert!(
        err.contains("content mismatch: finance/ledger-2026.csv"),
        "{err}"
    );
    assert!(
        err.contains("OK: the hash chain holds for all 2 records"),
        "{err}"
    );
    assert!(Path::new(&dir.join("state/ledger.jsonl")).exists());
    let report = std::fs::read_to_string(dir.join("report.en.html")).unwrap();
    assert!(
        report.contains("Demo engineering file server"),
        "the demo writes a report"
    );
    assert!(dir.join("report.ja.html").exists());
    // A second demo in the same place starts over instead of failing.
    let out = bin().args(["demo", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // It never deletes a directory it did not make.
    let other = tmp.path().join("mine");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("precious.txt"), "keep").unwrap();
    let out = bin().args(["demo", "--dir"]).arg(&other).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(other.join("precious.txt").exists());
}

#[test]
fn interrupted_run_records_error_removes_sandbox_and_exits_130() {
    // A dir backup big enough that the drill is still running when the signal comes.
    let site = Site::new("");
    let data = site.path("big");
    for d in 0..8 {
        std::fs::create_dir_all(data.join(format!("d{d}"))).unwrap();
        for f in 0..40 {
            let bytes: Vec<u8> = (0..1_000_000u32)
                .map(|i| (i ^ (d * 40 + f)) as u8)
                .collect();
            std::fs::write(data.join(format!("d{d}/f{f}")), bytes).unwrap();
        }
    }
    std::fs::write(
        &site.config,
        format!("{AGENT}\n[[job]]\nname = \"big\"\nsource = \"big\"\n[job.backup]\ntype = \"dir\"\npath = \"big\"\n"),
    )
    .unwrap();
    let child = bin()
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sandbox = site.path("sandbox");
    let t0 = std::time::Instant::now();
    // The drill has started when its sandbox appears (not the writability probe).
    let started = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with(".rv-probe"))
        })
    };
    while !started(&sandbox) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the drill never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["result"], "error");
    assert!(
        recs[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{}",
        recs[0]["reasons"]
    );
    assert!(
        is_empty_dir(&sandbox),
        "the sandbox is removed after an interrupt"
    );
    assert_eq!(site.run(&["evidence", "verify"]).status.code(), Some(0));
}

// What an operator reads: where in the archive the compared data was, and (in
// `evidence show`) which metadata was compared and which not, with why.
#[test]
fn the_summary_names_the_root_and_evidence_show_the_metadata() {
    let site = Site::new("");
    let source = site.path("source");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(site.path("backups/abs.tgz"))
        .arg(&source)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        &site.config,
        format!("{AGENT}{}", job("abs", "backups/abs.tgz")),
    )
    .unwrap();
    let out = site.run(&["run"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let root = source.strip_prefix("/").unwrap().display().to_string();
    assert!(said.contains(&format!(", compared from {root}")), "{said}");
    let rec = records(&site.run(&["evidence", "list", "--json"])).remove(0);
    let id = rec["id"].as_str().unwrap();
    let shown = text(&site.run(&["evidence", "show", id]).stdout);
    assert!(shown.contains("metadata compared: mode"), "{shown}");
    assert!(
        shown.contains("metadata not compared: acl: the backup holds no ACLs"),
        "{shown}"
    );
}
