//! "Due by" and "overdue": one definition, which the overdue alert, the
//! `restore_verifier_overdue` metric, `/v1/jobs`, `config check` and the
//! report all call (docs/design.md, "Overdue").
//!
//! A job must pass within its interval in force: `max_interval`, else twice
//! its schedule's period; a job with neither (manual, triggered) is never
//! overdue. It is due by its last pass plus that interval; a job that never
//! passed counts from when the agent began to watch it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Job;

/// The interval a job must pass within, as of `now`: `max_interval`, else
/// twice the period of its schedule (from its next two runs after `now`, in
/// the agent's `tz`); `None` for a job with neither.
pub fn interval_in_force(job: &Job, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<Duration> {
    job.max_interval.or_else(|| {
        let (_, s) = job.schedule.as_ref()?;
        let mut it = s.after(&now.with_timezone(&tz));
        let (a, b) = (it.next()?, it.next()?);
        (b - a).to_std().ok().map(|p| p * 2)
    })
}

/// When a job with `interval` is due by: its last pass, or, when it never
/// passed, `watching_since` (the agent's start), plus the interval.
pub fn due_by(
    interval: Option<Duration>,
    last_pass: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let interval = chrono::Duration::from_std(interval?).ok()?;
    last_pass
        .unwrap_or(watching_since)
        .checked_add_signed(interval)
}

/// Whether it is past the time the job was due by.
pub fn overdue(due_by: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    due_by.is_some_and(|d| now > d)
}

/// Both at once, for one job.
pub fn job_due(
    job: &Job,
    tz: chrono_tz::Tz,
    last_pass: Option<DateTime<Utc>>,
    watching_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Due {
    let interval = interval_in_force(job, tz, now);
    let by = due_by(interval, last_pass, watching_since);
    Due {
        interval,
        by,
        overdue: overdue(by, now),
    }
}

/// What [`job_due`] says of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub interval: Option<Duration>,
    pub by: Option<DateTime<Utc>>,
    pub overdue: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn jobs() -> Vec<Job> {
        let text = "[[job]]\nname = \"daily\"\nschedule = \"0 3 * * *\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n\n\
                    [[job]]\nname = \"manual\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n\n\
                    [[job]]\nname = \"weekly-capped\"\nschedule = \"0 3 * * 0\"\nmax_interval = \"3d\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n\n\
                    [[job]]\nname = \"manual-capped\"\nmax_interval = \"1h\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n";
        crate::config::parse(
            Path::new("/etc/rv.toml"),
            text,
            crate::config::Check::Values,
        )
        .unwrap()
        .jobs
    }

    #[test]
    fn the_interval_in_force() {
        let now = at("2026-12-03T00:00:00Z");
        let j = jobs();
        let h = |n: u64| Some(Duration::from_secs(n * 3600));
        for (job, want) in [(&j[0], h(48)), (&j[1], None), (&j[2], h(72)), (&j[3], h(1))] {
            assert_eq!(
                interval_in_force(job, chrono_tz::UTC, now),
                want,
                "{}",
                job.name
            );
        }
    }

    #[test]
    fn due_by_and_overdue() {
        let start = at("2026-12-01T00:00:00Z");
        let pass = at("2026-12-02T03:00:00Z");
        let day = Some(Duration::from_secs(24 * 3600));
        let table = [
            // (interval, last pass, now, due by, overdue)
            (
                day,
                Some(pass),
                "2026-12-03T02:59:59Z",
                Some("2026-12-03T03:00:00Z"),
                false,
            ),
            (
                day,
                Some(pass),
                "2026-12-03T03:00:00Z",
                Some("2026-12-03T03:00:00Z"),
                false,
            ),
            (
                day,
                Some(pass),
                "2026-12-03T03:00:01Z",
                Some("2026-12-03T03:00:00Z"),
                true,
            ),
            // Never passed: from the agent's start.
            (
                day,
                None,
                "2026-12-01T12:00:00Z",
                Some("2026-12-02T00:00:00Z"),
                false,
            ),
            (
                day,
                None,
                "2026-12-02T00:00:01Z",
                Some("2026-12-02T00:00:00Z"),
                true,
            ),
            // No interval in force: never overdue.
            (None, None, "2030-01-01T00:00:00Z", None, false),
        ];
        for (interval, last, now, want_by, want_overdue) in table {
            let by = due_by(interval, last, start);
            assert_eq!(by, want_by.map(at), "{interval:?} {last:?} {now}");
            assert_eq!(
                overdue(by, at(now)),
                want_overdue,
                "{interval:?} {last:?} {now}"
            );
        }
    }

    #[test]
    fn a_scheduled_job_without_max_interval_goes_overdue() {
        let j = jobs();
        let start = at("2026-12-01T00:00:00Z");
        let d = job_due(
            &j[0],
            chrono_tz::UTC,
            None,
            start,
            at("2026-12-03T00:00:01Z"),
        );
        assert_eq!(d.interval, Some(Duration::from_secs(48 * 3600)));
        assert!(d.overdue, "{d:?}");
        let m = job_due(
            &j[1],
            chrono_tz::UTC,
            None,
            start,
            at("2030-01-01T00:00:00Z"),
        );
        assert!(!m.overdue && m.by.is_none());
    }
}
