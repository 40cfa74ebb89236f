//! The daemon, end to end: schedules, the queue, crash recovery, signals, the
//! HTTP API and its metrics (checked with Prometheus' own `promtool`).

use std::collections::{BTreeMap, BTreeSet};

use std::process::Stdio;

use std::time::Duration;

use super::*;

#[test]
fn twenty_jobs_every_second_none_lost_never_more_than_two_running() {
    // Every drill takes at least 0.4 s (a post-restore check sleeps), so two
    // workers finish at most 5 drills a second while 20 fall due: however fast
    // the machine compares, jobs find their previous drill still queued.
    let jobs: String = (0..20)
        .map(|i| slow_dir_job(&format!("j{i:02}"), "data", Some("* * * * * *"), "0.4"))
        .collect();
    let site = daemon_site(&jobs, false);
    big_tree(&site.path("data"), 8);
    let d = Daemon::start(&site);
    std::thread::sleep(Duration::from_millis(4500));
    let (code, took) = d.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    let recs = ledger_records(&site);
    let mut ticks: BTreeMap<String, Vec<chrono::DateTime<chrono::FixedOffset>>> = BTreeMap::new();
    let mut intervals = Vec::new();
    let mut results = BTreeSet::new();
    for r in &recs {
        let result = r["result"].as_str().unwrap().to_string();
        assert!(
            ["pass", "skipped", "error"].contains(&result.as_str()),
            "{r}"
        );
        if result == "error" {
            assert!(
                r["reasons"][0].as_str().unwrap().contains("interrupted"),
                "{r}"
            );
        }
        let due = ts(&r["trigger"]["scheduled_for"]);
        if result != "skipped" {
            let (s, f) = (ts(&r["started_at"]), ts(&r["finished_at"]));
            assert!(s >= due, "a drill started before it was due: {r}");
            intervals.push((s, f));
        }
        ticks
            .entry(r["job"].as_str().unwrap().to_string())
            .or_default()
            .push(due);
        results.insert(result);
    }
    assert_eq!(ticks.len(), 20, "every job has records");
    let first = ticks.values().flatten().min().unwrap().to_owned();
    let last = ticks.values().flatten().max().unwrap().to_owned();
    assert!(
        (last - first).num_seconds() >= 3,
        "schedules kept firing: {first} .. {last}"
    );
    for (job, mut t) in ticks {
        t.sort();
        // One record per due second, none missing, none twice.
        for w in t.windows(2) {
            assert_eq!(
                (w[1] - w[0]).num_seconds(),
                1,
                "{job}: gap or duplicate in {t:?}"
            );
        }
        assert_eq!(t[0], first, "{job} missed the first tick");
    }
    // Never more than two drills at once.
    let mut edges: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> = Vec::new();
    for (s, f) in &intervals {
        edges.push((*s, 1));
        edges.push((*f, -1));
    }
    edges.sort();
    let (mut now, mut max) = (0, 0);
    for (_, e) in edges {
        now += e;
        max = max.max(now);
    }
    assert!(max <= 2, "{max} drills overlapped");
    assert!(
        results.contains("pass") && results.contains("skipped"),
        "{results:?}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
    assert_eq!(site.run(&["evidence", "verify"]).status.code(), Some(0));
}

#[test]
fn kill_9_during_a_drill_is_recorded_at_the_next_start() {
    let site = daemon_site(&slow_dir_job("big", "data", None, "60"), true);
    big_tree(&site.path("data"), 8);
    let d = Daemon::start(&site);
    let (status, body) = d.post(
        "/v1/jobs/big/drills",
        Some(TOKEN),
        json!({"reason": "CHG-1 crash test"}),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_for("the sandbox", || !is_empty_dir(&site.path("sandbox")));
    d.kill9();
    assert!(
        !is_empty_dir(&site.path("sandbox")),
        "the crash left its sandbox"
    );
    assert!(ledger_records(&site).is_empty());

    let d = Daemon::start(&site);
    let recs = ledger_records(&site);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["id"], id.as_str());
    assert_eq!(recs[0]["result"], "error");
    assert_eq!(recs[0]["trigger"]["kind"], "change");
    assert!(
        recs[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("interrupted")
    );
    assert!(
        is_empty_dir(&site.path("sandbox")),
        "the sandbox is removed at start"
    );
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    assert_eq!(site.run(&["evidence", "verify"]).status.code(), Some(0));
}

#[test]
fn sigterm_during_a_drill_records_it_and_exits_quickly() {
    let jobs = format!(
        "{}{}",
        slow_dir_job("big", "data", None, "60"),
        dir_job("queued", "data", None)
    );
    let site = daemon_site(&jobs, true);
    let cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("max_concurrent_drills = 2", "max_concurrent_drills = 1");
    std::fs::write(&site.config, cfg).unwrap();
    big_tree(&site.path("data"), 8);
    let d = Daemon::start(&site);
    let (status, body) = d.post("/v1/jobs/big/drills", Some(TOKEN), json!({}));
    assert_eq!(status, 202);
    wait_for("the sandbox", || !is_empty_dir(&site.path("sandbox")));
    // Waits for the only slot; at shutdown it becomes `skipped` under this id.
    let (status, queued) = d.post("/v1/jobs/queued/drills", Some(TOKEN), json!({}));
    assert_eq!(status, 202);
    let (code, took) = d.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let recs = ledger_records(&site);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let big = recs
        .iter()
        .find(|r| r["id"] == body["id"])
        .expect("the running drill's record");
    assert_eq!(big["result"], "error");
    assert!(
        big["reasons"][0].as_str().unwrap().contains("interrupted"),
        "{big}"
    );
    let q = recs
        .iter()
        .find(|r| r["id"] == queued["id"])
        .expect("the queued drill's record, under the id the API gave");
    assert_eq!(q["result"], "skipped");
    assert!(is_empty_dir(&site.path("sandbox")));
    assert!(
        !site.path("state/running").read_dir().unwrap().any(|_| true),
        "no in-progress marker left"
    );
}

#[test]
fn change_trigger_needs_the_token() {
    let jobs = format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("bad", "backups/bad/share-*.tar")
    );
    let site = daemon_site(&jobs, true);
    let d = Daemon::start(&site);
    let body = json!({"reason": "CHG-1234 kernel update"});
    assert_eq!(d.post("/v1/jobs/good/drills", None, body.clone()).0, 401);
    assert_eq!(
        d.post(
            "/v1/jobs/good/drills",
            Some("wrong-token-0123456789"),
            body.clone()
        )
        .0,
        401
    );
    assert_eq!(
        d.post("/v1/jobs/nope/drills", Some(TOKEN), body.clone()).0,
        404
    );
    let (status, accepted) = d.post("/v1/jobs/good/drills", Some(TOKEN), body);
    assert_eq!(status, 202);
    let poll = accepted["poll"].as_str().unwrap().to_string();
    let mut rec = Value::Null;
    wait_for("the record", || {
        let (s, v) = d.get(&poll);
        rec = v;
        s == 200
    });
    assert_eq!(rec["result"], "pass");
    assert_eq!(rec["trigger"]["kind"], "change");
    assert_eq!(rec["trigger"]["reason"], "CHG-1234 kernel update");
    let (_, list) = d.get("/v1/records?job=good");
    assert_eq!(list.as_array().unwrap().len(), 1);
    d.stop();

    // Without a token file, POST is disabled, not open.
    let site = daemon_site(&job("good", "backups/good/share-*.tar"), false);
    let d = Daemon::start(&site);
    assert_eq!(
        d.post("/v1/jobs/good/drills", Some(TOKEN), json!({})).0,
        403
    );
    assert_eq!(d.post("/v1/jobs/good/drills", None, json!({})).0, 403);
}

fn promtool() -> String {
    let out = Command::new("promtool").arg("--version").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "promtool is missing: install Debian's `prometheus` package (scripts/test.sh does)"
    );
    "promtool".into()
}

