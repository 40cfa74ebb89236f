//! One alert state per job, and the one rule for what on-call hears
//! (docs/design.md, "Alerts"). The agent and a one-off `run` only call
//! [`step`]; it is a pure function of the previous state, what happened and
//! `now`.
//!
//! A *problem* opens at a job's first failing drill (`fail` or `error`) or
//! when it goes overdue, and closes at its next passing drill. Within one
//! problem every sink hears at most one problem alert: the first event it is
//! subscribed to. Failing and overdue are one problem, not rivals: a failing
//! job that also goes overdue does not alert `fail` again, and an overdue job
//! whose next drill fails does not alert `overdue` again. A sink subscribed
//! only to `overdue` hears the problem when the job goes overdue (whether or
//! not drills failed first); one subscribed only to `fail` hears it at the
//! first failed drill (whether or not the job was overdue first); one
//! subscribed only to `error` at the first drill that could not run. After
//! that a sink hears of the problem again only by its `repeat_interval`
//! (reminders: "still failing since …, N drills failed", at the first watch
//! or drill after the interval), and, when it lists `recovered`, once when
//! the problem closes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Event;

/// What the agent keeps of one job (in `state_dir/alerts/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The open problem, from its first failing drill or overdue to the next pass.
    #[serde(default)]
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub since: DateTime<Utc>,
    /// Failing drills since the problem opened.
    pub failed_drills: u32,
    /// When the first failing drill (`fail` or `error`) of it ended, if any.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the job went overdue, if it did.
    pub overdue_since: Option<DateTime<Utc>>,
    /// What each sink was told of this problem.
    pub told: BTreeMap<String, Told>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Told {
    /// The event of the problem alert it got.
    pub event: Event,
    /// That alert's id: reminders and `recovered` thread under it.
    pub alert: String,
    pub last_sent: DateTime<Utc>,
    /// The problem alert's summary and details, for sinks that keep one
    /// alert and are posted it again (Alertmanager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<(String, String)>,
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happening {
    /// A drill ended with this verdict (`skipped` changes nothing).
    Drill(verifier::Verdict),
    /// The agent's watch, every second: whether the job is overdue now.
    /// It, and every drill that does not pass or skip, also sends the
    /// reminders that are due.
    Watch { overdue: bool },
}

/// One sink as the rule sees it (the caller leaves out sinks whose `jobs`
/// do not list the job).
#[derive(Debug, Clone, PartialEq)]
pub struct Sink<'a> {
    pub name: &'a str,
    pub on: &'a [Event],
    pub repeat_interval: Option<Duration>,
    /// Told when the problem closes whatever its `on`: a sink that keeps the
    /// alert firing until it is resolved (Alertmanager).
    pub resolves: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first alert of a problem to this sink.
    Problem,
    /// A reminder of an open problem, by `repeat_interval`.
    Reminder,
    /// The problem closed: the drill passed again.
    Recovered,
}

/// One alert to send to one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub sink: String,
    pub event: Event,
    pub kind: Kind,
    pub id: String,
    /// The problem alert this one follows (reminders, `recovered`).
    pub follows: Option<String>,
    /// The problem as it stands after this step (for the alert's text).
    pub problem: Problem,
}

/// The rule: the next state and the alerts to send. `new_id` names each
/// alert sent.
pub fn step(
    prev: &JobState,
    happening: Happening,
    sinks: &[Sink],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
) -> (JobState, Vec<Outgoing>) {
    use verifier::Verdict;
    let mut sends = Vec::new();
    let problem = match happening {
        Happening::Drill(Verdict::Skipped) => return (prev.clone(), sends),
        Happening::Drill(Verdict::Pass) => {
            if let Some(p) = &prev.problem {
                for s in sinks {
                    if let Some(t) = p.told.get(s.name)
                        && (s.on.contains(&Event::Recovered) || s.resolves)
                    {
                        sends.push(Outgoing {
                            sink: s.name.to_string(),
                            event: Event::Recovered,
                            kind: Kind::Recovered,
                            id: new_id(),
                            follows: Some(t.alert.clone()),
                            problem: p.clone(),
                        });
                    }
                }
            }
            return (JobState { problem: None }, sends);
        }
        Happening::Drill(v) => {
            let event = if v == Verdict::Fail {
                Event::Fail
            } else {
                Event::Error
            };
            let mut p = prev.problem.clone().unwrap_or_else(|| open(now));
            p.failed_drills += 1;
            p.failing_since.get_or_insert(now);
            tell(&mut p, event, sinks, now, new_id, &mut sends);
            remind(&mut p, sinks, now, new_id, &mut sends);
            p
        }
        Happening::Watch { overdue } => {
            let mut p = match (&prev.problem, overdue) {
                (None, false) => return (prev.clone(), sends),
                (Some(p), _) => p.clone(),
                (None, true) => open(now),
            };
            if overdue {
                p.overdue_since.get_or_insert(now);
                tell(&mut p, Event::Overdue, sinks, now, new_id, &mut sends);
            }
            remind(&mut p, sinks, now, new_id, &mut sends);
            p
        }
    };
    for s in &mut sends {
        s.problem = problem.clone();
    }
    (
        JobState {
            problem: Some(problem),
        },
        sends,
    )
}

