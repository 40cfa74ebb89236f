//! Alerts that reach on-call: `fail`, `error`, `overdue` (no passing drill
//! within the job's interval — a dead-man check that fires even when no drill
//! starts) and `recovered`.
//!
//! Delivery is reliable and never in a drill's way: an alert is written to an
//! outbox in `state_dir` (fsync) before anything is sent; a sender retries it
//! with exponential backoff, across restarts, and deletes it once delivered.
//! One alert per problem and sink ([`crate::alert_state`]); reminders only
//! by the sink's `repeat_interval`.
//! URLs may carry secrets (Slack webhooks do): they are never logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use verifier::{Record, Verdict};

use crate::alert_state::{self, Happening, JobState, Kind, Outgoing};
use crate::config::{AlertSink, Config, Event, SinkKind};
use crate::due::Due;

mod message;
mod send;
#[cfg(test)]
mod tests;

pub use message::test_alert;
use message::{gethostname, make_alert};
pub use send::{keeps_one_alert, refresh_interval, send};

/// What an on-call engineer reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub event: Event,
    /// `problem` (the first alert of a problem to this sink), `reminder`
    /// (by `repeat_interval`), `recovered`, or `test`.
    #[serde(default = "problem_kind")]
    pub kind: String,
    /// The problem alert a reminder or `recovered` follows (its `id`).
    #[serde(default)]
    pub follows: Option<String>,
    pub job: String,
    pub system: Option<String>,
    pub host: String,
    pub at: DateTime<Utc>,
    /// One line: "fileserver: FAIL — content mismatch: finance/ledger.xlsx".
    pub summary: String,
    /// Several lines with everything needed to act.
    pub details: String,
    pub record: Option<AlertRecord>,
}

fn problem_kind() -> String {
    "problem".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: String,
    pub seq: u64,
    pub result: Verdict,
    pub reasons: Vec<String>,
    pub backup_id: Option<String>,
    pub backup_age_seconds: Option<i64>,
    pub rpo_seconds: Option<u64>,
    pub duration_seconds: f64,
    pub rto_seconds: Option<u64>,
    /// The command that shows the whole record.
    pub show: String,
}

/// A queued delivery of one alert to one sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    alert: Alert,
    sink: String,
    attempts: u32,
    next_attempt: DateTime<Utc>,
    last_error: Option<String>,
}

pub struct Alerts {
    dir: PathBuf,
    /// Per job, the one alert state ([`crate::alert_state`]), as last read
    /// from `state_dir/alerts/state.json` (under its lock).
    state: Mutex<BTreeMap<String, JobState>>,
    /// Deliveries by sink and outcome, for /metrics.
    pub delivered: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Sinks whose last delivery failed, not tried again until then.
    down_until: Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// What an alert's text is made from besides the problem: the drill's
/// record, or for the watch, the job's due date.
enum Context<'a> {
    Record(&'a Record),
    Due(&'a Due),
}

impl Alerts {
    pub fn open(state_dir: &Path) -> std::io::Result<Alerts> {
        let dir = state_dir.join("alerts");
        std::fs::create_dir_all(dir.join("outbox"))?;
        Ok(Alerts {
            dir,
            state: Mutex::new(BTreeMap::new()),
            delivered: Mutex::new(BTreeMap::new()),
            down_until: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Runs `f` on the alert state with `state.json` locked and read afresh:
    /// the agent and a one-off `run` share it, and neither undoes the
    /// other's step. Saved when `f` changed it.
    fn with_state(&self, f: impl FnOnce(&mut BTreeMap<String, JobState>)) {
        use rustix::fs::{FlockOperation, flock};
        let mut cached = self.state.lock().expect("alert state");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("state.lock"));
        let _held = match lock {
            Ok(l) => flock(&l, FlockOperation::LockExclusive).ok().map(|()| l),
            Err(e) => {
                tracing::error!(error = %e, "Could not lock the alert state.");
                None
            }
        };
        let path = self.dir.join("state.json");
        match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(s) => *cached = s,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "The alert state does not parse; going on from memory.")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cached.clear(),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "Could not read the alert state; going on from memory.")
            }
        }
        let before = cached.clone();
        f(&mut cached);
        if *cached != before {
            let saved = serde_json::to_vec_pretty(&*cached)
                .map_err(std::io::Error::other)
                .and_then(|bytes| {
                    use std::io::Write;
                    let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
                    tmp.write_all(&bytes)?;
                    tmp.as_file().sync_all()?;
                    tmp.persist(&path).map_err(|e| e.error)?;
                    std::fs::File::open(&self.dir)?.sync_all()
                });
            if let Err(e) = saved {
                tracing::error!(error = %e, "Could not save the alert state.");
            }
        }
    }