#[test]
fn metrics_pass_promtool_and_show_one_pass_and_one_fail() {
    let jobs = format!(
        "{}{}",
        job("good", "backups/good/share-*.tar"),
        job("bad", "backups/bad/share-*.tar")
    );
    let site = daemon_site(&jobs, true);
    let d = Daemon::start(&site);
    for name in ["good", "bad"] {
        let (s, v) = d.post(&format!("/v1/jobs/{name}/drills"), Some(TOKEN), json!({}));
        assert_eq!(s, 202);
        let poll = v["poll"].as_str().unwrap().to_string();
        wait_for("the record", || d.get(&poll).0 == 200);
    }
    let text = scrape(&d);
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        text_of(&out.stdout),
        text_of(&out.stderr)
    );
    for line in [
        "restore_verifier_last_result{drill_job=\"good\",result=\"pass\"} 1",
        "restore_verifier_last_result{drill_job=\"bad\",result=\"fail\"} 1",
        "restore_verifier_last_result{drill_job=\"bad\",result=\"pass\"} 0",
        "restore_verifier_drills_total{drill_job=\"bad\",result=\"fail\"} 1",
        "restore_verifier_drills_total{drill_job=\"good\",result=\"pass\"} 1",
        "restore_verifier_verified_files{drill_job=\"good\"} 9",
        "restore_verifier_overdue{drill_job=\"good\"} 0",
        "restore_verifier_drills_running 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("restore_verifier_last_success_timestamp_seconds{drill_job=\"good\"}"));
    assert!(!text.contains("restore_verifier_last_success_timestamp_seconds{drill_job=\"bad\"}"));
}

