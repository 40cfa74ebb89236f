//! The outbox, the messages and delivery, with sinks on this machine.

use super::send::redact;
use super::*;

/// An outbox in a fresh state directory, with one job "j" and `sinks`
/// (TOML `[[alert]]` sections).
fn outbox_with(sinks: &str) -> (tempfile::TempDir, Config, Alerts) {
    let tmp = tempfile::tempdir().unwrap();
    let text =
        format!("[[job]]\nname = \"j\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n{sinks}");
    let cfg = crate::config::parse(
        std::path::Path::new("/etc/rv.toml"),
        &text,
        crate::config::Check::Values,
    )
    .unwrap();
    let alerts = Alerts::open(tmp.path()).unwrap();
    (tmp, cfg, alerts)
}

fn test_alert(id: &str, job: &str, event: Event) -> Alert {
    Alert {
        id: id.into(),
        event,
        kind: "problem".into(),
        follows: None,
        job: job.into(),
        system: None,
        host: "h".into(),
        at: Utc::now(),
        summary: String::new(),
        details: String::new(),
        record: None,
    }
}

/// A sink that does not answer is tried once per pass, and not again
/// until that item's retry time: a dead sink does not hold up the watch.
#[test]
fn a_sink_that_fails_waits_with_all_its_items() {
    // Port 9 on loopback: refused at once.
    let (_tmp, cfg, alerts) = outbox_with(
        "[[alert]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    for id in ["1", "2", "3"] {
        let a = test_alert(id, &format!("j{id}"), Event::Fail);
        assert!(alerts.enqueue(&cfg, &a, "hook"));
    }
    let failed = |a: &Alerts| {
        a.delivered
            .lock()
            .unwrap()
            .get(&("hook".to_string(), "failed"))
            .copied()
            .unwrap_or(0)
    };
    alerts.deliver_due(&cfg);
    assert_eq!(failed(&alerts), 1, "one try in the pass");
    alerts.deliver_due(&cfg);
    assert_eq!(failed(&alerts), 1, "the others wait for the retry time");
    assert_eq!(alerts.queued(), 3, "nothing is lost");
}

/// Alertmanager keeps one alert per job: a post still waiting from
/// before (an outage) is superseded by the newest, so it never fires a
/// closed problem again; a webhook keeps every message.
#[test]
fn an_alertmanager_sink_takes_only_the_newest_post_of_a_job() {
    let (tmp, cfg, alerts) = outbox_with(
        "[[alert]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9\"\n\
        [[alert]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9\"\n",
    );
    for sink in ["am", "hook"] {
        assert!(alerts.enqueue(&cfg, &test_alert("1-fail", "j", Event::Fail), sink));
        assert!(alerts.enqueue(&cfg, &test_alert("2-other", "k", Event::Fail), sink));
        assert!(alerts.enqueue(
            &cfg,
            &test_alert("3-recovered", "j", Event::Recovered),
            sink
        ));
    }
    let mut left: Vec<String> = std::fs::read_dir(tmp.path().join("alerts/outbox"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "1-fail.hook.json",
            "2-other.am.json",
            "2-other.hook.json",
            "3-recovered.am.json",
            "3-recovered.hook.json"
        ]
    );
}

/// Alertmanager forgets an alert that is not posted again: its sink is
/// refreshed at least every ten minutes, whatever its repeat_interval.
#[test]
fn alertmanager_sinks_are_refreshed_while_a_problem_is_open() {
    let sink = |kind: SinkKind, repeat: Option<u64>| AlertSink {
        name: "s".into(),
        kind,
        on: vec![Event::Fail],
        jobs: vec![],
        repeat_interval: repeat.map(Duration::from_secs),
    };
    let am = || SinkKind::Alertmanager {
        url: "http://am:9093".into(),
    };
    let hook = || SinkKind::Webhook {
        url: "http://hook".into(),
    };
    for (kind, repeat, want) in [
        (am(), None, Some(600)),
        (am(), Some(3600), Some(600)),
        (am(), Some(120), Some(120)),
        (hook(), None, None),
        (hook(), Some(3600), Some(3600)),
    ] {
        assert_eq!(
            refresh_interval(&sink(kind, repeat)),
            want.map(Duration::from_secs)
        );
    }
}

#[test]
fn urls_are_redacted_to_their_host() {
    assert_eq!(
        redact("https://hooks.slack.com/services/T0/B0/secret"),
        "https://hooks.slack.com/…"
    );
    assert_eq!(
        redact("http://user:pw@am.local:9093/x?token=1"),
        "http://am.local:9093/…"
    );
}
