//! End-to-end tests: the real `restore-verifier` binary on the committed fixtures.

mod agent;
mod alerts;
mod common;
mod conformance;
mod deploy;
mod faults;
mod fuzz;
mod guides;
mod isolation;
mod outputs;
mod pg_dumps;
mod pg_server;
mod store;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use rstest::rstest;
use serde_json::{Value, json};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_restore-verifier"));
    c.env_remove("RESTORE_VERIFIER_CONFIG");
    c
}

struct Site {
    tmp: tempfile::TempDir,
    config: PathBuf,
}

const AGENT: &str = r#"[agent]
state_dir = "state"
sandbox_dir = "sandbox"
timezone = "Asia/Tokyo"
"#;

fn job(name: &str, backup_glob: &str) -> String {
    format!(
        r#"
[[job]]
name = "{name}"
system = "Fixture file server"
source = "source"
  [job.backup]
  type = "tar"
  path = "{backup_glob}"
"#
    )
}

impl Site {
    /// A directory with the fixture source, a good and a corrupted backup, and
    /// a config made of AGENT plus `jobs`.
    fn new(jobs: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        source_tree(&tmp.path().join("source"));
        let good = archive("good.tar", &tmp.path().join("backups/good"));
        std::fs::rename(&good, good.with_file_name("share-2026-01-02.tar")).unwrap();
        let bad = archive("byte-changed.tar", &tmp.path().join("backups/bad"));
        std::fs::rename(&bad, bad.with_file_name("share-2026-01-02.tar")).unwrap();
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, format!("{AGENT}{jobs}")).unwrap();
        Site { tmp, config }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// `wrapper wrapper_args…` running the binary on this site's config
    /// (faketime, unshare, /usr/bin/time); the caller adds the binary's own
    /// arguments.
    fn under(&self, wrapper: &str, wrapper_args: &[&str]) -> Command {
        let mut c = Command::new(wrapper);
        c.args(wrapper_args)
            .arg(env!("CARGO_BIN_EXE_restore-verifier"))
            .arg("-c")
            .arg(&self.config)
            .env_remove("RESTORE_VERIFIER_CONFIG");
        c
    }

    /// Runs the binary on this site's config. A drill (`run`) must leave the
    /// source exactly as it was: content, mode and mtime of every entry.
    fn run(&self, args: &[&str]) -> Output {
        let source = self.path("source");
        let before = (args.first() == Some(&"run")).then(|| fingerprint(&source));
        let out = bin()
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        if let Some(before) = before {
            assert!(
                before == fingerprint(&source),
                "the drill changed the source {}",
                source.display()
            );
        }
        out
    }
}

/// The system `name` of a JSON report.
fn report_system(report: &Value, name: &str) -> Value {
    report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no system {name:?} in the report: {report}"))
        .clone()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn records(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn two_jobs() -> Site {
    Site::new(&format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("bad", "backups/bad/share-*.tar")
    ))
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

#[rstest]
#[case::unknown_key(
    "  colour = \"red\"\n",
    "config.toml:12:3: job[0].backup.colour: unknown field `colour`"
)]
#[case::bad_cron(
    "schedule = \"61 2 * * *\"\n",
    "config.toml:16:12: job[1].schedule: invalid cron expression"
)]
#[case::bad_duration(
    "rpo = \"26 hourz\"\n",
    "config.toml:16:7: job[1].rpo: invalid duration"
)]
#[case::missing_backup(
    "[job.backup]\ntype = \"tar\"\npath = \"backups/none-*.tar\"\n",
    "config.toml:18:8: job[1].backup.path: no backup file matches"
)]
#[case::duplicate_name("", "config.toml:15:8: job[1].name: duplicate job name \"good\"")]
fn config_check_reports_position_and_key(#[case] extra: &str, #[case] expected: &str) {
    // job[0] is "good"; `extra` goes into job[0].backup for the unknown key and
    // into a second job otherwise.
    let text_cfg = if expected.contains("colour") {
        format!(
            "{AGENT}{}",
            job("good", "backups/good/share-*.tar")
                .replace("  path =", &format!("{extra}  path ="))
        )
    } else {
        let second = if expected.contains("duplicate") {
            job("good", "backups/bad/share-*.tar")
        } else if expected.contains("backup.path") {
            format!("\n[[job]]\nname = \"other\"\n{extra}")
        } else {
            format!(
                "\n[[job]]\nname = \"other\"\n{extra}[job.backup]\ntype = \"dir\"\npath = \"source\"\n"
            )
        };
        format!("{AGENT}{}{second}", job("good", "backups/good/share-*.tar"))
    };
    let site = Site::new("");
    std::fs::write(&site.config, &text_cfg).unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(expected),
        "expected {expected:?} in:\n{err}\nconfig:\n{text_cfg}"
    );
    // Commands that drill refuse a broken config the same way.
    if !expected.contains("backup.path") {
        assert_eq!(site.run(&["run"]).status.code(), Some(2));
    }
}

