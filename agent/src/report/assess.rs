//! The No.151 assessment: a pure function of the records, the systems in
//! scope, the period, the ledger's verification and `now`.
//!
//! Per system: "2" when it had a passing real restore within every policy
//! interval of the period, every change trigger was drilled, and the ledger
//! verifies; "1" when real restores exist but something falls short (each
//! [`Shortfall`] names its dates and record ids); "0" when there was no real
//! restore at all.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use verifier::{Record, TriggerKind, Verdict};

use super::{DEFAULT_POLICY, Period};
use crate::config::Config;

/// How long a system may go without a passing restore, counted from a pass
/// (or the period's start): for each of its jobs, the time [`crate::due::due_by`]
/// gives from there (the same rule as the overdue alert and metric), at most
/// [`DEFAULT_POLICY`] unless the job's `max_interval` says otherwise; the
/// strictest job wins. A system with no such job has [`DEFAULT_POLICY`].
#[derive(Debug, Clone, Default)]
pub struct Policy {
    jobs: Vec<(crate::config::Job, chrono_tz::Tz)>,
    /// Jobs known only by their records (another host's, in a shared store).
    fixed: Option<Duration>,
}

impl Policy {
    /// The policy of one configured job, its schedule read in `tz`.
    pub fn of_job(job: &crate::config::Job, tz: chrono_tz::Tz) -> Policy {
        Policy {
            jobs: vec![(job.clone(), tz)],
            fixed: None,
        }
    }

    /// A job known only by its records: `d` from each pass.
    pub fn fixed(d: Duration) -> Policy {
        Policy {
            jobs: Vec::new(),
            fixed: Some(d),
        }
    }

