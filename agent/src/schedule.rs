//! The scheduler's decisions, given `now`: which tick comes next, whether
//! ticks were missed (the host slept or the clock jumped), and whether a job
//! catches up at start. The daemon's loop only sleeps and submits what these
//! say, so the rules are tested here with a pinned clock.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use cron::Schedule;

/// How late a tick may be seen, beyond the job's jitter, before it counts as
/// missed rather than merely late.
pub const LATE_GRACE: Duration = Duration::from_secs(60);

/// What the scheduler does after the tick at `last`.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Sleep until `next` (plus any jitter), then drill.
    Wait { next: DateTime<Tz>, wait: Duration },
    /// `count` ticks from `first` on are already past: record one `skipped`
    /// drill that says so, and go on from now.
    Missed { count: usize, first: DateTime<Tz> },
}

/// The next step of a job's scheduler whose last tick was `last`; `None`
/// when the schedule has no further tick.
pub fn next_tick(
    schedule: &Schedule,
    last: DateTime<Tz>,
    now: DateTime<Utc>,
    jitter: Option<Duration>,
) -> Option<Tick> {
    let next = schedule.after(&last).next()?;
    let behind = (now - next.with_timezone(&Utc))
        .to_std()
        .unwrap_or_default();
    if behind > LATE_GRACE + jitter.unwrap_or_default() {
        let count = schedule
            .after(&last)
            .take_while(|t| t.with_timezone(&Utc) <= now)
            .take(100_000)
            .count();
        return Some(Tick::Missed { count, first: next });
    }
    let wait = (next.with_timezone(&Utc) - now)
        .to_std()
        .unwrap_or_default();
    Some(Tick::Wait { next, wait })
}

/// The reason a `skipped` record gives for missed ticks.
pub fn missed_reason(count: usize, first: DateTime<Tz>) -> String {
    format!(
        "skipped: {count} scheduled run(s) from {} on were missed (the host was suspended or the clock jumped)",
        first.to_rfc3339()
    )
}

/// `catch_up = true`: why the job runs once at start, or `None` when its
/// last scheduled run was not missed. `last` is when its last drill started.
pub fn catch_up_reason(
    schedule: &Schedule,
    last: Option<DateTime<FixedOffset>>,
    now: DateTime<Tz>,
) -> Option<String> {
    match last {
        None => Some("catch-up: no drill of this job has been recorded yet".to_string()),
        Some(l) => schedule
            .after(&l.with_timezone(&now.timezone()))
            .next()
            .filter(|t| *t <= now)
            .map(|t| {
                format!(
                    "catch-up: the run due at {} was missed while the agent was down",
                    t.to_rfc3339()
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rstest::rstest;
    use std::str::FromStr;

    fn tokyo(d: u32, h: u32, m: u32, s: u32) -> DateTime<Tz> {
        chrono_tz::Asia::Tokyo
            .with_ymd_and_hms(2026, 12, d, h, m, s)
            .unwrap()
    }

    fn daily_3am() -> Schedule {
        Schedule::from_str("0 0 3 * * *").unwrap()
    }

    #[rstest]
    // Now is before the next tick: wait for it.
    #[case::waits_for_the_next_tick(tokyo(1, 3, 0, 0), tokyo(1, 12, 0, 0), None,
        Tick::Wait { next: tokyo(2, 3, 0, 0), wait: Duration::from_secs(15 * 3600) })]
    // Seen 30 s late (a slow wake-up): still drilled, at once.
    #[case::a_tick_seen_a_little_late_still_runs(tokyo(1, 3, 0, 0), tokyo(2, 3, 0, 30), None,
        Tick::Wait { next: tokyo(2, 3, 0, 0), wait: Duration::ZERO })]
    // Later than the grace: missed, one record for it.
    #[case::a_tick_past_the_grace_is_missed(tokyo(1, 3, 0, 0), tokyo(2, 3, 1, 1), None,
        Tick::Missed { count: 1, first: tokyo(2, 3, 0, 0) })]
    // The jitter widens the grace: a tick may be that much later.
    #[case::jitter_widens_the_grace(tokyo(1, 3, 0, 0), tokyo(2, 3, 5, 0), Some(Duration::from_secs(600)),
        Tick::Wait { next: tokyo(2, 3, 0, 0), wait: Duration::ZERO })]
    // A host asleep for three days missed three ticks: one record says so.
    #[case::a_long_sleep_is_one_record_for_every_tick(tokyo(1, 3, 0, 0), tokyo(4, 9, 0, 0), None,
        Tick::Missed { count: 3, first: tokyo(2, 3, 0, 0) })]
    fn next_tick_decides_wait_or_missed(
        #[case] last: DateTime<Tz>,
        #[case] now: DateTime<Tz>,
        #[case] jitter: Option<Duration>,
        #[case] want: Tick,
    ) {
        let got = next_tick(&daily_3am(), last, now.with_timezone(&Utc), jitter);
        assert_eq!(got, Some(want));
    }

    #[test]
    fn a_schedule_with_no_further_tick_ends() {
        let once = Schedule::from_str("0 0 3 1 12 * 2026").unwrap();
        assert_eq!(
            next_tick(
                &once,
                tokyo(1, 3, 0, 0),
                tokyo(1, 4, 0, 0).with_timezone(&Utc),
                None
            ),
            None
        );
    }

    #[test]
    fn missed_reason_names_the_count_and_the_first_tick() {
        assert_eq!(
            missed_reason(3, tokyo(2, 3, 0, 0)),
            "skipped: 3 scheduled run(s) from 2026-12-02T03:00:00+09:00 on were missed (the host was suspended or the clock jumped)"
        );
    }

    #[rstest]
    #[case::never_drilled(
        None,
        tokyo(2, 12, 0, 0),
        Some("catch-up: no drill of this job has been recorded yet")
    )]
    #[case::last_drill_before_a_missed_tick(
        Some(tokyo(1, 3, 0, 5)),
        tokyo(2, 12, 0, 0),
        Some(
            "catch-up: the run due at 2026-12-02T03:00:00+09:00 was missed while the agent was down"
        )
    )]
    #[case::no_tick_since_the_last_drill(Some(tokyo(2, 3, 0, 5)), tokyo(2, 12, 0, 0), None)]
    #[case::the_next_tick_is_exactly_now(
        Some(tokyo(1, 3, 0, 5)),
        tokyo(2, 3, 0, 0),
        Some(
            "catch-up: the run due at 2026-12-02T03:00:00+09:00 was missed while the agent was down"
        )
    )]
    fn catch_up_runs_once_when_the_last_tick_was_missed(
        #[case] last: Option<DateTime<Tz>>,
        #[case] now: DateTime<Tz>,
        #[case] want: Option<&str>,
    ) {
        let last = last.map(|t| t.fixed_offset());
        assert_eq!(catch_up_reason(&daily_3am(), last, now).as_deref(), want);
    }
}
