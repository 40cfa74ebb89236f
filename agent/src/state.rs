//! The running agent's state: what it remembers of each job, the drills it
//! has answered for, and the configuration in force. The HTTP API and the
//! metrics read it; the daemon owns and changes it. This module depends on
//! neither of them, so nothing here imports the daemon, the API or the
//! metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, FixedOffset, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use verifier::{Record, Verdict};

use crate::config::{Config, Job};
use crate::drills;

/// What the agent remembers of a job's last drills, for the API and metrics.
#[derive(Debug, Default, Clone)]
pub struct JobState {
    /// The queued or running drill, if any.
    pub busy: Option<String>,
    /// The last drill that ran (not skipped).
    pub last: Option<Summary>,
    pub last_pass: Option<DateTime<FixedOffset>>,
    pub totals: BTreeMap<&'static str, u64>,
    /// Since when the job has been watched: its first record in the ledger,
    /// else when the agent (or the reload that added it) began to watch it.
    /// A job that never passed is due from then.
    pub watching_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub seq: u64,
    pub result: Verdict,
    pub started_at: DateTime<FixedOffset>,
    pub finished_at: DateTime<FixedOffset>,
    pub duration_seconds: f64,
    pub backup_age_seconds: Option<i64>,
    pub bytes_checked: u64,
    pub files_compared: u64,
    pub reasons: Vec<String>,
}

impl JobState {
    pub(crate) fn apply(&mut self, r: &Record) {
        let t = r.started_at.with_timezone(&Utc);
        self.watching_since = Some(self.watching_since.map_or(t, |w| w.min(t)));
        *self.totals.entry(r.result.as_str()).or_default() += 1;
        if r.result == Verdict::Skipped {
            return;
        }
        if r.result == Verdict::Pass {
            self.last_pass = Some(r.started_at);
        }
        self.last = Some(Summary {
            id: r.id.clone(),
            seq: r.seq,
            result: r.result,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_seconds: r.restore.duration_seconds + r.verify.duration_seconds,
            backup_age_seconds: r.backup.age_seconds,
            bytes_checked: r.verify.bytes_checked,
            files_compared: r.verify.files_compared,
            reasons: r.reasons.iter().take(3).cloned().collect(),
        });
    }

    /// When the job is due by, and whether it is overdue (the one rule,
    /// [`crate::due`]); a job that never passed counts from `watching_since`.
    pub fn due(
        &self,
        job: &Job,
        tz: chrono_tz::Tz,
        watching_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> crate::due::Due {
        let last = self.last_pass.map(|t| t.with_timezone(&Utc));
        let since = self.watching_since.unwrap_or(watching_since);
        crate::due::job_due(job, tz, last, since, now)
    }
}

/// A drill the API has answered for but whose record is not written yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    Queued,
    Running,
}

pub struct Agent {
    pub cfg_path: PathBuf,
    pub(crate) cfg: RwLock<Arc<Config>>,
    pub jobs: Mutex<BTreeMap<String, JobState>>,
    pub pending: Mutex<HashMap<String, (String, Pending)>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) slot_count: AtomicU32,
    /// Set at shutdown: running drills stop and record `error`.
    pub(crate) stop: Arc<AtomicBool>,
    /// Cancelled at shutdown: schedulers, the HTTP server and queued drills stop.
    pub shutdown: CancellationToken,
    pub(crate) schedulers: Mutex<CancellationToken>,
    pub(crate) tracker: TaskTracker,
    pub running: AtomicUsize,
    pub(crate) token: RwLock<Option<String>>,
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The last verification of the whole ledger.
    pub(crate) ledger_check: Mutex<Option<drills::LedgerCheck>>,
    /// Wakes the publisher to the shared evidence store.
    pub(crate) publish_wanted: tokio::sync::Notify,
    /// When the agent began to watch its jobs: a job that never passed is
    /// due from then.
    pub started: DateTime<Utc>,
}

/// The outcome of asking for a drill.
pub enum Submitted {
    Queued(String),
    /// The job's previous drill is still queued or running; a `skipped` record
    /// was written.
    Skipped {
        skipped: String,
        running: String,
    },
    UnknownJob,
}

impl Agent {
    pub fn ledger_check(&self) -> Option<drills::LedgerCheck> {
        self.ledger_check.lock().expect("ledger check lock").clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.cfg.read().expect("config lock").clone()
    }

    /// Compares a presented bearer token with the configured one in constant time.
    pub fn token_matches(&self, presented: &str) -> Option<bool> {
        let guard = self.token.read().expect("token lock");
        let want = guard.as_ref()?;
        let (a, b) = (want.as_bytes(), presented.as_bytes());
        let diff = a.len() ^ b.len()
            | a.iter()
                .zip(b.iter())
                .fold(0usize, |acc, (x, y)| acc | (x ^ y) as usize);
        Some(diff == 0)
    }
}
