//! Period reports for auditors and the JAMA/JAPIA No.151 assessment.
//!
//! The assessment is a pure function of the records, the configured systems and
//! jobs, the period and the ledger's verification, so it is tested on
//! synthetic years of records with a fixed clock.
//!
//! Per system: "2" when it had a passing real restore within every policy
//! interval of the period, every change trigger was drilled, and the ledger
//! verifies; "1" when real restores exist but something falls short (each
//! shortfall cites record ids); "0" when there was no real restore at all.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use verifier::{Record, TriggerKind, Verdict};

use crate::config::Config;

/// CIS Controls 11.5: test recovery at least quarterly.
pub const DEFAULT_POLICY: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ja,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

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

impl SystemReport {
    /// Content verification by mode, e.g. "all ×11, sample ×1".
    fn coverage_text(&self) -> String {
        if self.coverage.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self
            .coverage
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        parts.join(", ")
    }

    /// The values of the facts table, in the order of `Words::facts`.
    fn facts(&self) -> [String; 9] {
        let last = self
            .last_pass
            .as_ref()
            .map(|(id, t)| format!("{} ({id})", t.format("%Y-%m-%d")))
            .unwrap_or_else(|| "-".into());
        [
            self.drills.to_string(),
            self.real_restores.to_string(),
            self.passes.to_string(),
            self.failures.to_string(),
            self.errors.to_string(),
            last,
            format!("{} / {}", self.longest_gap_days, self.policy_days),
            format!("{}/{}", self.rto.0, self.rto.1),
            format!("{}/{}", self.rpo.0, self.rpo.1),
        ]
    }
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

/// "12 of 14 records signed: by key 1a2b3c4d5e6f… from 2026-11-20 to
/// 2026-12-01; 2 unsigned (before signing began)".
pub fn signing_text(s: &SignedShare, lang: Lang) -> String {
    let keys: Vec<String> = s
        .keys
        .iter()
        .map(|(k, from, to)| {
            let k = k
                .as_deref()
                .map(|k| k[..16.min(k.len())].to_string() + "…")
                .unwrap_or_else(|| "?".into());
            let (a, b) = (from.format("%Y-%m-%d"), to.format("%Y-%m-%d"));
            match lang {
                Lang::En => format!("by key {k} from {a} to {b}"),
                Lang::Ja => format!("鍵 {k} による署名（{a} から {b}）"),
            }
        })
        .collect();
    let unsigned = s.records - s.signed;
    match lang {
        Lang::En => {
            let mut t = format!("{} of {} records signed", s.signed, s.records);
            if !keys.is_empty() {
                t += &format!(": {}", keys.join("; "));
            }
            if unsigned > 0 {
                t += &format!("; {unsigned} unsigned (before signing began)");
            }
            t
        }
        Lang::Ja => {
            let mut t = format!("{} 件中 {} 件の記録に署名があります", s.records, s.signed);
            if !keys.is_empty() {
                t += &format!("：{}", keys.join("、"));
            }
            if unsigned > 0 {
                t += &format!("。署名のない記録 {unsigned} 件（署名開始前）");
            }
            t
        }
    }
}

/// Fills each system's signed share from the records of the period.
fn attach_signing(
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

/// A reason a system does not score 2, in both report languages.
#[derive(Debug, Clone, Serialize)]
pub struct Shortfall {
    pub en: String,
    pub ja: String,
}

impl Shortfall {
    fn new(en: String, ja: String) -> Shortfall {
        Shortfall { en, ja }
    }

    pub fn text(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Ja => &self.ja,
        }
    }
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

/// The systems in scope: every declared `[[system]]` and every system a job
/// names (a job without `system` is its own system).
/// The systems the config declares (`[[system]]`), with no jobs yet.
fn declared(cfg: &Config) -> Vec<SystemScope> {
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
fn add_job(systems: &mut Vec<SystemScope>, name: String, job: &str, policy: Policy) {
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

pub fn scope(cfg: &Config) -> Vec<SystemScope> {
    let mut out = declared(cfg);
    for j in &cfg.jobs {
        let name = j.system.clone().unwrap_or_else(|| j.name.clone());
        let policy = Policy {
            jobs: vec![(j.clone(), cfg.agent.timezone)],
            fixed: None,
        };
        add_job(&mut out, name, &j.name, policy);
    }
    out
}

/// The assessment of the configured systems from the configured ledger,
/// verified with the signing key's public half when there is one.
pub fn for_config(cfg: &Config, period: &Period, now: DateTime<Utc>) -> anyhow::Result<Assessment> {
    if cfg.store != crate::config::Store::File {
        return for_store(cfg, period, now);
    }
    let ledger = crate::drills::ledger(cfg);
    let keys = crate::drills::verifying_keys(cfg);
    let (problem, chain) = match ledger.verify_with(&keys) {
        Ok(c) => (
            c.problem
                .as_ref()
                .map(|p| format!("line {}: {}", p.line, p.what)),
            c,
        ),
        Err(e) => (Some(e.to_string()), verifier::ChainReport::default()),
    };
    let mut records: Vec<Record> = match ledger.records() {
        Ok(it) => it.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    records.retain(|r| !verifier::is_ledger_note(&r.job));
    let mut a = assess(&records, &scope(cfg), period, problem, now);
    attach_signing(&mut a, &records, &|r| {
        chain.key_of(r.seq).map(|k| k.key.clone())
    });
    Ok(a)
}

/// The assessment from the shared evidence store: every host's records. A job
/// is a host's job (`job@host`): two hosts' jobs of the same name are two jobs,
/// so one host's pass never closes another's failure. Each counts under the
/// system its records name. Signatures are checked with this host's key on
/// this host's chains only; other hosts' chains by their hash chain. A chain
/// that does not verify is the ledger problem the report shows; a store that
/// cannot be read is an error.
fn for_store(cfg: &Config, period: &Period, now: DateTime<Utc>) -> anyhow::Result<Assessment> {
    use anyhow::Context;
    let keys = crate::drills::verifying_keys(cfg);
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let chains = crate::store::verify_each(&cfg.store, |chain_host| {
        if chain_host == host {
            keys.clone()
        } else {
            Vec::new()
        }
    })
    .context("the evidence store cannot be read")?;
    let mut problems: Vec<String> = chains
        .iter()
        .filter_map(|c| {
            c.report.problem.as_ref().map(|p| {
                format!(
                    "host {} chain {}: seq {}: {}",
                    c.host,
                    &c.chain[..12.min(c.chain.len())],
                    p.line,
                    p.what
                )
            })
        })
        .collect();
    let (stored, bad) = crate::store::records(&cfg.store, period.since, period.until)
        .context("the evidence store cannot be read")?;
    if bad > 0 {
        problems.push(format!("{bad} stored rows are not records"));
    }
    let mut systems = declared(cfg);
    // The key of each record, by its chain's ranges.
    let keys_by_id: std::collections::HashMap<String, Option<String>> = stored
        .iter()
        .filter_map(|(chain, r)| {
            chains
                .iter()
                .find(|c| &c.chain == chain)
                .and_then(|c| c.report.key_of(r.seq))
                .map(|k| (r.id.clone(), k.key.clone()))
        })
        .collect();
    let mut records: Vec<Record> = stored
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| !verifier::is_ledger_note(&r.job))
        .collect();
    for r in &mut records {
        let policy = match (r.host == host)
            .then(|| cfg.jobs.iter().find(|j| j.name == r.job))
            .flatten()
        {
            Some(j) => Policy {
                jobs: vec![(j.clone(), cfg.agent.timezone)],
                fixed: None,
            },
            None => Policy::fixed(DEFAULT_POLICY),
        };
        r.job = format!("{}@{}", r.job, r.host);
        let name = r.system.clone().unwrap_or_else(|| r.job.clone());
        add_job(&mut systems, name, &r.job, policy);
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    let mut a = assess(&records, &systems, period, problem, now);
    attach_signing(&mut a, &records, &|r| keys_by_id.get(&r.id).cloned());
    Ok(a)
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
                let (from_en, from_ja) = match prev.1 {
                    Some(i) => (format!("pass {i}"), format!("合格 {i}")),
                    None => ("the period's start".to_string(), "期間の開始".to_string()),
                };
                let (to_en, to_ja) = if id.is_empty() {
                    ("the period's end".to_string(), "期間の終了".to_string())
                } else {
                    (format!("pass {id}"), format!("合格 {id}"))
                };
                let (d, p, a, b) = (
                    days(gap),
                    days(policy),
                    prev.0.format("%Y-%m-%d"),
                    t.format("%Y-%m-%d"),
                );
                gap_shortfalls.push(Shortfall::new(
                    format!("no passing restore for {d} days (policy {p} days), from {from_en} ({a}) to {to_en} ({b})"),
                    format!("合格したリストアのない期間が {d} 日あります（方針は {p} 日）：{from_ja}（{a}）から {to_ja}（{b}）まで"),
                ));
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
            shortfalls.push(Shortfall::new(
                "no job covers this system".into(),
                "このシステムを対象とするリストアジョブがありません".into(),
            ));
        } else if real_restores == 0 {
            shortfalls.push(Shortfall::new(
                "no real restore in the period".into(),
                "期間中に実際のリストアが行われていません".into(),
            ));
        }
        if real_restores > 0 {
            shortfalls.extend(gap_shortfalls);
            for c in &changes {
                let drilled = c.result == Verdict::Pass
                    || failure_lines
                        .iter()
                        .any(|f| f.id == c.id && f.closed_by.is_some());
                if !drilled {
                    let (why, at) = (c.reason.as_deref().unwrap_or("-"), c.at.format("%Y-%m-%d"));
                    shortfalls.push(Shortfall::new(
                        format!(
                            "change {why} ({at}) was not drilled to a pass: record {} is {}",
                            c.id, c.result
                        ),
                        format!(
                            "変更 {why}（{at}）のドリルが合格に至っていません：記録 {} は {} です",
                            c.id, c.result
                        ),
                    ));
                }
            }
            if let Some(p) = &ledger_problem {
                shortfalls.push(Shortfall::new(
                    format!("the ledger does not verify: {p}"),
                    format!("証跡台帳の検証に失敗しました：{p}"),
                ));
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

/// Which records support which control.
const CROSSWALK: &[(&str, &str, &str)] = &[
    (
        "JAMA/JAPIA No.151",
        "restore tests of important backups, at every system update and periodically",
        "定期的およびシステム更新時に、重要なバックアップのリストアテストを実施",
    ),
    (
        "ISO/IEC 27001 A.8.13",
        "backup copies tested",
        "バックアップのテスト",
    ),
    (
        "NIST SP 800-53 CP-4",
        "contingency plan testing",
        "緊急時対応計画のテスト",
    ),
    (
        "NIST SP 800-53 CP-9(1)",
        "testing for reliability and integrity",
        "信頼性と完全性のテスト",
    ),
    (
        "NIST SP 800-53 CP-9(2)",
        "test restoration using sampling",
        "サンプリングによる復元テスト",
    ),
    (
        "NIST CSF PR.DS-11",
        "backups are created, protected, maintained and tested",
        "バックアップの作成・保護・維持・テスト",
    ),
    (
        "CIS Controls 11.5",
        "test data recovery (quarterly, sampled)",
        "データ復旧のテスト（四半期ごと、サンプル）",
    ),
    (
        "SOC 2 A1.3",
        "recovery plan procedures are tested",
        "復旧計画手順のテスト",
    ),
];

/// "every file content-verified within the last N drills", or what is missing.
pub fn rotation_text(c: &verifier::RotationCoverage, lang: Lang) -> String {
    let n = c.over;
    let since = c
        .since
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let missing = verifier::slice_list(&c.missing);
    match (lang, c.complete()) {
        (Lang::En, true) => format!(
            "{}: every file content-verified within the last {n} drills (slices 0-{}, since {since})",
            c.job,
            n - 1
        ),
        (Lang::En, false) => format!(
            "{}: NOT every file content-verified within the last {n} drills: slice(s) {missing} of 0-{} had no passing drill ({} of {n} drills so far, since {since})",
            c.job,
            n - 1,
            c.drills
        ),
        (Lang::Ja, true) => format!(
            "{}：直近{n}回のドリルで全ファイルの内容を検証済み（スライス 0-{}、{since}以降）",
            c.job,
            n - 1
        ),
        (Lang::Ja, false) => format!(
            "{}：直近{n}回のドリルでは全ファイルの内容を検証できていません。合格したドリルのないスライス：{missing}（0-{}中、{since}以降のドリル{}回）",
            c.job,
            n - 1,
            c.drills
        ),
    }
}

struct Words {
    title: &'static str,
    period: &'static str,
    overall: &'static str,
    ledger_ok: &'static str,
    ledger_bad: &'static str,
    system: &'static str,
    score: &'static str,
    uncovered: &'static str,
    facts: [&'static str; 9],
    shortfalls: &'static str,
    none: &'static str,
    failures: &'static str,
    closed_by: &'static str,
    open: &'static str,
    changes: &'static str,
    crosswalk: &'static str,
    crosswalk_text: &'static str,
    coverage: &'static str,
    rotation: &'static str,
    signing: &'static str,
}

fn words(lang: Lang) -> Words {
    match lang {
        Lang::En => Words {
            title: "Restore test report",
            period: "Period",
            overall: "No.151 assessment, overall",
            ledger_ok: "The evidence ledger verifies (hash chain intact).",
            ledger_bad: "The evidence ledger does NOT verify",
            system: "System",
            score: "No.151 score",
            uncovered: "not covered by any restore job",
            facts: [
                "Drills",
                "Real restores",
                "Passes",
                "Failures",
                "Errors",
                "Last pass",
                "Longest gap between passes (days)",
                "RTO met",
                "RPO met",
            ],
            shortfalls: "Shortfalls",
            none: "none",
            failures: "Failures and the drill that closed each",
            closed_by: "closed by",
            open: "still open",
            changes: "Change-triggered drills",
            crosswalk: "Crosswalk",
            crosswalk_text: "Each drill record (result, restore and verification figures, objectives, hash chain) supports these controls:",
            coverage: "Content verification (drills by mode: all files, sample, rotation, none)",
            rotation: "Rotating content checks",
            signing: "Signed evidence",
        },
        Lang::Ja => Words {
            title: "リストアテスト報告書",
            period: "対象期間",
            overall: "No.151 評価（全体）",
            ledger_ok: "証跡台帳の検証に成功しました（ハッシュチェーンは改ざんされていません）。",
            ledger_bad: "証跡台帳の検証に失敗しました",
            system: "システム",
            score: "No.151 評点",
            uncovered: "リストアジョブの対象になっていません",
            facts: [
                "ドリル回数",
                "実リストア回数",
                "合格",
                "不合格",
                "エラー",
                "最終合格",
                "合格間の最長間隔（日）",
                "RTO 達成",
                "RPO 達成",
            ],
            shortfalls: "不足事項",
            none: "なし",
            failures: "不合格と、それを解消したドリル",
            closed_by: "解消",
            open: "未解消",
            changes: "変更契機のドリル",
            crosswalk: "他基準との対応",
            crosswalk_text: "各ドリルの記録（結果、リストアと検証の数値、目標値、ハッシュチェーン）は次の管理策の証跡となります：",
            coverage: "内容の検証（方式別のドリル回数：all 全ファイル、sample 抽出、rotate ローテーション、none なし）",
            rotation: "ローテーションによる内容の検証",
            signing: "署名付きの証跡",
        },
    }
}

/// Markdown, for people.
pub fn markdown(a: &Assessment, lang: Lang) -> String {
    let w = words(lang);
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", w.title);
    let _ = writeln!(
        s,
        "{}: {} – {}\n",
        w.period,
        a.period.since.format("%Y-%m-%d"),
        a.period.until.format("%Y-%m-%d")
    );
    let _ = writeln!(s, "**{}: {}**\n", w.overall, a.overall);
    match &a.ledger_problem {
        None => {
            let _ = writeln!(s, "{}\n", w.ledger_ok);
        }
        Some(p) => {
            let _ = writeln!(s, "**{}**: {p}\n", w.ledger_bad);
        }
    }
    for r in &a.systems {
        let _ = writeln!(s, "## {}: {}\n", w.system, r.name);
        let _ = writeln!(
            s,
            "{}: **{}**{}\n",
            w.score,
            r.score,
            if r.covered {
                String::new()
            } else {
                format!(" ({})", w.uncovered)
            }
        );
        let _ = writeln!(s, "| | |\n|---|---|");
        for (k, v) in w.facts.iter().zip(r.facts()) {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let _ = writeln!(
            s,
            "\n**{}**: {}",
            w.shortfalls,
            if r.shortfalls.is_empty() {
                w.none.to_string()
            } else {
                String::new()
            }
        );
        for f in &r.shortfalls {
            let _ = writeln!(s, "- {}", f.text(lang));
        }
        let _ = writeln!(s, "\n**{}**: {}", w.coverage, r.coverage_text());
        let _ = writeln!(s, "\n**{}**: {}", w.signing, signing_text(&r.signing, lang));
        for c in &r.rotation {
            let _ = writeln!(s, "\n**{}**: {}", w.rotation, rotation_text(c, lang));
        }
        if !r.failure_lines.is_empty() {
            let _ = writeln!(s, "\n**{}**", w.failures);
            for f in &r.failure_lines {
                let closed = f
                    .closed_by
                    .as_ref()
                    .map(|c| format!("{} {c}", w.closed_by))
                    .unwrap_or_else(|| w.open.to_string());
                let _ = writeln!(
                    s,
                    "- {} {} {}: {} — {closed}",
                    f.at.format("%Y-%m-%d"),
                    f.result,
                    f.id,
                    crate::output::escape(&f.reason)
                );
            }
        }
        if !r.changes.is_empty() {
            let _ = writeln!(s, "\n**{}**", w.changes);
            for c in &r.changes {
                let _ = writeln!(
                    s,
                    "- {} {} {}: {}",
                    c.at.format("%Y-%m-%d"),
                    c.result,
                    c.id,
                    crate::output::escape(c.reason.as_deref().unwrap_or("-"))
                );
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## {}\n\n{}\n", w.crosswalk, w.crosswalk_text);
    for (code, en, ja) in CROSSWALK {
        let _ = writeln!(s, "- {code}: {}", if lang == Lang::Ja { ja } else { en });
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#1a7f37",
        Verdict::Fail => "#cf222e",
        Verdict::Error => "#bc4c00",
        Verdict::Skipped | Verdict::Key => "#8c959f",
    }
}

/// A chart's series: the value of a drill, the objective line, and its unit.
type Series<'a> = (&'a dyn Fn(&Point) -> Option<f64>, Option<f64>, &'a str);

/// An inline SVG: one mark per drill along the period, coloured by result;
/// with `value`, a scatter of that value against a dashed objective line.
fn chart(a: &Assessment, r: &SystemReport, value: Option<Series>) -> String {
    let (w, h, pad) = (880.0, if value.is_some() { 140.0 } else { 44.0 }, 20.0);
    let span = (a.period.until - a.period.since).num_seconds().max(1) as f64;
    let x =
        |t: DateTime<Utc>| pad + (t - a.period.since).num_seconds() as f64 / span * (w - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\"><rect width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/>"
    );
    match value {
        None => {
            for p in &r.points {
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"10\" width=\"4\" height=\"24\" fill=\"{}\"><title>{} {} {}</title></rect>",
                    x(p.at) - 2.0,
                    color(p.result),
                    p.at.format("%Y-%m-%d"),
                    p.result,
                    esc(&p.id)
                );
            }
        }
        Some((get, objective, unit)) => {
            let vals: Vec<f64> = r.points.iter().filter_map(get).collect();
            let max = vals
                .iter()
                .copied()
                .chain(objective)
                .fold(1.0_f64, f64::max)
                * 1.1;
            let y = |v: f64| h - pad - v / max * (h - 2.0 * pad);
            if let Some(o) = objective {
                let _ = write!(
                    s,
                    "<line x1=\"{pad}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#cf222e\" text-anchor=\"end\">{:.0} {unit}</text>",
                    w - pad,
                    y(o),
                    y(o),
                    w - pad,
                    y(o) - 3.0,
                    o
                );
            }
            for p in &r.points {
                if let Some(v) = get(p) {
                    let _ = write!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{} {:.1} {unit}</title></circle>",
                        x(p.at),
                        y(v),
                        color(p.result),
                        p.at.format("%Y-%m-%d"),
                        v
                    );
                }
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// One self-contained HTML file: inline styles and SVG, no script, no
/// external assets; prints to PDF as it shows.
pub fn html(a: &Assessment, lang: Lang) -> String {
    let w = words(lang);
    let (tl, dur, age) = match lang {
        Lang::En => (
            "Drills over the period (green pass, red fail, orange error, grey skipped)",
            "Restore + verify time (seconds) against RTO",
            "Backup age (hours) against RPO",
        ),
        Lang::Ja => (
            "期間中のドリル（緑：合格、赤：不合格、橙：エラー、灰：スキップ）",
            "リストア＋検証時間（秒）と RTO",
            "バックアップの経過時間（時間）と RPO",
        ),
    };
    let mut s = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:'Noto Sans CJK JP','Noto Sans JP',sans-serif;margin:2em;color:#1f2328}}\
h1{{font-size:1.6em}}h2{{border-bottom:1px solid #d0d7de;padding-bottom:.2em}}\
table{{border-collapse:collapse}}td{{border:1px solid #d0d7de;padding:.25em .6em}}\
.score{{display:inline-block;font-weight:bold;padding:.1em .6em;border-radius:1em;color:#fff}}\
.s2{{background:#1a7f37}}.s1{{background:#bc4c00}}.s0{{background:#cf222e}}\
@media print{{section{{break-inside:avoid}}}}</style></head><body>",
        if lang == Lang::Ja { "ja" } else { "en" },
        w.title
    );
    let _ = write!(
        s,
        "<h1>{}</h1><p>{}: {} – {}</p>",
        w.title,
        w.period,
        a.period.since.format("%Y-%m-%d"),
        a.period.until.format("%Y-%m-%d")
    );
    let _ = write!(
        s,
        "<p>{}: <span class=\"score s{}\">{}</span></p>",
        w.overall, a.overall, a.overall
    );
    match &a.ledger_problem {
        None => {
            let _ = write!(s, "<p>{}</p>", w.ledger_ok);
        }
        Some(p) => {
            let _ = write!(s, "<p><b>{}</b>: {}</p>", w.ledger_bad, esc(p));
        }
    }
    for r in &a.systems {
        let _ = write!(
            s,
            "<section><h2>{}: {}</h2><p>{}: <span class=\"score s{}\">{}</span>{}</p>",
            w.system,
            esc(&r.name),
            w.score,
            r.score,
            r.score,
            if r.covered {
                String::new()
            } else {
                format!(" — {}", w.uncovered)
            }
        );
        s.push_str("<table>");
        for (k, v) in w.facts.iter().zip(r.facts()) {
            let _ = write!(s, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
        }
        s.push_str("</table>");
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p><ul>",
            w.shortfalls,
            if r.shortfalls.is_empty() { w.none } else { "" }
        );
        for f in &r.shortfalls {
            let _ = write!(s, "<li>{}</li>", esc(f.text(lang)));
        }
        s.push_str("</ul>");
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p>",
            w.coverage,
            esc(&r.coverage_text())
        );
        let _ = write!(
            s,
            "<p><b>{}</b>: {}</p>",
            w.signing,
            esc(&signing_text(&r.signing, lang))
        );
        for c in &r.rotation {
            let _ = write!(
                s,
                "<p><b>{}</b>: {}</p>",
                w.rotation,
                esc(&rotation_text(c, lang))
            );
        }
        if !r.failure_lines.is_empty() {
            let _ = write!(s, "<p><b>{}</b></p><ul>", w.failures);
            for f in &r.failure_lines {
                let closed = f
                    .closed_by
                    .as_ref()
                    .map(|c| format!("{} {}", w.closed_by, esc(c)))
                    .unwrap_or_else(|| w.open.to_string());
                let _ = write!(
                    s,
                    "<li>{} {} {}: {} — {closed}</li>",
                    f.at.format("%Y-%m-%d"),
                    f.result,
                    esc(&f.id),
                    esc(&crate::output::escape(&f.reason))
                );
            }
            s.push_str("</ul>");
        }
        if !r.changes.is_empty() {
            let _ = write!(s, "<p><b>{}</b></p><ul>", w.changes);
            for c in &r.changes {
                let _ = write!(
                    s,
                    "<li>{} {} {}: {}</li>",
                    c.at.format("%Y-%m-%d"),
                    c.result,
                    esc(&c.id),
                    esc(&crate::output::escape(c.reason.as_deref().unwrap_or("-")))
                );
            }
            s.push_str("</ul>");
        }
        let rto = r
            .points
            .iter()
            .find_map(|p| p.rto_seconds)
            .map(|v| v as f64);
        let rpo = r
            .points
            .iter()
            .find_map(|p| p.rpo_seconds)
            .map(|v| v as f64 / 3600.0);
        let _ = write!(s, "<p>{tl}</p>{}", chart(a, r, None));
        let _ = write!(
            s,
            "<p>{dur}</p>{}",
            chart(
                a,
                r,
                Some((
                    &|p: &Point| (p.result != Verdict::Skipped).then_some(p.duration_seconds),
                    rto,
                    "s"
                ))
            )
        );
        let _ = write!(
            s,
            "<p>{age}</p>{}</section>",
            chart(
                a,
                r,
                Some((
                    &|p: &Point| p.backup_age_seconds.map(|x| x as f64 / 3600.0),
                    rpo,
                    "h"
                ))
            )
        );
    }
    let _ = write!(
        s,
        "<section><h2>{}</h2><p>{}</p><ul>",
        w.crosswalk, w.crosswalk_text
    );
    for (code, en, ja) in CROSSWALK {
        let _ = write!(
            s,
            "<li>{code}: {}</li>",
            if lang == Lang::Ja { ja } else { en }
        );
    }
    s.push_str("</ul></section></body></html>\n");
    s
}

/// CSV, one row per system.
pub fn csv(a: &Assessment) -> String {
    let q = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let mut s = String::from(
        "system,owner,criticality,jobs,score,drills,real_restores,passes,failures,errors,skipped,last_pass,longest_gap_days,policy_days,rto_met,rto_total,rpo_met,rpo_total,shortfalls\n",
    );
    for r in &a.systems {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            q(&r.name),
            q(r.owner.as_deref().unwrap_or("")),
            q(r.criticality.as_deref().unwrap_or("")),
            q(&r.jobs.join(" ")),
            r.score,
            r.drills,
            r.real_restores,
            r.passes,
            r.failures,
            r.errors,
            r.skipped,
            q(&r.last_pass
                .as_ref()
                .map(|(_, t)| t.to_rfc3339())
                .unwrap_or_default()),
            r.longest_gap_days,
            r.policy_days,
            r.rto.0,
            r.rto.1,
            r.rpo.0,
            r.rpo.1,
            q(&r.shortfalls
                .iter()
                .map(|f| f.en.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rstest::rstest;
    use verifier::*;

    fn rec(job: &str, day: i64, result: Verdict, change: Option<&str>) -> Record {
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap() + chrono::Duration::days(day);
        let t = t.fixed_offset();
        Record {
            format: FORMAT.into(),
            id: format!("{job}-{day}-{}", result.as_str()),
            seq: 0,
            job: job.into(),
            system: None,
            host: "h".into(),
            agent_version: "t".into(),
            trigger: Trigger {
                kind: if change.is_some() {
                    TriggerKind::Change
                } else {
                    TriggerKind::Schedule
                },
                reason: change.map(String::from),
                scheduled_for: None,
            },
            started_at: t,
            finished_at: t,
            result,
            reasons: if result == Verdict::Pass {
                vec![]
            } else {
                vec!["content mismatch: a".into()]
            },
            backup: BackupSection::default(),
            restore: RestoreSection::default(),
            verify: VerifySection {
                content: "all".into(),
                ..Default::default()
            },
            objectives: Objectives {
                rto_met: Some(true),
                ..Default::default()
            },
            checks: vec![],
            sandbox: SandboxSection::default(),
            artifacts: None,
            key: None,
            prev_hash: String::new(),
            hash: String::new(),
            signature: None,
            signature_previous: None,
        }
    }

    fn year() -> Period {
        Period {
            since: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            until: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    /// The policy of one job "fs" configured with `extra`, in UTC.
    fn job_policy(extra: &str) -> Policy {
        let text = format!(
            "[[job]]\nname = \"fs\"\n{extra}\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n"
        );
        let cfg = crate::config::parse(
            std::path::Path::new("/etc/rv.toml"),
            &text,
            crate::config::Check::Values,
        )
        .unwrap();
        Policy {
            jobs: vec![(cfg.jobs[0].clone(), chrono_tz::UTC)],
            fixed: None,
        }
    }

    /// The gap allowed between passes is the one the overdue alert uses
    /// (`due::due_by` from each pass), at most 90 days without max_interval;
    /// from the period's start to its first pass, max_interval or 90 days.
    /// Day 0 is Wednesday 2025-01-01 03:00 UTC.
    #[rstest]
    #[case::daily_missing_three_days("schedule = \"0 3 * * *\"\ntimeout = \"1h\"", &[0, 4], Some("no passing restore for 4 days (policy 2 days)"))]
    #[case::daily_every_day("schedule = \"0 3 * * *\"\ntimeout = \"1h\"", &[0, 1, 2, 3], None)]
    #[case::weekdays_over_a_weekend("schedule = \"0 3 * * 1-5\"\ntimeout = \"1h\"", &[2, 5, 6], None)]
    #[case::weekdays_missing_monday_and_tuesday("schedule = \"0 3 * * 1-5\"\ntimeout = \"1h\"", &[2, 7], Some("no passing restore for 5 days (policy 4 days)"))]
    #[case::weekly_capped_by_max_interval("schedule = \"0 3 * * 3\"\nmax_interval = \"10d\"", &[0, 12], Some("(policy 10 days)"))]
    #[case::manual_job_default("", &[0, 100], Some("no passing restore for 100 days (policy 90 days)"))]
    #[case::max_interval_beyond_the_default("max_interval = \"180d\"", &[0, 100], None)]
    #[case::yearly_schedule_capped("schedule = \"0 3 1 1 *\"", &[0, 100], Some("(policy 90 days)"))]
    fn gaps_are_judged_by_the_due_by_rule(
        #[case] extra: &str,
        #[case] pass_days: &[i64],
        #[case] shortfall: Option<&str>,
    ) {
        let records: Vec<Record> = pass_days
            .iter()
            .map(|d| rec("fs", *d, Verdict::Pass, None))
            .collect();
        let first = records[0].started_at.with_timezone(&Utc);
        let last = records.last().unwrap().started_at.with_timezone(&Utc);
        let period = Period {
            since: first,
            until: last + chrono::Duration::minutes(1),
        };
        let systems = vec![SystemScope {
            name: "fs".into(),
            owner: None,
            criticality: None,
            jobs: vec!["fs".into()],
            policy: job_policy(extra),
        }];
        let a = assess(&records, &systems, &period, None, period.until);
        let texts: Vec<&str> = a.systems[0]
            .shortfalls
            .iter()
            .map(|s| s.en.as_str())
            .collect();
        match shortfall {
            None => assert!(texts.is_empty(), "{texts:?}"),
            Some(want) => assert!(
                texts.len() == 1 && texts[0].contains(want),
                "{want:?} in {texts:?}"
            ),
        }
    }

    /// A daily job whose first pass is 30 days into the period: the leading
    /// gap has no pass to count the schedule from, so 90 days apply.
    #[test]
    fn the_leading_gap_is_judged_by_the_default() {
        let records = vec![
            rec("fs", 30, Verdict::Pass, None),
            rec("fs", 31, Verdict::Pass, None),
        ];
        let since = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let period = Period {
            since,
            until: records[1].started_at.with_timezone(&Utc) + chrono::Duration::minutes(1),
        };
        let systems = |extra: &str| {
            vec![SystemScope {
                name: "fs".into(),
                owner: None,
                criticality: None,
                jobs: vec!["fs".into()],
                policy: job_policy(extra),
            }]
        };
        let daily = assess(
            &records,
            &systems("schedule = \"0 3 * * *\"\ntimeout = \"1h\""),
            &period,
            None,
            period.until,
        );
        assert!(
            daily.systems[0].shortfalls.is_empty(),
            "{:?}",
            daily.systems[0].shortfalls
        );
        let capped = assess(
            &records,
            &systems("schedule = \"0 3 * * *\"\nmax_interval = \"7d\""),
            &period,
            None,
            period.until,
        );
        assert!(
            capped.systems[0].shortfalls[0]
                .en
                .contains("(policy 7 days), from the period's start"),
            "{:?}",
            capped.systems[0].shortfalls
        );
        // A pass before the period: the rule counts from it, so a daily job
        // that failed for the period's first 30 days falls short.
        let mut with_before = records.clone();
        with_before.insert(0, rec("fs", -1, Verdict::Pass, None));
        let daily = assess(
            &with_before,
            &systems("schedule = \"0 3 * * *\"\ntimeout = \"1h\""),
            &period,
            None,
            period.until,
        );
        let texts: Vec<&str> = daily.systems[0]
            .shortfalls
            .iter()
            .map(|s| s.en.as_str())
            .collect();
        assert!(
            texts.len() == 1
                && texts[0].contains(
                    "no passing restore for 31 days (policy 2 days), from pass fs--1-pass (2024-12-31)"
                ),
            "{texts:?}"
        );
    }

    fn scope_of(jobs: &[&str]) -> Vec<SystemScope> {
        vec![SystemScope {
            name: "Engineering file server".into(),
            owner: Some("IT".into()),
            criticality: Some("high".into()),
            jobs: jobs.iter().map(|s| s.to_string()).collect(),
            policy: Policy::fixed(DEFAULT_POLICY),
        }]
    }

    fn monthly_passes() -> Vec<Record> {
        (0..12)
            .map(|m| rec("fs", m * 30 + 5, Verdict::Pass, None))
            .collect()
    }

    #[rstest]
    #[case::monthly_passes_and_a_drilled_change(
        { let mut r = monthly_passes(); r.push(rec("fs", 100, Verdict::Pass, Some("CHG-1 kernel update"))); r },
        None, 2, "")]
    #[case::a_half_year_without_a_pass(
        (0..6).map(|m| rec("fs", m * 30 + 5, Verdict::Pass, None)).collect(),
        None, 1, "no passing restore for 209.9 days (policy 90 days), from pass fs-155-pass (2025-06-05) to the period's end (2026-01-01)")]
    #[case::a_change_that_was_skipped(
        { let mut r = monthly_passes(); r.push(rec("fs", 200, Verdict::Skipped, Some("CHG-7 firmware"))); r },
        None, 1, "change CHG-7 firmware (2025-07-20) was not drilled to a pass: record fs-200-skipped is skipped")]
    #[case::a_failed_change_closed_by_a_later_pass(
        { let mut r = monthly_passes(); r.push(rec("fs", 201, Verdict::Fail, Some("CHG-8 disk swap"))); r },
        None, 2, "")]
    #[case::a_broken_ledger(monthly_passes(), Some("line 3: record was changed".into()), 1, "the ledger does not verify")]
    #[case::only_errors((0..12).map(|m| rec("fs", m * 30, Verdict::Error, None)).collect(), None, 0, "no real restore in the period")]
    #[case::nothing_at_all(vec![], None, 0, "no real restore in the period")]
    fn no151_assessment(
        #[case] records: Vec<Record>,
        #[case] ledger: Option<String>,
        #[case] score: u8,
        #[case] shortfall: &str,
    ) {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let a = assess(&records, &scope_of(&["fs"]), &year(), ledger, now);
        let s = &a.systems[0];
        assert_eq!(s.score, score, "{:#?}", s.shortfalls);
        assert_eq!(a.overall, score);
        if shortfall.is_empty() {
            assert!(s.shortfalls.is_empty(), "{:#?}", s.shortfalls);
        } else {
            assert!(
                s.shortfalls.iter().any(|f| f.en.contains(shortfall)),
                "{shortfall:?} not in {:#?}",
                s.shortfalls
            );
        }
    }

    #[test]
    fn gaps_count_the_period_edges_and_failures_name_what_closed_them() {
        let records = vec![
            rec("fs", 100, Verdict::Pass, None),
            rec("fs", 150, Verdict::Fail, None),
            rec("fs", 160, Verdict::Pass, None),
        ];
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let a = assess(&records, &scope_of(&["fs"]), &year(), None, now);
        let s = &a.systems[0];
        // From the last pass (day 160, 03:00) to the period's end is the longest gap.
        assert_eq!(s.longest_gap_days, 204.9);
        assert!(s.shortfalls.iter().any(|f| {
            f.en.contains("from the period's start (2025-01-01) to pass fs-100-pass")
        }));
        // Japanese auditors read it in Japanese.
        assert!(s.shortfalls.iter().any(|f| {
            f.ja.contains("期間の開始（2025-01-01）から 合格 fs-100-pass")
        }));
        assert_eq!(s.failure_lines[0].closed_by.as_deref(), Some("fs-160-pass"));
        assert_eq!((s.passes, s.failures, s.real_restores), (2, 1, 3));
    }

    #[test]
    fn an_uncovered_system_scores_zero_and_pulls_the_overall_down() {
        let mut systems = scope_of(&["fs"]);
        systems.push(SystemScope {
            name: "ERP".into(),
            owner: None,
            criticality: None,
            jobs: vec![],
            policy: Policy::fixed(DEFAULT_POLICY),
        });
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let a = assess(&monthly_passes(), &systems, &year(), None, now);
        assert_eq!(a.systems[0].score, 2);
        assert_eq!(a.systems[1].score, 0);
        assert!(
            a.systems[1].shortfalls[0]
                .en
                .contains("no job covers this system")
        );
        assert_eq!(a.overall, 0);
        let md = markdown(&a, Lang::Ja);
        assert!(
            md.contains("リストアテスト報告書")
                && md.contains("リストアジョブの対象になっていません"),
            "{md}"
        );
        let c = csv(&a);
        assert_eq!(c.lines().count(), 3);
        assert!(c.lines().nth(2).unwrap().starts_with("\"ERP\""));
    }
}