fn scrape(d: &Daemon) -> String {
    http()
        .get(&d.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
fn prometheus_rules_pass_promtool_and_use_only_metrics_the_agent_exports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        ["check", "rules", "restore-verifier.rules.yml"],
        ["test", "rules", "restore-verifier.rules.test.yml"],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            text_of(&out.stdout),
            text_of(&out.stderr)
        );
    }
    // Every metric the rules name is one a real agent exports.
    let jobs = job("good", "backups/good/share-*.tar")
        .replace("source = \"source\"", "source = \"source\"\nrpo = \"26h\"");
    let site = daemon_site(&jobs, true);
    let d = Daemon::start(&site);
    let (s, v) = d.post("/v1/jobs/good/drills", Some(TOKEN), json!({}));
    assert_eq!(s, 202);
    let poll = v["poll"].as_str().unwrap().to_string();
    wait_for("the record", || d.get(&poll).0 == 200);
    let text = scrape(&d);
    let rules = std::fs::read_to_string(dir.join("restore-verifier.rules.yml")).unwrap();
    let named: BTreeSet<&str> = regex::Regex::new(r"restore_verifier_[a-z_]+")
        .unwrap()
        .find_iter(&rules)
        .map(|m| m.as_str())
        .collect();
    assert!(named.len() >= 6, "{named:?}");
    for name in named {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "the rules use {name}, which the agent does not export:\n{text}"
        );
    }
    assert!(text.contains("restore_verifier_rpo_seconds{drill_job=\"good\"} 93600"));
    assert!(text.contains("restore_verifier_ledger_intact 1"), "{text}");
}

#[test]
fn a_ledger_that_does_not_verify_shows_in_the_metrics() {
    let site = daemon_site(&job("good", "backups/good/share-*.tar"), true);
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    let ledger = site.path("state/ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    std::fs::write(
        &ledger,
        text.replace("\"result\":\"pass\"", "\"result\":\"fail\""),
    )
    .unwrap();
    let d = Daemon::start(&site);
    wait_for("the ledger check", || {
        scrape(&d).contains("restore_verifier_ledger_intact")
    });
    let text = scrape(&d);
    assert!(text.contains("restore_verifier_ledger_intact 0"), "{text}");
    assert!(text.contains("restore_verifier_ledger_checked_timestamp_seconds"));
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let site = daemon_site(&job("good", "backups/good/share-*.tar"), false);
    let d = Daemon::start(&site);
    let names = |d: &Daemon| -> Vec<String> {
        d.get("/v1/jobs")
            .1
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&d), ["good"]);
    let good_config = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{good_config}\n[[job]]\nname = \"broken\"\nrpo = \"soon\"\n"),
    )
    .unwrap();
    d.signal("-HUP");
    wait_for("the reload error in the log", || {
        std::fs::read_to_string(site.path("agent.log"))
            .unwrap()
            .contains("Configuration reload failed")
    });
    assert_eq!(names(&d), ["good"], "a bad config keeps the old one");
    std::fs::write(
        &site.config,
        format!("{good_config}{}", job("bad", "backups/bad/share-*.tar")),
    )
    .unwrap();
    d.signal("-HUP");
    wait_for("the new job", || names(&d) == ["good", "bad"]);
    assert_eq!(d.stop().0, Some(0));
}