    /// What a new record means for on-call, queued.
    pub fn observe(&self, cfg: &Config, rec: &Record) {
        // A job no longer configured alerts nobody.
        if !cfg.jobs.iter().any(|j| j.name == rec.job) {
            return;
        }
        self.with_state(|state| {
            self.apply(
                cfg,
                state,
                &rec.job,
                Happening::Drill(rec.result),
                Context::Record(rec),
                &rec.host,
            )
        });
    }

    /// The agent's watch, every second: the dead-man check (jobs with no
    /// passing drill within their interval) and the reminders that are due.
    pub fn watch(&self, cfg: &Config, due: &dyn Fn(&crate::config::Job) -> Due) {
        let host = gethostname();
        self.with_state(|state| {
            // A job taken out of the config takes its problem with it.
            state.retain(|name, _| cfg.jobs.iter().any(|j| &j.name == name));
            for job in &cfg.jobs {
                let d = due(job);
                self.apply(
                    cfg,
                    state,
                    &job.name,
                    Happening::Watch { overdue: d.overdue },
                    Context::Due(&d),
                    &host,
                );
            }
        });
    }

    /// Runs the one rule for one job and queues what it says to send.
    fn apply(
        &self,
        cfg: &Config,
        state: &mut BTreeMap<String, JobState>,
        job: &str,
        happening: Happening,
        cx: Context,
        host: &str,
    ) {
        let sinks: Vec<alert_state::Sink> = cfg
            .alerts
            .iter()
            .filter(|s| s.jobs.is_empty() || s.jobs.iter().any(|j| j == job))
            .map(|s| alert_state::Sink {
                name: &s.name,
                on: &s.on,
                repeat_interval: refresh_interval(s),
                resolves: keeps_one_alert(s),
            })
            .collect();
        let prev = state.get(job).cloned().unwrap_or_default();
        let (mut next, sends) =
            alert_state::step(&prev, happening, &sinks, Utc::now(), &mut verifier::new_id);
        if next == prev {
            return;
        }
        let system = cfg
            .jobs
            .iter()
            .find(|j| j.name == job)
            .and_then(|j| j.system.clone());
        for send in &sends {
            let mut alert = make_alert(send, job, system.clone(), host, &cx, cfg.agent.timezone);
            // A sink that keeps one alert is posted the problem's own text
            // again, so its reasons stay on it.
            let keeps = cfg
                .alerts
                .iter()
                .find(|s| s.name == send.sink)
                .is_some_and(keeps_one_alert);
            if keeps && let Some(p) = next.problem.as_mut() {
                match send.kind {
                    Kind::Problem => {
                        if let Some(t) = p.told.get_mut(&send.sink) {
                            t.text = Some((alert.summary.clone(), alert.details.clone()));
                        }
                    }
                    Kind::Reminder => {
                        if let Some((summary, details)) =
                            p.told.get(&send.sink).and_then(|t| t.text.clone())
                        {
                            alert.summary = summary;
                            alert.details = details;
                        }
                    }
                    Kind::Recovered => {}
                }
            }
            // A problem alert that could not be queued (a full disk) is not
            // told: the sink hears of the problem at its next event.
            if !self.enqueue(cfg, &alert, &send.sink)
                && send.kind == Kind::Problem
                && let Some(p) = next.problem.as_mut()
            {
                p.told.remove(&send.sink);
            }
        }
        if next.problem.is_none() {
            state.remove(job);
        } else {
            state.insert(job.to_string(), next);
        }
    }