#[test]
fn config_check_accepts_a_good_config() {
    let site = two_jobs();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(so.contains("OK, 2 job(s)"), "{so}");
    assert!(so.contains("job good: tar "), "{so}");
}

// Pins (issue 15, item 19): a job without `timeout` ran for up to a day,
// and `config check` printed "timeout 1d" as if it had been set.
#[test]
fn config_check_shows_the_default_timeout() {
    let site = Site::new(&format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("set", "backups/good/share-*.tar")
            .replace("  [job.backup]", "timeout = \"90m\"\n  [job.backup]")
    ));
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let line = |name: &str| {
        so.lines()
            .find(|l| l.contains(&format!("job {name}: ")))
            .unwrap_or_else(|| panic!("no job {name} in {so}"))
            .to_string()
    };
    assert!(line("good").contains("timeout 6h (default)"), "{so}");
    assert!(line("set").contains("timeout 1h 30m,"), "{so}");
    assert!(!line("set").contains("(default)"), "{so}");
}

// Pins (issue 16, part 4): `config check` said OK for what the agent then
// refused to start with. Both now run the same checks, named by key.
#[test]
fn config_check_refuses_what_the_agent_would_refuse_at_start() {
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let config = std::fs::read_to_string(&site.config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(site.path("token"), "short\n").unwrap();
    std::fs::write(site.path("shared-token"), "0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(
        site.path("shared-token"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::write(site.path("key.pem"), "not a key\n").unwrap();
    std::fs::write(site.path("a-file"), "").unwrap();
    for (key, value, says) in [
        (
            "api_token_file",
            "\"token\"",
            "agent.api_token_file: the token in api_token_file",
        ),
        (
            "api_token_file",
            "\"shared-token\"",
            "agent.api_token_file: ",
        ),
        (
            "signing_key_file",
            "\"key.pem\"",
            "agent.signing_key_file: ",
        ),
        // 192.0.2.0/24 is for documentation: no host has it.
        (
            "listen",
            "\"192.0.2.1:9464\"",
            "agent.listen: cannot listen on 192.0.2.1:9464",
        ),
        (
            "state_dir",
            "\"a-file/state\"",
            "agent.state_dir: state_dir ",
        ),
        (
            "sandbox_dir",
            "\"a-file/sandbox\"",
            "agent.sandbox_dir: sandbox_dir ",
        ),
    ] {
        // The key replaces the site's own (state_dir), or is added.
        let agent_section = config
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        std::fs::write(
            &site.config,
            agent_section.replace("[agent]\n", &format!("[agent]\n{key} = {value}\n")),
        )
        .unwrap();
        let out = site.run(&["config", "check"]);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{key}: {err}{}",
            text(&out.stdout)
        );
        assert!(err.contains(says), "{key}: {err}");
        if value.contains("shared-token") {
            assert!(
                err.contains("writable by group or others (mode 666)"),
                "{err}"
            );
        }
        // The agent refuses the same, with the same words.
        let out = site.run(&["agent"]);
        assert_eq!(out.status.code(), Some(2), "{key}");
        assert!(
            text(&out.stderr).contains(says),
            "{key}: {}",
            text(&out.stderr)
        );
    }
    // Readable by every account: a warning, in config check as at start.
    std::fs::set_permissions(
        site.path("shared-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        &site.config,
        config.replace("[agent]\n", "[agent]\napi_token_file = \"shared-token\"\n"),
    )
    .unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("agent.api_token_file: warning: ")
            && text(&out.stderr).contains("readable by every account (mode 644)"),
        "{}",
        text(&out.stderr)
    );

    // Warnings, not refusals: a listen address in use (it may be the
    // running agent's), a sink that would never be told anything.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    std::fs::write(
        &site.config,
        format!(
            "{}\n[[alert]]\nname = \"only-good-news\"\ntype = \"command\"\nrun = [\"true\"]\non = [\"recovered\"]\n",
            config.replace("[agent]\n", &format!("[agent]\nlisten = \"{addr}\"\n"))
        ),
    )
    .unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("agent.listen: warning: {addr} is in use")),
        "{err}"
    );
    assert!(
        err.contains("alert.on: warning: the sink \"only-good-news\" is told of no problem"),
        "{err}"
    );
    drop(held);
}