#[test]
fn catch_up_runs_a_missed_drill_once_at_start() {
    let jobs = job("good", "backups/good/share-*.tar").replace(
        "source = \"source\"\n",
        "source = \"source\"\ncatch_up = true\nschedule = \"0 3 1 1 *\"\n",
    );
    let site = daemon_site(&jobs, false);
    let d = Daemon::start(&site);
    wait_for("the catch-up record", || !ledger_records(&site).is_empty());
    let recs = ledger_records(&site);
    assert_eq!(recs[0]["trigger"]["kind"], "schedule");
    assert!(
        recs[0]["trigger"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("catch-up"),
        "{}",
        recs[0]
    );
    assert_eq!(d.stop().0, Some(0));
    // The next start finds nothing missed (the next run is next January).
    let d = Daemon::start(&site);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ledger_records(&site).len(), 1);
    d.stop();
}

/// The new user's sequence: trial drills unsigned, then a key and
/// `signing_key_file`, then a key change. The agent starts clean each time,
/// the ledger verifies with the ranges told apart, the report states the
/// signed share, and a key change without the old key is refused.
#[test]
fn signing_switched_on_after_trial_drills_then_a_new_key_verifies_with_its_ranges() {
    let site = daemon_site(&job("good", "backups/good/share-*.tar"), false);
    for _ in 0..3 {
        assert_eq!(site.run(&["run"]).status.code(), Some(0));
    }
    let keygen = |name: &str| {
        let out = bin()
            .arg("keygen")
            .arg("-o")
            .arg(site.path(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // The fingerprint an auditor computes with OpenSSL alone.
        let der = Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(site.path(&format!("{name}.pub")))
            .output()
            .unwrap();
        assert!(der.status.success());
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der.stdout))
    };
    let set_agent = |extra: &str| {
        let cfg = std::fs::read_to_string(&site.config).unwrap();
        let base = cfg.split("timezone = \"Asia/Tokyo\"\n").collect::<Vec<_>>();
        let rest = base[1]
            .lines()
            .filter(|l| !l.contains("signing_key_file"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        std::fs::write(
            &site.config,
            format!("{}timezone = \"Asia/Tokyo\"\n{extra}{rest}", base[0]),
        )
        .unwrap();
    };
    let verify = |key: &str| {
        let out = site.run(&[
            "evidence",
            "verify",
            "--public-key",
            site.path(key).to_str().unwrap(),
        ]);
        (out.status.code(), text(&out.stdout))
    };

    // Signing switched on: the agent starts without an error and appends the
    // key record at once; the ledger check holds.
    let fp1 = keygen("k1.key");
    set_agent("signing_key_file = \"k1.key\"\n");
    let d = Daemon::start(&site);
    wait_for("the ledger check", || {
        scrape(&d).contains("restore_verifier_ledger_intact")
    });
    assert!(scrape(&d).contains("restore_verifier_ledger_intact 1"));
    d.stop();
    let log = std::fs::read_to_string(site.path("agent.log")).unwrap();
    assert!(!log.contains("\"ERROR\""), "{log}");
    let recs = ledger_records(&site);
    assert_eq!(recs.len(), 4);
    assert_eq!(
        (recs[3]["job"].as_str(), recs[3]["result"].as_str()),
        (Some("(key)"), Some("key"))
    );
    assert_eq!(recs[3]["key"]["fingerprint"], fp1);
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    let (code, said) = verify("k1.key.pub");
    assert_eq!(code, Some(0), "{said}");
    for want in [
        "records   5\n".to_string(),
        "unsigned  seq 1-3 (before signing began)".to_string(),
        format!(
            "signed    seq 4-5 by key {fp1} (key record seq 4; a given public key vouches for it)"
        ),
        "signed    2 of 5 records carry a signature that verifies".to_string(),
        "OK: the hash chain holds for all 5 records; signed from seq 4".to_string(),
    ] {
        assert!(said.contains(&want), "{want:?} in {said}");
    }

    // evidence show says what the key record is, and no drill figures.
    let shown = text(&site.run(&["evidence", "show", "4"]).stdout);
    assert!(
        shown.starts_with("(key): KEY")
            && shown.contains(&format!(
                "  key      {fp1}\n  previous none (signing begins here)"
            ))
            && !shown.contains("restore "),
        "{shown}"
    );

    // A new key without the old one: refused before anything is written.
    let fp2 = keygen("k2.key");
    set_agent("signing_key_file = \"k2.key\"\n");
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent.signing_key_file")
            && err.contains("previous_signing_key_file")
            && !err.contains("  "),
        "{err}"
    );
    let out = site.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(ledger_records(&site).len(), 5);

    // With the old key named, the key record is signed by both.
    set_agent("signing_key_file = \"k2.key\"\nprevious_signing_key_file = \"k1.key\"\n");
    assert_eq!(site.run(&["config", "check"]).status.code(), Some(0));
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    let recs = ledger_records(&site);
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[5]["key"]["fingerprint"], fp2);
    assert_eq!(recs[5]["key"]["previous"], fp1);
    assert!(recs[5]["signature_previous"].is_string());
    // From now on the old key is not needed, and better not kept at hand.
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("agent.previous_signing_key_file: warning: ")
            && text(&out.stderr).contains("is no longer needed"),
        "{}",
        text(&out.stderr)
    );
    for key in ["k2.key.pub", "k1.key.pub"] {
        let (code, said) = verify(key);
        assert_eq!(code, Some(0), "{said}");
        for want in [
            "unsigned  seq 1-3 (before signing began)".to_string(),
            format!(
                "signed    seq 4-5 by key {fp1} (key record seq 4; a given public key vouches for it)"
            ),
            format!(
                "signed    seq 6-7 by key {fp2} (key record seq 6; a given public key vouches for it)"
            ),
            "OK: the hash chain holds for all 7 records".to_string(),
        ] {
            assert!(said.contains(&want), "{want:?} in {said}");
        }
    }
    let (code, said) = verify("k2.key.pub");
    assert_eq!(code, Some(0), "{said}");

    // Signing switched off again: refused, since the next record would be
    // unsigned after signing began.
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    set_agent("");
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("agent.signing_key_file: ")
            && text(&out.stderr).contains("an unsigned record would break it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(site.run(&["run"]).status.code(), Some(2));
    assert_eq!(ledger_records(&site).len(), 7);
    std::fs::write(&site.config, cfg).unwrap();

    // The report states the signed share and does not fail the ledger.
    let md = text(&site.run(&["report"]).stdout);
    assert!(!md.contains("does NOT verify"), "{md}");
    assert!(
        md.contains(&format!(
            "**Signed evidence**: 2 of 5 records signed: by key {}…",
            &fp1[..16]
        )) && md.contains(&format!("by key {}…", &fp2[..16]))
            && md.contains("3 unsigned (before signing began)"),
        "{md}"
    );
    let ja = text(&site.run(&["report", "--lang", "ja"]).stdout);
    assert!(ja.contains("5 件中 2 件の記録に署名があります"), "{ja}");

    // A record whose signature was taken off after signing began.
    let ledger = site.path("state/ledger.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut last: Value = serde_json::from_str(&lines[6]).unwrap();
    last.as_object_mut().unwrap().remove("signature");
    let mut forged = lines[..6].to_vec();
    forged.push(verifier::canonical(&last));
    std::fs::write(&ledger, forged.join("\n") + "\n").unwrap();
    let (code, said) = verify("k2.key.pub");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("BROKEN at line 7: record is not signed, but signing began at seq 6"),
        "{said}"
    );
}
