//! Alerts end to end: a webhook receiver that goes down and comes back, the
//! dead-man (overdue) check, a command sink, and a real Alertmanager.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A minimal HTTP receiver: records every POST body, answers 200.
struct Receiver {
    bodies: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                b.lock()
                    .unwrap()
                    .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { bodies }
    }

    fn events(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server the test started, stopped when the test ends (also on panic).
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HOOK_SECRET: &str = "T0KEN-in-the-url-0123456789";

#[test]
fn webhook_down_then_back_gets_the_alert_exactly_once() {
    let port = free_port();
    let alert = format!(
        "\n[[alert]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hooks/{HOOK_SECRET}\"\n"
    );
    let site = daemon_site(
        &format!("{}{alert}", job("bad", "backups/bad/share-*.tar")),
        false,
    );
    // The receiver is down: the failed drill's alert waits in the outbox.
    let out = site.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let queued = std::fs::read_dir(site.path("state/alerts/outbox"))
        .unwrap()
        .count();
    assert_eq!(queued, 1, "the alert is in the outbox");
    assert!(
        !text(&out.stderr).contains(HOOK_SECRET),
        "the URL's secret was printed"
    );

    // It comes back; an agent start delivers it once.
    let rx = Receiver::start(port);
    let d = Daemon::start(&site);
    wait_until("the alert", 30, || !rx.events().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let ev = rx.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "fail");
    assert_eq!(ev[0]["job"], "bad");
    let reasons = ev[0]["record"]["reasons"].to_string();
    assert!(
        reasons.contains("content mismatch: finance/ledger.csv"),
        "{reasons}"
    );
    assert!(
        ev[0]["record"]["show"]
            .as_str()
            .unwrap()
            .starts_with("restore-verifier evidence show ")
    );
    assert_eq!(
        std::fs::read_dir(site.path("state/alerts/outbox"))
            .unwrap()
            .count(),
        0
    );
    d.stop();
    let log = std::fs::read_to_string(site.path("agent.log")).unwrap();
    assert!(!log.contains(HOOK_SECRET), "the URL's secret is in the log");
    // The same failure again is no new alert (one per problem).
    site.run(&["run", "bad"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.events().len(), 1);
}

#[test]
fn overdue_fires_while_the_agent_runs_and_recovered_follows_a_pass() {
    let port = free_port();
    let rx = Receiver::start(port);
    let jobs = job("good", "backups/good/share-*.tar").replace(
        "source = \"source\"\n",
        "source = \"source\"\nschedule = \"0 3 1 1 *\"\nmax_interval = \"2s\"\n",
    );
    let alert = format!(
        "\n[[alert]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/x\"\non = [\"overdue\", \"recovered\"]\n"
    );
    let site = daemon_site(&format!("{jobs}{alert}"), true);
    let d = Daemon::start(&site);
    wait_until("the overdue alert", 20, || {
        rx.events().iter().any(|e| e["event"] == "overdue")
    });
    let (_, jobs_view) = d.get("/v1/jobs");
    assert_eq!(jobs_view[0]["overdue"], true);
    let (s, _) = d.post(
        "/v1/jobs/good/drills",
        Some(TOKEN),
        json!({"reason": "after overdue"}),
    );
    assert_eq!(s, 202);
    wait_until("the recovered alert", 20, || {
        rx.events().iter().any(|e| e["event"] == "recovered")
    });
    let ev = rx.events();
    // The job may go overdue again later (its interval is 2 s); what matters
    // is one overdue alert, then recovered.
    let first_recovered = ev.iter().position(|e| e["event"] == "recovered").unwrap();
    assert_eq!(
        ev[..first_recovered]
            .iter()
            .filter(|e| e["event"] == "overdue")
            .count(),
        1,
        "{ev:?}"
    );
    let metrics = http_get(&d.url("/metrics"));
    let delivered: u64 = metrics
        .lines()
        .find(|l| l.starts_with("restore_verifier_alerts_total{outcome=\"ok\",sink=\"hook\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(delivered >= 2, "{metrics}");
    d.stop();
}

// Pins (issue 16, part 2): the overdue alert used max_interval, else twice
// the schedule's period, while the metric and /v1/jobs used max_interval
// only: for a scheduled job without it, the agent alerted and the shipped
// Prometheus rule never fired. Now all three call one rule.
#[test]
fn the_metric_the_api_and_the_alert_agree_on_overdue_without_max_interval() {
    let port = free_port();
    let rx = Receiver::start(port);
    // Every 2 s, never passing: overdue once two scheduled drills (each
    // given its 2 s timeout) came and went after the agent started.
    let jobs = job("bad", "backups/bad/share-*.tar").replace(
        "source = \"source\"\n",
        "source = \"source\"\nschedule = \"*/2 * * * * *\"\ntimeout = \"2s\"\n",
    );
    let alert = format!(
        "\n[[alert]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/x\"\non = [\"overdue\"]\n"
    );
    let site = daemon_site(&format!("{jobs}{alert}"), true);
    let out = site.run(&["config", "check"]);
    assert!(
        text(&out.stdout).contains(
            "overdue after 2 scheduled runs without a pass, plus 2s for the second one's drill (jitter and timeout; set max_interval to change it)"
        ),
        "{}",
        text(&out.stdout)
    );
    let d = Daemon::start(&site);
    wait_until("the overdue alert", 30, || {
        rx.events().iter().any(|e| e["event"] == "overdue")
    });
    let (_, jobs_view) = d.get("/v1/jobs");
    assert_eq!(jobs_view[0]["overdue"], true, "{jobs_view}");
    assert!(
        jobs_view[0]["interval_seconds"]
            .as_u64()
            .is_some_and(|s| (3..=6).contains(&s)),
        "{jobs_view}"
    );
    assert!(jobs_view[0]["due_by"].is_string(), "{jobs_view}");
    let metrics = http_get(&d.url("/metrics"));
    assert!(
        metrics.contains("restore_verifier_overdue{drill_job=\"bad\"} 1"),
        "{metrics}"
    );
    d.stop();
}

/// The path each receiver body came to, with its event and kind.
fn by_path(rx: &Receiver, path: &str) -> Vec<Value> {
    rx.bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, v)| v.clone())
        .collect()
}

fn count(ev: &[Value], event: &str) -> usize {
    ev.iter().filter(|e| e["event"] == event).count()
}

// Pins (issue 16, part 1): each failing drill was a "changed problem" and
// fail alternated with overdue, so a sink on fail got a new fail after every
// overdue tick, and every sink got a new alert after every drill.
#[test]
fn one_alert_per_problem_through_a_restart_and_one_recovered() {
    let port = free_port();
    let rx = Receiver::start(port);
    let jobs = job("flaky", "backups/bad/share-*.tar").replace(
        "source = \"source\"\n",
        "source = \"source\"\nschedule = \"*/2 * * * * *\"\ntimeout = \"2s\"\nmax_interval = \"5s\"\n",
    );
    let alerts = format!(
        "\n[[alert]]\nname = \"pager\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/pager\"\non = [\"fail\", \"error\", \"recovered\"]\n\n[[alert]]\nname = \"deadman\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/deadman\"\non = [\"overdue\"]\n"
    );
    let site = daemon_site(&format!("{jobs}{alerts}"), true);
    let d = Daemon::start(&site);
    wait_until("the overdue alert", 30, || {
        count(&by_path(&rx, "/deadman"), "overdue") == 1
    });
    std::thread::sleep(Duration::from_secs(6));
    d.stop();
    let d = Daemon::start(&site);
    std::thread::sleep(Duration::from_secs(12));
    let failed = ledger_records(&site)
        .iter()
        .filter(|r| r["result"] == "fail")
        .count();
    assert!(failed >= 6, "the job failed {failed} drills");
    let pager = by_path(&rx, "/pager");
    let deadman = by_path(&rx, "/deadman");
    assert_eq!(count(&pager, "fail"), 1, "{pager:?}");
    assert_eq!(pager.len(), 1, "{pager:?}");
    assert_eq!(deadman.len(), 1, "{deadman:?}");
    assert_eq!(deadman[0]["event"], "overdue");
    assert_eq!(deadman[0]["kind"], "problem");
    // The overdue alert says the interval in force, the last pass and when it was due.
    let details = deadman[0]["details"].as_str().unwrap();
    assert!(details.contains("interval 5s\n"), "{details}");
    assert!(details.contains("last pass never\n"), "{details}");
    assert!(details.contains("due by 20"), "{details}");
    // The backup is fixed: one recovered, to the sink that had the problem.
    let text = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        text.replace("backups/bad/share-*.tar", "backups/good/share-*.tar"),
    )
    .unwrap();
    d.signal("-HUP");
    wait_until("the recovered alert", 30, || {
        count(&by_path(&rx, "/pager"), "recovered") == 1
    });
    std::thread::sleep(Duration::from_secs(5));
    let pager = by_path(&rx, "/pager");
    assert_eq!(pager.len(), 2, "{pager:?}");
    assert_eq!(pager[1]["event"], "recovered");
    assert_eq!(pager[1]["follows"], pager[0]["id"], "{pager:?}");
    assert_eq!(
        by_path(&rx, "/deadman").len(),
        1,
        "the overdue sink has no recovered in on"
    );
    d.stop();
}

fn http_get(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
fn command_sink_gets_the_alert_on_stdin_and_alert_test_reports() {
    let site = Site::new("");
    let out_file = site.path("paged.json");
    let alerts = format!(
        "\n[[alert]]\nname = \"pager\"\ntype = \"command\"\nrun = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"]\n\n[[alert]]\nname = \"down\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/\"\n",
        out_file.display(),
        out_file.display(),
        free_port()
    );
    std::fs::write(
        &site.config,
        format!("{AGENT}{}{alerts}", job("bad", "backups/bad/share-*.tar")),
    )
    .unwrap();
    site.run(&["run"]);
    let paged = std::fs::read_to_string(&out_file).unwrap();
    let v: Value = serde_json::from_str(paged.lines().next().unwrap()).unwrap();
    assert_eq!(v["event"], "fail");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("bad: FAIL — content mismatch: finance/ledger.csv"),
        "{v}"
    );

    let out = site.run(&["alert", "test", "pager"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("pager: sent"));
    // A test alert is event "test": paging rules on fail stay quiet.
    let paged = std::fs::read_to_string(&out_file).unwrap();
    let last: Value = serde_json::from_str(paged.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "test", "{last}");
    assert_eq!(last["kind"], "test", "{last}");
    let out = site.run(&["alert", "test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("down: FAILED"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(site.run(&["alert", "test", "nope"]).status.code(), Some(2));
}

#[test]
fn real_alertmanager_fires_and_resolves() {
    let am = Command::new("prometheus-alertmanager")
        .arg("--version")
        .output();
    assert!(
        am.is_ok_and(|o| o.status.success()),
        "prometheus-alertmanager is missing: scripts/test.sh installs it"
    );
    let site = Site::new("");
    let port = free_port();
    std::fs::write(
        site.path("am.yml"),
        // A short resolve_timeout: an alert posted without endsAt would
        // resolve on its own while the problem is still open.
        "global:\n  resolve_timeout: 2s\nroute:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", site.path("am.yml").display()))
        .arg(format!("--storage.path={}", site.path("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("alertmanager", 30, || {
        let a: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        a.get(&format!("{base}/-/ready"))
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    let cfg = |glob: &str| {
        format!(
            // No `recovered` in `on`: Alertmanager is resolved anyway, or
            // it would keep the alert firing.
            "{AGENT}{}\n[[alert]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{base}\"\non = [\"fail\", \"error\", \"overdue\"]\n",
            job("share", glob)
        )
    };
    let firing = || -> Vec<Value> {
        let v: Value = serde_json::from_str(&http_get(&format!("{base}/api/v2/alerts"))).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["job"] == "share")
            .cloned()
            .collect()
    };
    std::fs::write(&site.config, cfg("backups/bad/share-*.tar")).unwrap();
    assert_eq!(site.run(&["run"]).status.code(), Some(1));
    wait_until("the alert in Alertmanager", 30, || !firing().is_empty());
    let a = &firing()[0];
    assert_eq!(a["labels"]["alertname"], "RestoreDrillFailed");
    assert_eq!(a["labels"]["severity"], "critical");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("content mismatch: finance/ledger.csv"),
        "{a}"
    );
    // Only a pass resolves it: not Alertmanager's resolve_timeout.
    std::thread::sleep(Duration::from_secs(4));
    let a = firing();
    assert_eq!(a.len(), 1, "still firing after resolve_timeout: {a:?}");
    let ends = chrono::DateTime::parse_from_rfc3339(a[0]["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        ends > chrono::Utc::now() + chrono::Duration::hours(24),
        "{}",
        a[0]
    );
    // The next pass resolves it.
    std::fs::write(&site.config, cfg("backups/good/share-*.tar")).unwrap();
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    wait_until("the alert to resolve", 30, || firing().is_empty());
    // `alert test` has its own alert name: rules routing RestoreDrillFailed
    // to a pager never see it.
    assert_eq!(site.run(&["alert", "test"]).status.code(), Some(0));
    let test_alerts = || -> Vec<Value> {
        let v: Value = serde_json::from_str(&http_get(&format!("{base}/api/v2/alerts"))).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["job"] == "restore-verifier-test")
            .cloned()
            .collect()
    };
    wait_until("the test alert", 30, || !test_alerts().is_empty());
    assert_eq!(
        test_alerts()[0]["labels"]["alertname"],
        "RestoreVerifierTest"
    );
    assert_eq!(test_alerts()[0]["labels"]["severity"], "none");
}

#[test]
fn mail_arrives_at_a_real_smtp_server() {
    // Debian's python3-aiosmtpd, with Debian's own interpreter.
    let probe = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "aiosmtpd is missing: scripts/test.sh installs python3-aiosmtpd"
    );
    let site = Site::new("");
    let port = free_port();
    let maildir = site.path("maildir");
    let smtpd = Command::new("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(smtpd);
    wait_until("the SMTP server", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mail = format!(
        "\n[[alert]]\nname = \"mail\"\ntype = \"email\"\nsmtp = \"127.0.0.1:{port}\"\ntls = \"none\"\nfrom = \"restore-verifier@example.com\"\nto = [\"oncall@example.com\"]\nrepeat_interval = \"1s\"\n"
    );
    std::fs::write(
        &site.config,
        format!("{AGENT}{}{mail}", job("bad", "backups/bad/share-*.tar")),
    )
    .unwrap();
    assert_eq!(site.run(&["run"]).status.code(), Some(1));
    let new = maildir.join("new");
    let mails = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&new)
            .map(|d| {
                d.flatten()
                    // Unfold headers, decode quoted-printable soft breaks,
                    // then read it as a person would.
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap()
                            .replace("\r\n", "\n")
                            .replace("\n ", " ")
                            .replace("=\n", "")
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The problem alert first: it is the one without In-Reply-To.
        v.sort_by_key(|m| m.contains("In-Reply-To:"));
        v
    };
    wait_until("the mail", 20, || !mails().is_empty());
    let raw = mails()[0].clone();
    assert!(
        raw.contains(
            "Subject: [restore-verifier] bad: FAIL - content mismatch: finance/ledger.csv"
        ),
        "{raw}"
    );
    assert!(raw.contains("To: oncall@example.com"), "{raw}");
    assert!(raw.contains("text/html"), "an HTML part too");
    assert!(raw.contains("restore-verifier evidence show "), "{raw}");
    assert!(raw.contains("\nDate: "), "{raw}");
    let header = |m: &str, h: &str| -> String {
        m.lines()
            .find_map(|l| l.strip_prefix(h))
            .unwrap_or_else(|| panic!("no {h} in {m}"))
            .trim()
            .to_string()
    };
    let first_id = header(&raw, "Message-ID:");
    assert!(
        first_id.starts_with('<') && first_id.ends_with('>'),
        "{first_id}"
    );
    assert!(!raw.contains("In-Reply-To:"), "{raw}");

    // A reminder (repeat_interval) threads under the problem alert.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(site.run(&["run"]).status.code(), Some(1));
    wait_until("the reminder", 20, || mails().len() == 2);
    let reminder = mails()[1].clone();
    assert!(
        reminder.contains("Subject: [restore-verifier] bad: REMINDER - still failing since "),
        "{reminder}"
    );
    assert!(reminder.contains("2 drills failed"), "{reminder}");
    assert_eq!(header(&reminder, "In-Reply-To:"), first_id);
    assert_ne!(header(&reminder, "Message-ID:"), first_id);

    // A password from a credentials file never shows, even when sending fails.
    std::fs::write(site.path("smtp.cred"), "alerts:s3cret-smtp-password\n").unwrap();
    let with_creds = mail.replace(
        "tls = \"none\"",
        "tls = \"none\"\ncredentials_file = \"smtp.cred\"",
    );
    std::fs::write(
        &site.config,
        format!(
            "{AGENT}{}{with_creds}",
            job("bad2", "backups/bad/share-*.tar")
        ),
    )
    .unwrap();
    let out = bin()
        .arg("-c")
        .arg(&site.config)
        .args(["run"])
        .env("RESTORE_VERIFIER_LOG", "debug")
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("Alert delivery failed"), "{all}");
    assert!(
        !all.contains("s3cret-smtp-password"),
        "the SMTP password is in the output"
    );
}

#[test]
fn reminders_follow_repeat_interval_and_slack_gets_text() {
    let site = Site::new("");
    let paged = site.path("paged.jsonl");
    let port = free_port();
    let rx = Receiver::start(port);
    let alerts = format!(
        "\n[[alert]]\nname = \"pager\"\ntype = \"command\"\nrun = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"]\nrepeat_interval = \"6s\"\n\n[[alert]]\nname = \"chat\"\ntype = \"slack\"\nurl = \"http://127.0.0.1:{port}/services/T0/B0/x\"\non = [\"fail\"]\n",
        paged.display(),
        paged.display()
    );
    std::fs::write(
        &site.config,
        format!("{AGENT}{}{alerts}", job("bad", "backups/bad/share-*.tar")),
    )
    .unwrap();
    site.run(&["run"]);
    site.run(&["run"]);
    let n = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    assert_eq!(n(&paged), 1, "the same failure twice in a row is one alert");
    std::thread::sleep(Duration::from_millis(6500));
    site.run(&["run"]);
    assert_eq!(n(&paged), 2, "a reminder once repeat_interval has passed");
    wait_until("the slack message", 10, || !rx.events().is_empty());
    let text_field = rx.events()[0]["text"].as_str().unwrap().to_string();
    assert!(
        text_field.contains("bad: FAIL — content mismatch: finance/ledger.csv"),
        "{text_field}"
    );
    assert_eq!(
        rx.events().len(),
        1,
        "slack has no repeat_interval: no reminder"
    );
}

/// A one-off `run` beside a running agent: both step the same alert state
/// (under its lock), so the agent's watch neither forgets the run's problem
/// nor tells it again, and the run's pass sends the one `recovered`.
#[test]
fn a_one_off_run_beside_the_agent_shares_its_alert_state() {
    let port = free_port();
    let rx = Receiver::start(port);
    let jobs = job("flaky", "backups/bad/share-*.tar").replace(
        "source = \"source\"\n",
        "source = \"source\"\nmax_interval = \"1h\"\n",
    );
    let alerts = format!(
        "\n[[alert]]\nname = \"pager\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/pager\"\non = [\"fail\", \"error\", \"recovered\"]\n"
    );
    let site = daemon_site(&format!("{jobs}{alerts}"), false);
    let d = Daemon::start(&site);
    for _ in 0..3 {
        assert_eq!(site.run(&["run", "flaky"]).status.code(), Some(1));
        // The agent's watch steps the state every second in between.
        std::thread::sleep(Duration::from_millis(1500));
    }
    wait_until("the fail alert", 30, || {
        count(&by_path(&rx, "/pager"), "fail") == 1
    });
    let text = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        text.replace("backups/bad/share-*.tar", "backups/good/share-*.tar"),
    )
    .unwrap();
    assert_eq!(site.run(&["run", "flaky"]).status.code(), Some(0));
    wait_until("the recovered alert", 30, || {
        count(&by_path(&rx, "/pager"), "recovered") == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let pager = by_path(&rx, "/pager");
    assert_eq!(pager.len(), 2, "{pager:?}");
    assert_eq!(pager[0]["event"], "fail");
    assert_eq!(pager[1]["follows"], pager[0]["id"], "{pager:?}");
    d.stop();
}