    fn add(&mut self, other: Policy) {
        self.jobs.extend(other.jobs);
        self.fixed = match (self.fixed, other.fixed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The longest gap allowed from the period's start to its first pass:
    /// with no pass to count a schedule from, `max_interval`, else
    /// [`DEFAULT_POLICY`] (a job may have begun within the period).
    pub fn leading(&self) -> Duration {
        self.jobs
            .iter()
            .map(|(j, _)| j.max_interval.unwrap_or(DEFAULT_POLICY))
            .chain(self.fixed)
            .min()
            .unwrap_or(DEFAULT_POLICY)
    }

    /// The longest gap allowed from a pass at `from` to the next pass.
    pub fn allowed(&self, from: DateTime<Utc>) -> Duration {
        let jobs = self.jobs.iter().map(|(j, tz)| {
            let d = crate::due::due_by(j, *tz, Some(from), from)
                .and_then(|by| (by - from).to_std().ok())
                .unwrap_or(DEFAULT_POLICY);
            if j.max_interval.is_some() {
                d
            } else {
                d.min(DEFAULT_POLICY)
            }
        });
        jobs.chain(self.fixed).min().unwrap_or(DEFAULT_POLICY)
    }
}

/// A system as the report sees it: declared, or named by a job.
#[derive(Debug, Clone)]
pub struct SystemScope {
    pub name: String,
    pub owner: Option<String>,
    pub criticality: Option<String>,
    pub jobs: Vec<String>,
    pub policy: Policy,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureLine {
    pub id: String,
    pub at: DateTime<Utc>,
    pub result: Verdict,
    pub reason: String,
    /// The first later pass of the same job, which closed it.
    pub closed_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeLine {
    pub id: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    pub result: Verdict,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    pub name: String,
    pub owner: Option<String>,
    pub criticality: Option<String>,
    pub jobs: Vec<String>,
    pub covered: bool,
    pub drills: u64,
    /// Drills that really restored (pass or fail; not errors or skips).
    pub real_restores: u64,
    pub passes: u64,
    pub failures: u64,
    pub errors: u64,
    pub skipped: u64,
    pub last_pass: Option<(String, DateTime<Utc>)>,
    pub policy_days: f64,
    pub longest_gap_days: f64,
    pub changes: Vec<ChangeLine>,
    pub rto: (u64, u64),
    pub rpo: (u64, u64),
    pub failure_lines: Vec<FailureLine>,
    pub coverage: BTreeMap<String, u64>,
    /// For jobs that rotate content checks: what their last N drills verified.
    pub rotation: Vec<verifier::RotationCoverage>,
    /// How many of the period's records are signed, and by which keys.
    pub signing: SignedShare,
    pub score: u8,
    pub shortfalls: Vec<Shortfall>,
    /// Every drill, for the charts.
    pub points: Vec<Point>,
}

/// How much of a system's evidence in the period is signed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignedShare {
    pub records: u64,
    pub signed: u64,
    /// Each key that signs some of them (its fingerprint, or `None` for
    /// records signed before key records were kept), with the first and last
    /// of those records' start.
    pub keys: Vec<(Option<String>, DateTime<Utc>, DateTime<Utc>)>,
}

/// The signed share of `records`, given the key that signs each (`None`:
/// unsigned; `Some(None)`: signed, key not named).
pub fn signed_share(
    records: &[&Record],
    key_of: &dyn Fn(&Record) -> Option<Option<String>>,
) -> SignedShare {
    let mut share = SignedShare {
        records: records.len() as u64,
        ..SignedShare::default()
    };
    for r in records {
        let Some(key) = key_of(r) else { continue };
        share.signed += 1;
        let at = r.started_at.with_timezone(&Utc);
        match share.keys.iter_mut().find(|k| k.0 == key) {
            Some(k) => {
                k.1 = k.1.min(at);
                k.2 = k.2.max(at);
            }
            None => share.keys.push((key, at, at)),
        }
    }
    share
}

/// Fills each system's signed share from the records of the period.
pub fn attach_signing(
    a: &mut Assessment,
    records: &[Record],
    key_of: &dyn Fn(&Record) -> Option<Option<String>>,
) {
    for sys in &mut a.systems {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| sys.jobs.contains(&r.job) && r.result != Verdict::Skipped)
            .filter(|r| {
                let t = r.started_at.with_timezone(&Utc);
                t >= a.period.since && t < a.period.until
            })
            .collect();
        sys.signing = signed_share(&mine, key_of);
    }
}

/// A reason a system does not score 2: what the audit found, as data. Its
/// wording in each language is in `words`.
#[derive(Debug, Clone, PartialEq)]
pub enum Shortfall {
    /// A declared system that no job covers.
    NoJob,
    /// Jobs cover the system, but none really restored in the period.
    NoRealRestore,
    /// Longer than the policy allows without a passing restore: from a pass
    /// (`from_pass`) or the period's start (`None`), to a pass (`to_pass`) or
    /// the period's end (`None`). Days are rounded to a tenth.
    Gap {
        days: f64,
        policy_days: f64,
        from: DateTime<Utc>,
        from_pass: Option<String>,
        to: DateTime<Utc>,
        to_pass: Option<String>,
    },
    /// A change-triggered drill that neither passed nor was closed by a
    /// later pass of its job.
    ChangeNotDrilled {
        record: String,
        at: DateTime<Utc>,
        reason: Option<String>,
        result: Verdict,
    },
    /// The ledger (or a chain of the store) does not verify.
    LedgerDoesNotVerify { problem: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub id: String,
    pub at: DateTime<Utc>,
    pub result: Verdict,
    pub duration_seconds: f64,
    pub rto_seconds: Option<u64>,
    pub backup_age_seconds: Option<i64>,
    pub rpo_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub period: Period,
    pub ledger_ok: bool,
    pub ledger_problem: Option<String>,
    pub overall: u8,
    pub systems: Vec<SystemReport>,
}

fn days(d: chrono::Duration) -> f64 {
    (d.num_seconds() as f64 / 86_400.0 * 10.0).round() / 10.0
}

/// The systems the config declares (`[[system]]`), with no jobs yet.
pub fn declared(cfg: &Config) -> Vec<SystemScope> {
    cfg.systems
        .iter()
        .map(|s| SystemScope {
            name: s.name.clone(),
            owner: s.owner.clone(),
            criticality: s.criticality.clone(),
            jobs: Vec::new(),
            policy: Policy::default(),
        })
        .collect()
}

/// Puts `job` under the system `name` (made if missing); the system's policy
/// is the strictest of its jobs'.
pub fn add_job(systems: &mut Vec<SystemScope>, name: String, job: &str, policy: Policy) {
    match systems.iter_mut().find(|s| s.name == name) {
        Some(s) => {
            // Once per job: the store path calls this for every record.
            if !s.jobs.iter().any(|j| j == job) {
                s.jobs.push(job.to_string());
                s.policy.add(policy);
            }
        }
        None => systems.push(SystemScope {
            name,
            owner: None,
            criticality: None,
            jobs: vec![job.to_string()],
            policy,
        }),
    }
}

/// The systems in scope: every declared `[[system]]` and every system a job
/// names (a job without `system` is its own system).
pub fn scope(cfg: &Config) -> Vec<SystemScope> {
    let mut out = declared(cfg);
    for j in &cfg.jobs {
        let name = j.system.clone().unwrap_or_else(|| j.name.clone());
        add_job(
            &mut out,
            name,
            &j.name,
            Policy::of_job(j, cfg.agent.timezone),
        );
    }
    out
}

/// Assesses every system over the period.
pub fn assess(
    records: &[Record],
    systems: &[SystemScope],
    period: &Period,
    ledger_problem: Option<String>,
    now: DateTime<Utc>,
) -> Assessment {
    let end = period.until.min(now);
    let mut reports = Vec::new();
    for s in systems {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| s.jobs.contains(&r.job))
            .filter(|r| {
                let t = r.started_at.with_timezone(&Utc);
                t >= period.since && t < period.until
            })
            .collect();
        let count = |v: Verdict| mine.iter().filter(|r| r.result == v).count() as u64;
        let (passes, failures, errors, skipped) = (
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Error),
            count(Verdict::Skipped),
        );
        let mut pass_times: Vec<(DateTime<Utc>, &str)> = mine
            .iter()
            .filter(|r| r.result == Verdict::Pass)
            .map(|r| (r.started_at.with_timezone(&Utc), r.id.as_str()))
            .collect();
        pass_times.sort();
        // Gaps between passing restores, counting the period's edges.
        let mut longest = chrono::Duration::zero();
        // The leading gap: from the last pass before the period when there
        // is one, by the same rule; else from the period's start by
        // `leading`.
        let before = records
            .iter()
            .filter(|r| s.jobs.contains(&r.job) && r.result == Verdict::Pass)
            .map(|r| (r.started_at.with_timezone(&Utc), r.id.as_str()))
            .filter(|(t, _)| *t < period.since)
            .max();
        let mut longest_policy = match before {
            Some((p, _)) => s.policy.allowed(p),
            None => s.policy.leading(),
        };
        let mut gap_shortfalls = Vec::new();
        let mut prev: (DateTime<Utc>, Option<&str>) = match before {
            Some((p, id)) => (p, Some(id)),
            None => (period.since, None),
        };
        for (t, id) in pass_times.iter().copied().chain(std::iter::once((end, ""))) {
            let gap = t - prev.0;
            let allowed = match prev.1 {
                Some(_) => s.policy.allowed(prev.0),
                None => s.policy.leading(),
            };
            let policy = chrono::Duration::from_std(allowed).unwrap_or(chrono::Duration::MAX);
            if gap > longest {
                longest = gap;
                longest_policy = allowed;
            }
            if gap > policy {
                gap_shortfalls.push(Shortfall::Gap {
                    days: days(gap),
                    policy_days: days(policy),
                    from: prev.0,
                    from_pass: prev.1.map(String::from),
                    to: t,
                    to_pass: (!id.is_empty()).then(|| id.to_string()),
                });
            }
            prev = (t, if id.is_empty() { None } else { Some(id) });
        }
        let changes: Vec<ChangeLine> = mine
            .iter()
            .filter(|r| r.trigger.kind == TriggerKind::Change)
            .map(|r| ChangeLine {
                id: r.id.clone(),
                at: r.started_at.with_timezone(&Utc),
                reason: r.trigger.reason.clone(),
                result: r.result,
            })
            .collect();
        let mut failure_lines = Vec::new();
        for r in mine
            .iter()
            .filter(|r| matches!(r.result, Verdict::Fail | Verdict::Error))
        {
            let at = r.started_at.with_timezone(&Utc);
            let closed_by = mine
                .iter()
                .filter(|x| {
                    x.job == r.job
                        && x.result == Verdict::Pass
                        && x.started_at.with_timezone(&Utc) > at
                })
                .min_by_key(|x| x.started_at)
                .map(|x| x.id.clone());
            failure_lines.push(FailureLine {
                id: r.id.clone(),
                at,
                result: r.result,
                reason: r.reasons.first().cloned().unwrap_or_default(),
                closed_by,
            });
        }
        let mut shortfalls = Vec::new();
        let real_restores = passes + failures;
        if s.jobs.is_empty() {
            shortfalls.push(Shortfall::NoJob);
        } else if real_restores == 0 {
            shortfalls.push(Shortfall::NoRealRestore);
        }
        if real_restores > 0 {
            shortfalls.extend(gap_shortfalls);
            for c in &changes {
                let drilled = c.result == Verdict::Pass
                    || failure_lines
                        .iter()
                        .any(|f| f.id == c.id && f.closed_by.is_some());
                if !drilled {
                    shortfalls.push(Shortfall::ChangeNotDrilled {
                        record: c.id.clone(),
                        at: c.at,
                        reason: c.reason.clone(),
                        result: c.result,
                    });
                }
            }
            if let Some(p) = &ledger_problem {
                shortfalls.push(Shortfall::LedgerDoesNotVerify { problem: p.clone() });
            }
        }
        let score = if real_restores == 0 {
            0
        } else if shortfalls.is_empty() {
            2
        } else {
            1
        };
        let objective = |f: &dyn Fn(&Record) -> Option<bool>| {
            let v: Vec<bool> = mine.iter().filter_map(|r| f(r)).collect();
            (v.iter().filter(|b| **b).count() as u64, v.len() as u64)
        };
        let mut coverage = BTreeMap::new();
        for r in mine.iter().filter(|r| r.result != Verdict::Skipped) {
            *coverage.entry(r.verify.content.clone()).or_default() += 1;
        }
        reports.push(SystemReport {
            name: s.name.clone(),
            owner: s.owner.clone(),
            criticality: s.criticality.clone(),
            jobs: s.jobs.clone(),
            covered: !s.jobs.is_empty(),
            drills: mine.len() as u64 - skipped,
            real_restores,
            passes,
            failures,
            errors,
            skipped,
            last_pass: pass_times.last().map(|(t, id)| (id.to_string(), *t)),
            policy_days: days(
                chrono::Duration::from_std(longest_policy).unwrap_or(chrono::Duration::MAX),
            ),
            longest_gap_days: days(longest),
            changes,
            rto: objective(&|r| r.objectives.rto_met),
            rpo: objective(&|r| r.objectives.rpo_met),
            failure_lines,
            coverage,
            rotation: s
                .jobs
                .iter()
                .filter_map(|j| {
                    let upto = records
                        .iter()
                        .filter(|r| r.started_at.with_timezone(&Utc) < period.until);
                    verifier::rotation_coverage(j, upto)
                })
                .collect(),
            signing: SignedShare::default(),
            score,
            shortfalls,
            points: mine
                .iter()
                .map(|r| Point {
                    id: r.id.clone(),
                    at: r.started_at.with_timezone(&Utc),
                    result: r.result,
                    duration_seconds: r.restore.duration_seconds + r.verify.duration_seconds,
                    rto_seconds: r.objectives.rto_seconds,
                    backup_age_seconds: r.backup.age_seconds,
                    rpo_seconds: r.objectives.rpo_seconds,
                })
                .collect(),
        });
    }
    Assessment {
        period: period.clone(),
        ledger_ok: ledger_problem.is_none(),
        ledger_problem,
        overall: reports.iter().map(|r| r.score).min().unwrap_or(0),
        systems: reports,
    }
}
