//! "Due by" and "overdue": one definition, which the overdue alert, the
//! `restore_verifier_overdue` metric, `/v1/jobs` and `config check` call
//! (docs/design.md, "Alerts").
//!
//! Counted from the job's last pass (or, when it never passed, from when the
//! agent began to watch it), a job is due by `max_interval` later; without
//! it, by its schedule's second run after that, plus the time that drill may
//! take (its `jitter` and `timeout`): two scheduled drills have had their
//! chance and neither passed. A job with neither is never overdue. Anchored
//! on the last pass, an irregular schedule (weekdays only, office hours, a
//! clock change) is never overdue across its own gaps.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Job;

/// When a job is due by: see the module's rule. `None` for a job with no
/// schedule and no `max_interval`.
pub fn due_by(
    job: &Job,
    tz: chrono_tz::Tz,
    last_pass: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let anchor = last_pass.unwrap_or(watching_since);
    if let Some(m) = job.max_interval {
        return anchor.checked_add_signed(chrono::Duration::from_std(m).ok()?);
    }
    let (_, s) = job.schedule.as_ref()?;
    // A wall-clock time that happens twice (the hour the clock goes back)
    // is one scheduled run, not two an hour apart.
    let mut runs = s.after(&anchor.with_timezone(&tz));
    let first = runs.next()?;
    let second = runs.find(|r| r.naive_local() != first.naive_local())?;
    let grace = job.jitter.unwrap_or_default() + job.timeout;
    second
        .with_timezone(&Utc)
        .checked_add_signed(chrono::Duration::from_std(grace).ok()?)
}

/// Whether it is past the time the job was due by.
pub fn overdue(due_by: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    due_by.is_some_and(|d| now > d)
}

/// Both at once, for one job, with the interval that gives (due by less
/// the anchor).
pub fn job_due(
    job: &Job,
    tz: chrono_tz::Tz,
    last_pass: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Due {
    let by = due_by(job, tz, last_pass, watching_since);
    let anchor = last_pass.unwrap_or(watching_since);
    Due {
        interval: by.and_then(|b| (b - anchor).to_std().ok()),
        by,
        overdue: overdue(by, now),
        last_pass,
    }
}

/// How `config check` says when a job goes overdue.
pub fn describe(job: &Job) -> String {
    match (job.max_interval, &job.schedule) {
        (Some(m), _) => format!("{} without a pass (max_interval)", verifier::humanize(m)),
        (None, Some(_)) => format!(
            "2 scheduled runs without a pass, plus {} for the second one's drill (jitter and timeout; set max_interval to change it)",
            verifier::humanize(job.jitter.unwrap_or_default() + job.timeout)
        ),
        (None, None) => "never (no schedule, no max_interval)".into(),
    }
}

/// What [`job_due`] says of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub interval: Option<Duration>,
    pub by: Option<DateTime<Utc>>,
    pub overdue: bool,
    /// What it was counted from: the last pass, if there was one.
    pub last_pass: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn job(extra: &str) -> Job {
        let text = format!(
            "[[job]]\nname = \"j\"\n{extra}\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n"
        );
        crate::config::parse(
            Path::new("/etc/rv.toml"),
            &text,
            crate::config::Check::Values,
        )
        .unwrap()
        .jobs
        .remove(0)
    }

    #[test]
    fn due_by_and_overdue() {
        let start = at("2026-11-30T00:00:00Z");
        let daily = job("schedule = \"0 3 * * *\"\ntimeout = \"1h\"");
        let weekdays = job("schedule = \"0 3 * * 1-5\"\ntimeout = \"1h\"");
        let hours = job("schedule = \"0 9-17 * * *\"\ntimeout = \"10m\"");
        let capped = job("schedule = \"0 3 * * *\"\nmax_interval = \"3d\"");
        let manual = job("");
        let berlin = job("schedule = \"30 2 * * *\"\ntimeout = \"1h\"");
        let table: [(&Job, chrono_tz::Tz, Option<&str>, &str, bool); 14] = [
            // (job, zone, last pass, now, overdue)
            // Daily: due by the second run after the pass, plus its drill.
            (
                &daily,
                chrono_tz::UTC,
                Some("2026-12-01T03:00:00Z"),
                "2026-12-02T03:30:00Z",
                false,
            ),
            (
                &daily,
                chrono_tz::UTC,
                Some("2026-12-01T03:00:00Z"),
                "2026-12-03T03:59:59Z",
                false,
            ),
            (
                &daily,
                chrono_tz::UTC,
                Some("2026-12-01T03:00:00Z"),
                "2026-12-03T04:00:01Z",
                true,
            ),
            // Weekdays: Friday's pass is not overdue over the weekend.
            (
                &weekdays,
                chrono_tz::UTC,
                Some("2026-12-04T03:00:00Z"),
                "2026-12-06T12:00:00Z",
                false,
            ),
            (
                &weekdays,
                chrono_tz::UTC,
                Some("2026-12-04T03:00:00Z"),
                "2026-12-08T03:59:00Z",
                false,
            ),
            (
                &weekdays,
                chrono_tz::UTC,
                Some("2026-12-04T03:00:00Z"),
                "2026-12-08T04:01:00Z",
                true,
            ),
            // Office hours: the 17:00 pass is not overdue at night.
            (
                &hours,
                chrono_tz::UTC,
                Some("2026-12-01T17:00:00Z"),
                "2026-12-02T03:00:00Z",
                false,
            ),
            (
                &hours,
                chrono_tz::UTC,
                Some("2026-12-01T17:00:00Z"),
                "2026-12-02T10:11:00Z",
                true,
            ),
            // A clock change (Berlin, 2026-10-25: 02:30 happens twice) is
            // not two runs an hour apart.
            (
                &berlin,
                chrono_tz::Europe::Berlin,
                Some("2026-10-24T00:30:00Z"),
                "2026-10-25T06:00:00Z",
                false,
            ),
            // max_interval decides where it is set.
            (
                &capped,
                chrono_tz::UTC,
                Some("2026-12-01T03:00:00Z"),
                "2026-12-04T02:59:00Z",
                false,
            ),
            (
                &capped,
                chrono_tz::UTC,
                Some("2026-12-01T03:00:00Z"),
                "2026-12-04T03:01:00Z",
                true,
            ),
            // Never passed: counted from when the agent began to watch.
            (&daily, chrono_tz::UTC, None, "2026-12-01T03:59:00Z", false),
            (&daily, chrono_tz::UTC, None, "2026-12-01T04:01:00Z", true),
            // No schedule, no max_interval: never overdue.
            (&manual, chrono_tz::UTC, None, "2030-01-01T00:00:00Z", false),
        ];
        for (j, tz, last, now, want) in table {
            let d = job_due(j, tz, last.map(at), start, at(now));
            assert_eq!(
                d.overdue,
                want,
                "{:?} {last:?} {now}: {d:?}",
                j.schedule.as_ref().map(|s| &s.0)
            );
        }
        assert!(
            job_due(&manual, chrono_tz::UTC, None, start, start)
                .by
                .is_none()
        );
    }
}