fn open(now: DateTime<Utc>) -> Problem {
    Problem {
        since: now,
        failed_drills: 0,
        failing_since: None,
        overdue_since: None,
        told: BTreeMap::new(),
    }
}

/// The problem alert, to every sink subscribed to `event` not yet told.
fn tell(
    p: &mut Problem,
    event: Event,
    sinks: &[Sink],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
    sends: &mut Vec<Outgoing>,
) {
    for s in sinks {
        if !s.on.contains(&event) || p.told.contains_key(s.name) {
            continue;
        }
        let id = new_id();
        p.told.insert(
            s.name.to_string(),
            Told {
                event,
                alert: id.clone(),
                last_sent: now,
                text: None,
            },
        );
        sends.push(Outgoing {
            sink: s.name.to_string(),
            event,
            kind: Kind::Problem,
            id,
            follows: None,
            problem: p.clone(),
        });
    }
}

/// Reminders to told sinks whose `repeat_interval` has passed.
fn remind(
    p: &mut Problem,
    sinks: &[Sink],
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
    sends: &mut Vec<Outgoing>,
) {
    for s in sinks {
        let (Some(every), Some(t)) = (s.repeat_interval, p.told.get_mut(s.name)) else {
            continue;
        };
        // A reload took the event off its `on`: no more reminders of it.
        if !s.on.contains(&t.event) {
            continue;
        }
        if (now - t.last_sent).to_std().unwrap_or_default() < every {
            continue;
        }
        t.last_sent = now;
        let (event, follows) = (t.event, t.alert.clone());
        sends.push(Outgoing {
            sink: s.name.to_string(),
            event,
            kind: Kind::Reminder,
            id: new_id(),
            follows: Some(follows),
            problem: p.clone(),
        });
    }
}

