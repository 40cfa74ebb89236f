//! What an alert says: its summary and details for each problem, reminder
//! and recovery, in the configured time zone; and the test alert.

use super::*;

pub(super) fn gethostname() -> String {
    verifier::DrillEnv::new("/", "/").host
}

fn when(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The alert one [`Outgoing`] of the rule stands for.
pub(super) fn make_alert(
    send: &Outgoing,
    job: &str,
    system: Option<String>,
    host: &str,
    cx: &Context,
    tz: chrono_tz::Tz,
) -> Alert {
    let event = send.event;
    let p = &send.problem;
    let rec = match cx {
        Context::Record(r) => Some(*r),
        Context::Due(_) => None,
    };
    let verdict = match (send.kind, event) {
        (Kind::Reminder, _) => "REMINDER",
        (_, Event::Fail) => "FAIL",
        (_, Event::Error) => "ERROR",
        (_, Event::Overdue) => "OVERDUE",
        (_, Event::Recovered) => "RECOVERED",
        (_, Event::Test) => "TEST",
    };
    let overdue_line = |d: &Due| {
        format!(
            "no passing drill since {}; due by {}",
            d.last_pass
                .map(|t| when(t, tz))
                .unwrap_or_else(|| "it was first watched (never passed)".into()),
            d.by.map(|t| when(t, tz)).unwrap_or_else(|| "-".into()),
        )
    };
    let first = match (send.kind, cx) {
        (Kind::Reminder, _) => alert_state::still(p, event, tz),
        (Kind::Recovered, _) => format!(
            "the drill passed again (problem since {}, {} failed drill(s))",
            when(p.since, tz),
            p.failed_drills
        ),
        (Kind::Problem, Context::Record(r)) => r.reasons.first().cloned().unwrap_or_default(),
        (Kind::Problem, Context::Due(d)) => overdue_line(d),
    };
    // The summary and details are text people read (a mail, a chat line): a
    // file name in a reason must not start a line of its own there.
    let summary = format!("{job}: {verdict} — {}", crate::output::escape(&first));
    let mut details = format!(
        "job {job}{}\nhost {host}\nevent {}\n",
        system
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        event.as_str()
    );
    if let Context::Due(d) = cx
        && send.kind != Kind::Recovered
        && (event == Event::Overdue || p.overdue_since.is_some())
    {
        details.push_str(&format!(
            "interval {}\nlast pass {}\ndue by {}\n",
            d.interval
                .map(verifier::humanize)
                .unwrap_or_else(|| "-".into()),
            d.last_pass
                .map(|t| when(t, tz))
                .unwrap_or_else(|| "never".into()),
            d.by.map(|t| when(t, tz)).unwrap_or_else(|| "-".into()),
        ));
    }
    if send.kind == Kind::Reminder || send.kind == Kind::Recovered {
        details.push_str(&format!(
            "problem since {}, {} failed drill(s){}\n",
            when(p.since, tz),
            p.failed_drills,
            p.overdue_since
                .map(|o| format!(", overdue since {}", when(o, tz)))
                .unwrap_or_default()
        ));
    }
    let record = rec.map(|r| {
        for reason in r.reasons.iter().take(5) {
            details.push_str(&format!("reason {}\n", crate::output::escape(reason)));
        }
        if let Some(id) = &r.backup.id {
            details.push_str(&format!(
                "backup {id}, age {}{}\n",
                r.backup
                    .age_seconds
                    .map(|a| verifier::humanize(Duration::from_secs(a.max(0) as u64)))
                    .unwrap_or_else(|| "unknown".into()),
                r.objectives
                    .rpo_seconds
                    .map(|s| format!(" (RPO {})", verifier::humanize(Duration::from_secs(s))))
                    .unwrap_or_default()
            ));
        }
        let took = r.restore.duration_seconds + r.verify.duration_seconds;
        details.push_str(&format!(
            "restore+verify {:.1}s{}\n",
            took,
            r.objectives
                .rto_seconds
                .map(|s| format!(" (RTO {})", verifier::humanize(Duration::from_secs(s))))
                .unwrap_or_default()
        ));
        let show = format!("restore-verifier evidence show {}", r.id);
        details.push_str(&format!("record {} (seq {}): {show}\n", r.id, r.seq));
        AlertRecord {
            id: r.id.clone(),
            seq: r.seq,
            result: r.result,
            reasons: r.reasons.clone(),
            backup_id: r.backup.id.clone(),
            backup_age_seconds: r.backup.age_seconds,
            rpo_seconds: r.objectives.rpo_seconds,
            duration_seconds: took,
            rto_seconds: r.objectives.rto_seconds,
            show,
        }
    });
    Alert {
        id: send.id.clone(),
        event,
        kind: match send.kind {
            Kind::Problem => "problem",
            Kind::Reminder => "reminder",
            Kind::Recovered => "recovered",
        }
        .into(),
        follows: send.follows.clone(),
        job: job.to_string(),
        system,
        host: host.to_string(),
        at: Utc::now(),
        summary,
        details,
        record,
    }
}

/// `alert test [NAME]`: one test alert through each (or one) sink. Its
/// event is `test`, never `fail`, so paging rules on `fail` stay quiet.
pub fn test_alert(cfg: &Config) -> Alert {
    Alert {
        id: verifier::new_id(),
        event: Event::Test,
        kind: "test".into(),
        follows: None,
        job: "restore-verifier-test".into(),
        system: Some("alert test".into()),
        host: gethostname(),
        at: Utc::now(),
        summary:
            "restore-verifier-test: TEST — this is a test alert from `restore-verifier alert test`"
                .into(),
        details: format!(
            "job restore-verifier-test (alert test)\nhost {}\nevent test\nconfig {}\n",
            gethostname(),
            cfg.path.display()
        ),
        record: None,
    }
}