#[test]
fn concurrent_runs_leave_a_ledger_that_verifies() {
    let jobs: String = (0..4)
        .map(|i| job(&format!("j{i}"), "backups/good/share-*.tar"))
        .collect();
    let site = Site::new(&jobs);
    let children: Vec<_> = (0..5)
        .map(|_| {
            bin()
                .arg("-c")
                .arg(&site.config)
                .args(["run", "--quiet"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let out = site.run(&["evidence", "verify"]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{so}");
    assert!(so.contains("records   20"), "{so}");
    assert!(so.contains("OK: the hash chain holds"));
}

#[test]
fn evidence_verify_names_the_first_bad_line() {
    let site = two_jobs();
    for _ in 0..2 {
        site.run(&["run"]);
    }
    let ledger = site.path("state/ledger.jsonl");
    let out = bin()
        .args(["evidence", "verify", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "--ledger needs no config: {}",
        text(&out.stderr)
    );
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    let edited = lines[1].replace("\"result\":\"fail\"", "\"result\":\"pass\"");
    assert_ne!(edited, lines[1]);
    lines[1] = &edited;
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let so = text(&out.stdout);
    assert!(so.contains("BROKEN at line 2: record was changed"), "{so}");
}

#[test]
fn evidence_list_and_show() {
    let site = two_jobs();
    site.run(&["run"]);
    let out = site.run(&["evidence", "list", "--json"]);
    assert_eq!(records(&out).len(), 2);
    let out = site.run(&["evidence", "list", "--job", "bad"]);
    let so = text(&out.stdout);
    assert!(
        so.contains("bad") && so.contains("fail") && !so.contains(" good "),
        "{so}"
    );
    let out = site.run(&["evidence", "list", "--since", "2099-01-01", "--json"]);
    assert!(records(&out).is_empty());
    let id = records(&site.run(&["evidence", "list", "--json"]))[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = site.run(&["evidence", "show", &id]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        so.contains("bad: FAIL")
            && so.contains("mismatched: 1")
            && so.contains("finance/ledger.csv"),
        "{so}"
    );
    let out = site.run(&["evidence", "show", "2", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(
        site.run(&["evidence", "show", "no-such-id"]).status.code(),
        Some(2)
    );
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

fn manifest_paths(site: &Site, rec: &Value) -> Vec<String> {
    let p = site
        .path("state")
        .join(rec["artifacts"].as_str().unwrap())
        .join("manifest.jsonl");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
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

#[rstest]
#[case::edited("edit")]
#[case::removed("remove")]
#[case::inserted("insert")]
#[case::swapped("swap")]
fn evidence_verify_exits_1_after_any_single_change(#[case] how: &str) {
    let site = two_jobs();
    site.run(&["run"]);
    site.run(&["run"]);
    let ledger = site.path("state/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    assert_eq!(lines.len(), 4);
    match how {
        "edit" => lines[2] = lines[2].replace("\"job\":\"good\"", "\"job\":\"goof\""),
        "remove" => {
            lines.remove(1);
        }
        "insert" => {
            let copy = lines[0].clone();
            lines.insert(2, copy);
        }
        _ => lines.swap(1, 2),
    }
    assert_ne!(lines.join("\n") + "\n", original);
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("BROKEN at line"));
}

#[test]
fn signed_evidence_verifies_only_with_its_key() {
    let site = two_jobs();
    let key = site.path("evidence.key");
    let out = bin().arg("keygen").arg("-o").arg(&key).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(site.path("evidence.key.pub").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_ne!(
        bin()
            .arg("keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0),
        "never overwrites a key"
    );
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "timezone = \"Asia/Tokyo\"\n",
        "timezone = \"Asia/Tokyo\"\nsigning_key_file = \"evidence.key\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    site.run(&["run"]);
    let verify = |pubkey: &Path| {
        bin()
            .arg("-c")
            .arg(&site.config)
            .args(["evidence", "verify", "--public-key"])
            .arg(pubkey)
            .output()
            .unwrap()
    };
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // Signing began with the ledger: its key record is line 1.
    assert!(
        text(&out.stdout).contains("signed    3 of 3 records carry a signature that verifies")
            && text(&out.stdout).contains("signed    seq 1-3 by key "),
        "{}",
        text(&out.stdout)
    );

    // A ledger signed by another key.
    let other = site.path("other.key");
    bin().arg("keygen").arg("-o").arg(&other).output().unwrap();
    let out = verify(&site.path("other.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("BROKEN at line 1: records 1 to 3 are signed by key ")
            && text(&out.stdout).contains("none of the given public keys"),
        "{}",
        text(&out.stdout)
    );

    // A changed signature.
    let ledger = site.path("state/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let v: Value = serde_json::from_str(&lines[1]).unwrap();
    let sig = v["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    lines[1] = lines[1].replace(&sig, &flipped);
    std::fs::write(&ledger, lines.join("\n") + "\n").unwrap();
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("BROKEN at line 2: signature does not verify"),
        "{}",
        text(&out.stdout)
    );

    // A changed record.
    let failed = 1 + original
        .lines()
        .position(|l| l.contains("\"result\":\"fail\""))
        .unwrap();
    std::fs::write(
        &ledger,
        original.replacen("\"result\":\"fail\"", "\"result\":\"pass\"", 1),
    )
    .unwrap();
    let out = verify(&site.path("evidence.key.pub"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!("BROKEN at line {failed}: record was changed")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn report_in_english_japanese_csv_and_json() {
    let site = two_jobs();
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{cfg}\n[[system]]\nname = \"ERP\"\nowner = \"経理部\"\ncriticality = \"high\"\n"),
    )
    .unwrap();
    site.run(&["run"]);
    let out = site.run(&["report"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("# Restore test report") && md.contains("## System: Fixture file server"),
        "{md}"
    );
    assert!(md.contains("not covered by any restore job"), "{md}");
    let ja = text(&site.run(&["report", "--lang", "ja"]).stdout);
    assert!(
        ja.contains("リストアテスト報告書") && ja.contains("No.151 評点"),
        "{ja}"
    );
    let v: Value =
        serde_json::from_slice(&site.run(&["report", "--format", "json"]).stdout).unwrap();
    assert_eq!(v["overall"], 0, "ERP has no job");
    let fs = report_system(&v, "Fixture file server");
    assert_eq!(fs["score"], 1, "{fs}");
    assert_eq!(fs["real_restores"], 2);
    // A standard CSV reader reads it; --excel adds the UTF-8 BOM.
    let csv_path = site.path("r.csv");
    site.run(&[
        "report",
        "--format",
        "csv",
        "--excel",
        "-o",
        csv_path.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&csv_path).unwrap();
    assert!(bytes.starts_with(&[0xef, 0xbb, 0xbf]));
    let py = Command::new("python3")
        .args(["-c", "import csv,sys; rows={r['system']: r for r in csv.DictReader(open(sys.argv[1], encoding='utf-8-sig'))}; print(len(rows), rows['ERP']['owner'], rows['ERP']['score'], rows['Fixture file server']['score'])"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert_eq!(
        text(&py.stdout).trim(),
        "2 経理部 0 1",
        "{}",
        text(&py.stderr)
    );
}

#[test]
fn export_bundle_verifies_offline() {
    let site = two_jobs();
    let key = site.path("evidence.key");
    assert!(
        bin()
            .arg("keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "timezone = \"Asia/Tokyo\"\n",
        "timezone = \"Asia/Tokyo\"\nsigning_key_file = \"evidence.key\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    site.run(&["run"]);
    let bundle = site.path("bundle.tar.gz");
    let out = site.run(&["evidence", "export", "-o", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 records in the period"),
        "{}",
        text(&out.stdout)
    );
    let x = site.path("x");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "ledger.jsonl",
        "evidence.pub",
        "report.en.md",
        "report.ja.md",
        "report.json",
        "README.txt",
        "SHA256SUMS",
    ] {
        assert!(x.join(f).exists(), "{f} is missing from the bundle");
    }
    assert_eq!(
        std::fs::read_dir(x.join("runs")).unwrap().count(),
        2,
        "both drills' manifests"
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums.stdout));
    // The auditor's check needs nothing but the bundle.
    let out = bin()
        .args(["evidence", "verify", "--ledger"])
        .arg(x.join("ledger.jsonl"))
        .arg("--public-key")
        .arg(x.join("evidence.pub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("signed    3 of 3"),
        "the key record and both drills: {}",
        text(&out.stdout)
    );
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let ok = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "chromium is missing: scripts/test.sh installs Debian's chromium"
    );
    let fonts = Command::new("fc-list").arg(":lang=ja").output().unwrap();
    assert!(
        !text(&fonts.stdout).trim().is_empty(),
        "no Japanese font: scripts/test.sh installs fonts-noto-cjk"
    );
    let site = two_jobs();
    site.run(&["run"]);
    for lang in ["en", "ja"] {
        let page = site.path(&format!("report.{lang}.html"));
        let out = site.run(&[
            "report",
            "--format",
            "html",
            "--lang",
            lang,
            "-o",
            page.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let html = std::fs::read_to_string(&page).unwrap();
        for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(
                !html.contains(external),
                "the report loads an external asset ({external})"
            );
        }
        assert!(!html.contains("<script"), "no script");
        let png = site.path(&format!("report.{lang}.png"));
        let profile = site.path(&format!("chromium-{lang}"));
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1000,1400",
            ])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let console: Vec<String> = text(&out.stderr)
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(String::from)
            .collect();
        assert!(console.is_empty(), "console messages: {console:?}");
        // Not blank: plenty of pixels that are not the white background.
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = info.color_type.samples();
        let ink = buf[..info.buffer_size()]
            .chunks(px)
            .filter(|p| p.iter().take(3).any(|c| *c < 200))
            .count();
        let total = (info.width * info.height) as usize;
        assert!(
            ink * 100 > total,
            "the {lang} page looks blank ({ink} of {total} pixels inked)"
        );
    }
}

#[test]
fn rotating_drills_add_up_to_every_file_and_evidence_says_so() {
    let site = Site::new(&format!(
        "{}  [job.verify]\n  content = \"rotate\"\n  rotate_over = 3\n",
        job("r", "backups/good/share-*.tar")
    ));
    let mut checked: Vec<String> = Vec::new();
    for slice in 0..3 {
        let before = text(&site.run(&["evidence", "list"]).stdout);
        if slice > 0 {
            assert!(
                before.contains(&format!(
                    "r: NOT every file content-verified within the last 3 drills: slice(s) {} of 0-2 had no passing drill ({slice} of 3 drills so far",
                    if slice == 1 { "1-2" } else { "2" }
                )),
                "{before}"
            );
        }
        let out = site.run(&["run", "--json"]);
        let rec = records(&out).remove(0);
        assert_eq!(rec["result"], "pass", "{}", text(&out.stderr));
        assert_eq!(rec["verify"]["rotate"], json!({"slice": slice, "over": 3}));
        assert!(
            text(&out.stderr).contains(&format!("rotate slice {slice} of 0-2")),
            "{}",
            text(&out.stderr)
        );
        checked.extend(manifest_paths(&site, &rec));
    }
    // The three slices are disjoint and cover every file.
    let files = walkdir::WalkDir::new(site.path("source"))
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count();
    let n = checked.len();
    checked.sort();
    checked.dedup();
    assert_eq!((n, checked.len()), (files, files), "{checked:?}");

    let listed = text(&site.run(&["evidence", "list"]).stdout);
    assert!(
        listed.contains(
            "rotation: r: every file content-verified within the last 3 drills (slices 0-2, since "
        ),
        "{listed}"
    );
    let report = site.run(&["report", "--format", "md"]);
    let md = text(&report.stdout);
    assert!(
        md.contains("r: every file content-verified within the last 3 drills"),
        "{md}"
    );
    let ja = text(
        &site
            .run(&["report", "--format", "md", "--lang", "ja"])
            .stdout,
    );
    assert!(
        ja.contains("r：直近3回のドリルで全ファイルの内容を検証済み"),
        "{ja}"
    );
}

#[test]
fn a_torn_ledger_line_is_kept_aside_and_evidence_verify_explains_it() {
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    // A crash while the next record was being written.
    let ledger = site.path("state/ledger.jsonl");
    let mut content = std::fs::read_to_string(&ledger).unwrap();
    content.push_str("{\"format\":\"restore-verifier/record/v1\",\"id\":\"0");
    std::fs::write(&ledger, &content).unwrap();
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text_of(&out);
    assert!(
        said.contains("BROKEN at line 2: incomplete last line"),
        "{said}"
    );

    let out = site.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        records(&out)[0]["seq"],
        3,
        "the drill follows the repair record"
    );
    assert!(site.path("state/ledger.jsonl.torn-line2").exists());
    let out = site.run(&["evidence", "verify"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("repaired  seq 2: the ledger's line 2")
            && said.contains("OK: the hash chain holds for all 3 records"),
        "{said}"
    );
    let listed = text(&site.run(&["evidence", "list"]).stdout);
    assert!(
        listed.contains("(ledger)") && listed.contains("error"),
        "{listed}"
    );
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

// `[job.backup] root` is a path inside the backup, and `[job.verify]
// metadata` names what is compared; both are checked with their position.
#[test]
fn config_check_refuses_a_root_outside_the_backup_and_unknown_metadata() {
    let site = Site::new("");
    let cfg = format!(
        "{AGENT}{}  [job.verify]\n  metadata = [\"mode\", \"perms\"]\n",
        job("good", "backups/good/share-*.tar").replace("  path =", "  root = \"../up\"\n  path =")
    );
    std::fs::write(&site.config, &cfg).unwrap();
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("job[0].backup.root: `root` is a path inside the backup"),
        "{err}"
    );
    assert!(
        err.contains("job[0].verify.metadata: unknown metadata \"perms\"; expected any of mode, owner, acl, xattr"),
        "{err}"
    );
    let good = cfg
        .replace("root = \"../up\"", "root = \"srv/share\"")
        .replace("\"perms\"", "\"acl\"");
    std::fs::write(&site.config, &good).unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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