/// The reminder's first line for a sink first told `event`: "still failing
/// since …, N drills failed", or for `overdue`, "still overdue since …".
pub fn still(p: &Problem, event: Event, tz: chrono_tz::Tz) -> String {
    let since = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
    let drills = match p.failed_drills {
        0 => "no drill failed".to_string(),
        1 => "1 drill failed".to_string(),
        n => format!("{n} drills failed"),
    };
    if event == Event::Overdue {
        return format!(
            "still overdue since {}, {drills}",
            since(p.overdue_since.unwrap_or(p.since))
        );
    }
    match (p.failing_since, p.overdue_since) {
        (Some(f), Some(o)) => format!(
            "still failing since {}, {drills}; overdue since {}",
            since(f),
            since(o)
        ),
        (Some(f), None) => format!("still failing since {}, {drills}", since(f)),
        (None, _) => format!(
            "still overdue since {}, {drills}",
            since(p.overdue_since.unwrap_or(p.since))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::Verdict::{Error as E, Fail as F, Pass as P, Skipped as S};

    const ALL: &[Event] = &[Event::Fail, Event::Error, Event::Overdue, Event::Recovered];
    const PAGER: &[Event] = &[Event::Fail, Event::Error, Event::Recovered];
    const DEADMAN: &[Event] = &[Event::Overdue];
    const ERRORS: &[Event] = &[Event::Error, Event::Recovered];

    fn t(s: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s.into())
    }

    fn sinks() -> Vec<Sink<'static>> {
        vec![
            Sink {
                name: "all",
                on: ALL,
                repeat_interval: None,
                resolves: false,
            },
            Sink {
                name: "pager",
                on: PAGER,
                repeat_interval: Some(Duration::from_secs(60)),
                resolves: false,
            },
            Sink {
                name: "deadman",
                on: DEADMAN,
                repeat_interval: None,
                resolves: false,
            },
            Sink {
                name: "errors",
                on: ERRORS,
                repeat_interval: None,
                resolves: false,
            },
        ]
    }

    fn d(v: verifier::Verdict) -> Happening {
        Happening::Drill(v)
    }
    const OVERDUE: Happening = Happening::Watch { overdue: true };
    const ON_TIME: Happening = Happening::Watch { overdue: false };

    /// Runs a sequence from `start`; each step's sends as "sink:event:kind".
    fn run(start: &JobState, steps: &[(u32, Happening)]) -> (JobState, Vec<Vec<String>>) {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("a{n}")
        };
        let mut st = start.clone();
        let mut out = Vec::new();
        for (at, h) in steps {
            let (next, sends) = step(&st, *h, &sinks(), t(*at), &mut id);
            out.push(
                sends
                    .iter()
                    .map(|s| {
                        let kind = match s.kind {
                            Kind::Problem => "",
                            Kind::Reminder => ":reminder",
                            Kind::Recovered => "",
                        };
                        format!("{}:{}{kind}", s.sink, s.event.as_str())
                    })
                    .collect(),
            );
            st = next;
        }
        (st, out)
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn every_transition() {
        let none: &[&str] = &[];
        type Case<'a> = (&'a str, Vec<(u32, Happening)>, Vec<Vec<String>>);
        let table: Vec<Case> = vec![
            (
                "a pass with no problem, and skipped drills, tell nobody",
                vec![(0, d(P)), (1, d(S)), (2, ON_TIME)],
                vec![v(none), v(none), v(none)],
            ),
            (
                "the first failing drill tells every sink on fail, once",
                vec![(0, d(F)), (2, d(F)), (4, d(F)), (6, ON_TIME)],
                vec![v(&["all:fail", "pager:fail"]), v(none), v(none), v(none)],
            ),
            (
                "failing then overdue: only the sink on overdue alone hears overdue",
                vec![(0, d(F)), (10, OVERDUE), (11, OVERDUE), (12, d(F))],
                vec![
                    v(&["all:fail", "pager:fail"]),
                    v(&["deadman:overdue"]),
                    v(none),
                    v(none),
                ],
            ),
            (
                "overdue then failing: the fail sinks hear fail, the overdue sink nothing more",
                vec![(0, OVERDUE), (1, OVERDUE), (5, d(F)), (7, d(F))],
                vec![
                    v(&["all:overdue", "deadman:overdue"]),
                    v(none),
                    v(&["pager:fail"]),
                    v(none),
                ],
            ),
            (
                "a fail then an error: a sink on error only hears the error",
                vec![(0, d(F)), (2, d(E)), (4, d(E))],
                vec![
                    v(&["all:fail", "pager:fail"]),
                    v(&["errors:error"]),
                    v(none),
                ],
            ),
            (
                "recovered once, only to told sinks that list recovered",
                vec![(0, d(F)), (3, OVERDUE), (5, d(P)), (6, d(P))],
                vec![
                    v(&["all:fail", "pager:fail"]),
                    v(&["deadman:overdue"]),
                    v(&["all:recovered", "pager:recovered"]),
                    v(none),
                ],
            ),
            (
                "a new problem after recovery alerts again",
                vec![(0, d(E)), (1, d(P)), (2, d(F))],
                vec![
                    v(&["all:error", "pager:error", "errors:error"]),
                    v(&["all:recovered", "pager:recovered", "errors:recovered"]),
                    v(&["all:fail", "pager:fail"]),
                ],
            ),
            (
                "reminders only by repeat_interval, per sink, from the watch or a drill",
                vec![
                    (0, d(F)),
                    (30, ON_TIME),
                    (59, d(F)),
                    (60, ON_TIME),
                    (61, ON_TIME),
                    (125, d(E)),
                ],
                vec![
                    v(&["all:fail", "pager:fail"]),
                    v(none),
                    v(none),
                    v(&["pager:fail:reminder"]),
                    v(none),
                    v(&["errors:error", "pager:fail:reminder"]),
                ],
            ),
            (
                "a reminder keeps the event the sink first heard",
                vec![(0, OVERDUE), (10, d(F)), (75, OVERDUE)],
                vec![
                    v(&["all:overdue", "deadman:overdue"]),
                    v(&["pager:fail"]),
                    v(&["pager:fail:reminder"]),
                ],
            ),
            (
                "a job that stops being overdue without a pass keeps its problem",
                vec![(0, OVERDUE), (1, ON_TIME), (2, OVERDUE), (3, d(P))],
                vec![
                    v(&["all:overdue", "deadman:overdue"]),
                    v(none),
                    v(none),
                    v(&["all:recovered"]),
                ],
            ),
        ];
        for (name, steps, want) in table {
            let (_, got) = run(&JobState::default(), &steps);
            assert_eq!(got, want, "{name}");
        }
    }

    /// A sink that keeps the alert firing until resolved (Alertmanager) is
    /// told of the recovery though its `on` does not list `recovered`.
    #[test]
    fn a_sink_that_keeps_the_alert_is_always_told_it_resolved() {
        let am = [Sink {
            name: "am",
            on: &[Event::Fail],
            repeat_interval: None,
            resolves: true,
        }];
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("a{n}")
        };
        let (s, sent) = step(
            &JobState::default(),
            d(verifier::Verdict::Fail),
            &am,
            t(0),
            &mut id,
        );
        assert_eq!(sent.len(), 1);
        let (s, sent) = step(&s, d(verifier::Verdict::Pass), &am, t(10), &mut id);
        assert_eq!(s.problem, None);
        assert_eq!(
            sent.iter().map(|o| (o.event, o.kind)).collect::<Vec<_>>(),
            [(Event::Recovered, Kind::Recovered)]
        );
    }

    #[test]
    fn the_state_survives_a_restart() {
        // The state is saved as JSON after every step; a restarted agent
        // reads it back and goes on as if it had not stopped.
        let (st, first) = run(&JobState::default(), &[(0, d(F)), (5, OVERDUE)]);
        assert_eq!(
            first,
            vec![v(&["all:fail", "pager:fail"]), v(&["deadman:overdue"])]
        );
        let saved = serde_json::to_string(&st).unwrap();
        let back: JobState = serde_json::from_str(&saved).unwrap();
        assert_eq!(back, st);
        let (_, after) = run(&back, &[(6, OVERDUE), (7, d(F)), (8, d(P))]);
        assert_eq!(
            after,
            vec![v(&[]), v(&[]), v(&["all:recovered", "pager:recovered"])]
        );
        // A state file from before this rule (other fields) reads as no problem.
        let old: JobState = serde_json::from_str(r#"{"active":"fail","last_sent":null}"#).unwrap();
        assert_eq!(old, JobState::default());
    }

    #[test]
    fn reminders_and_recovery_thread_under_the_problem_alert() {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("a{n}")
        };
        let s = sinks();
        let (st, first) = step(&JobState::default(), d(F), &s, t(0), &mut id);
        let pager = first.iter().find(|x| x.sink == "pager").unwrap();
        assert_eq!(pager.follows, None);
        let (st, r) = step(&st, ON_TIME, &s, t(61), &mut id);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].follows.as_deref(), Some(pager.id.as_str()));
        let (_, rec) = step(&st, d(P), &s, t(70), &mut id);
        let back = rec.iter().find(|x| x.sink == "pager").unwrap();
        assert_eq!(back.follows.as_deref(), Some(pager.id.as_str()));
    }

    #[test]
    fn what_a_reminder_says() {
        let tz = chrono_tz::Asia::Tokyo;
        let mut id = || "x".to_string();
        let s = sinks();
        let (st, _) = step(&JobState::default(), d(F), &s, t(0), &mut id);
        let (st, _) = step(&st, d(F), &s, t(10), &mut id);
        let (st, _) = step(&st, d(E), &s, t(20), &mut id);
        let p = st.problem.clone().unwrap();
        assert_eq!(
            still(&p, Event::Fail, tz),
            "still failing since 2026-12-01 09:00 JST, 3 drills failed"
        );
        let (st, _) = step(&st, OVERDUE, &s, t(3600), &mut id);
        assert_eq!(
            still(st.problem.as_ref().unwrap(), Event::Fail, tz),
            "still failing since 2026-12-01 09:00 JST, 3 drills failed; overdue since 2026-12-01 10:00 JST"
        );
        let (both, _) = step(&st, OVERDUE, &s, t(3600), &mut id);
        assert_eq!(
            still(&both.problem.unwrap(), Event::Overdue, tz),
            "still overdue since 2026-12-01 10:00 JST, 3 drills failed",
            "a sink told overdue is reminded of overdue"
        );
        let (st, _) = step(&JobState::default(), OVERDUE, &s, t(0), &mut id);
        assert_eq!(
            still(&st.problem.unwrap(), Event::Overdue, tz),
            "still overdue since 2026-12-01 09:00 JST, no drill failed"
        );
    }
}