    /// Writes the outbox item for one sink; durable before it returns.
    /// Whether it was written.
    fn enqueue(&self, cfg: &Config, alert: &Alert, sink: &str) -> bool {
        let Some(conf) = cfg.alerts.iter().find(|s| s.name == sink) else {
            return false;
        };
        let keeps = keeps_one_alert(conf);
        let item = Item {
            alert: alert.clone(),
            sink: sink.to_string(),
            attempts: 0,
            next_attempt: Utc::now(),
            last_error: None,
        };
        let path = self
            .dir
            .join("outbox")
            .join(format!("{}.{sink}.json", alert.id));
        match write_durably(&path, &serde_json::to_vec_pretty(&item).unwrap_or_default()) {
            Ok(()) => {
                // A sink that keeps one alert per job takes the newest state:
                // what is still waiting for it of this job is superseded, so
                // a post from before a `recovered` never fires the alert
                // again. Dropped only once the new one is queued.
                if keeps {
                    self.drop_pending(&alert.job, sink, &path);
                }
                tracing::info!(job = %alert.job, event = alert.event.as_str(), kind = %alert.kind, sink = %sink, "Alert queued.");
                true
            }
            Err(e) => {
                tracing::error!(job = %alert.job, sink = %sink, error = %e, "Could not queue an alert.");
                false
            }
        }
    }

    /// Removes the outbox items of `job` waiting for `sink`, but `keep`.
    fn drop_pending(&self, job: &str, sink: &str, keep: &Path) {
        let Ok(rd) = std::fs::read_dir(self.dir.join("outbox")) else {
            return;
        };
        let suffix = format!(".{sink}.json");
        for path in rd.flatten().map(|e| e.path()) {
            if path == keep {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.is_some_and(|n| n.ends_with(&suffix)) {
                continue;
            }
            let pending = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Item>(&b).ok());
            if pending.is_some_and(|i| i.sink == sink && i.alert.job == job) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Sends every due outbox item once; failures are retried later with
    /// exponential backoff (5 s doubling, at most 1 h). After one failure a
    /// sink is not tried again in the same pass.
    pub fn deliver_due(&self, cfg: &Config) {
        let Ok(rd) = std::fs::read_dir(self.dir.join("outbox")) else {
            return;
        };
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut down = self.down_until.lock().expect("down_until").clone();
        down.retain(|_, until| *until > Utc::now());
        for path in paths {
            let Some(mut item) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Item>(&b).ok())
            else {
                continue;
            };
            if item.next_attempt > Utc::now() || down.contains_key(&item.sink) {
                continue;
            }
            let Some(sink) = cfg.alerts.iter().find(|s| s.name == item.sink) else {
                tracing::warn!(sink = %item.sink, "Dropping an alert for a sink that is no longer configured.");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            match send(sink, &item.alert) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    down.remove(&sink.name);
                    *self
                        .delivered
                        .lock()
                        .expect("delivered")
                        .entry((sink.name.clone(), "ok"))
                        .or_default() += 1;
                    tracing::info!(job = %item.alert.job, event = item.alert.event.as_str(), sink = %sink.name, attempts = item.attempts + 1, "Alert delivered.");
                }
                Err(why) => {
                    item.attempts += 1;
                    let backoff =
                        Duration::from_secs(5 * 2u64.saturating_pow(item.attempts.min(10) - 1))
                            .min(Duration::from_secs(3600));
                    item.next_attempt =
                        Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                    item.last_error = Some(why.clone());
                    // The sink's other items wait as long as this one.
                    down.insert(item.sink.clone(), item.next_attempt);
                    // Superseded meanwhile (a newer post queued for an
                    // Alertmanager sink): not put back.
                    if path.exists() {
                        let _ = write_durably(
                            &path,
                            &serde_json::to_vec_pretty(&item).unwrap_or_default(),
                        );
                    }
                    *self
                        .delivered
                        .lock()
                        .expect("delivered")
                        .entry((sink.name.clone(), "failed"))
                        .or_default() += 1;
                    tracing::warn!(job = %item.alert.job, sink = %sink.name, attempts = item.attempts, retry_in = ?backoff, error = %why, "Alert delivery failed; will retry.");
                }
            }
        }
        *self.down_until.lock().expect("down_until") = down;
    }

    /// Items waiting in the outbox.
    pub fn queued(&self) -> usize {
        std::fs::read_dir(self.dir.join("outbox"))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    }
}
