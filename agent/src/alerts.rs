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

fn gethostname() -> String {
    verifier::DrillEnv::new("/", "/").host
}

fn when(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The alert one [`Outgoing`] of the rule stands for.
fn make_alert(
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

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// "https://hooks.slack.com/services/T0/B0/secret" → "https://hooks.slack.com/…":
/// enough to say where, never the secret.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(url)".into(),
    }
}

fn post(url: &str, body: &serde_json::Value) -> Result<(), String> {
    match http().post(url).send_json(body) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "{} answered HTTP {}",
            redact(url),
            r.status().as_u16()
        )),
        // ureq's error text can quote the URL: say only where it went.
        Err(e) => Err(format!("{}: {}", redact(url), error_kind(&e))),
    }
}

fn error_kind(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        _ => "request failed".into(),
    }
}

/// How often a firing Alertmanager alert is posted again while its problem
/// is open; each post says it ends [`ALERTMANAGER_ENDS_AFTER`] later.
pub const ALERTMANAGER_REFRESH: Duration = Duration::from_secs(10 * 60);
/// Long enough that Alertmanager never resolves an open problem on its own
/// (its `resolve_timeout` applies only to alerts without `endsAt`) between
/// re-posts by the agent, or between a daily `run`'s failing drills.
pub const ALERTMANAGER_ENDS_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(36);

/// Whether a sink keeps one alert per job, fired until it is resolved
/// (Alertmanager), rather than taking messages.
pub fn keeps_one_alert(sink: &AlertSink) -> bool {
    matches!(sink.kind, SinkKind::Alertmanager { .. })
}

/// The interval of a sink's reminders: its `repeat_interval`; an
/// Alertmanager sink's is at most [`ALERTMANAGER_REFRESH`], since
/// Alertmanager keeps an alert only while it is posted again (it sends
/// notifications by its own `repeat_interval`, so re-posts page nobody).
pub fn refresh_interval(sink: &AlertSink) -> Option<Duration> {
    match sink.kind {
        SinkKind::Alertmanager { .. } => Some(
            sink.repeat_interval
                .map_or(ALERTMANAGER_REFRESH, |r| r.min(ALERTMANAGER_REFRESH)),
        ),
        _ => sink.repeat_interval,
    }
}

/// Delivers one alert to one sink.
pub fn send(sink: &AlertSink, a: &Alert) -> Result<(), String> {
    match &sink.kind {
        SinkKind::Webhook { url } => post(url, &serde_json::to_value(a).unwrap_or_default()),
        SinkKind::Slack { url } => post(
            url,
            &serde_json::json!({ "text": format!("*{}*\n```{}```", a.summary, a.details) }),
        ),
        SinkKind::Alertmanager { url } => {
            let base = url.trim_end_matches('/');
            let labels = |name: &str| {
                serde_json::json!({
                    "alertname": name,
                    "job": a.job,
                    "system": a.system.clone().unwrap_or_default(),
                    "host": a.host,
                    // By name, not event: `recovered` must carry the labels
                    // each alert was posted with, or it resolves nothing.
                    "severity": match name {
                        "RestoreDrillOverdue" => "warning",
                        "RestoreVerifierTest" => "none",
                        _ => "critical",
                    },
                    "service": "restore-verifier",
                })
            };
            let annotations = serde_json::json!({ "summary": a.summary, "description": a.details });
            let body = match a.event {
                // Resolve whatever was firing for this job.
                Event::Recovered => serde_json::json!([
                    { "labels": labels("RestoreDrillFailed"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at },
                    { "labels": labels("RestoreDrillOverdue"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at },
                ]),
                // Each firing post also resolves the other drill alert: one
                // problem fires one of them, so what is left of an earlier
                // problem (its `recovered` superseded) ends here.
                Event::Overdue => serde_json::json!([
                    { "labels": labels("RestoreDrillOverdue"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at + ALERTMANAGER_ENDS_AFTER },
                    { "labels": labels("RestoreDrillFailed"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at },
                ]),
                // Its own name, resolved after five minutes: routes and
                // inhibitions for the drill alerts never see it.
                Event::Test => serde_json::json!([{
                    "labels": labels("RestoreVerifierTest"),
                    "annotations": annotations,
                    "startsAt": a.at,
                    "endsAt": a.at + chrono::Duration::minutes(5),
                }]),
                _ => serde_json::json!([
                    { "labels": labels("RestoreDrillFailed"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at + ALERTMANAGER_ENDS_AFTER },
                    { "labels": labels("RestoreDrillOverdue"), "annotations": annotations, "startsAt": a.at, "endsAt": a.at },
                ]),
            };
            post(&format!("{base}/api/v2/alerts"), &body)
        }
        SinkKind::Email(e) => send_mail(e, a),
        SinkKind::Command { run } => {
            let mut opts = verifier::drill::process::StepOptions::in_dir(&std::env::temp_dir());
            opts.stdin = Some(serde_json::to_vec(a).unwrap_or_default());
            match verifier::drill::process::run_step(
                run,
                &opts,
                &verifier::Deadline::after(Duration::from_secs(60)),
            ) {
                Ok(o) if o.success() => Ok(()),
                Ok(o) => Err(format!(
                    "{} failed ({}): {}",
                    run[0],
                    o.status_text(),
                    o.last_words()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `<alert-id@host>`, with the host cut to what a Message-ID may hold.
fn message_id(alert: &str, host: &str) -> String {
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    let host = if host.is_empty() {
        "restore-verifier"
    } else {
        &host
    };
    format!("<{alert}@{host}>")
}

fn send_mail(e: &crate::config::EmailSink, a: &Alert) -> Result<(), String> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};
    let subject = format!("[restore-verifier] {}", a.summary.replace(" — ", " - "));
    let text = format!("{}\n\n{}", a.summary, a.details);
    let html = format!(
        "<html><body><h3>{}</h3><pre>{}</pre></body></html>",
        html_escape(&a.summary),
        html_escape(&a.details)
    );
    // Message-ID from the alert's id: a reminder or `recovered` names its
    // problem alert's, so mail clients thread them under it.
    let mut m = Message::builder()
        .message_id(Some(message_id(&a.id, &a.host)))
        .date(a.at.into())
        .from(
            e.from
                .parse::<Mailbox>()
                .map_err(|err| format!("from: {err}"))?,
        )
        .subject(subject);
    if let Some(first) = &a.follows {
        m = m
            .in_reply_to(message_id(first, &a.host))
            .references(message_id(first, &a.host));
    }
    for to in &e.to {
        m = m.to(to
            .parse::<Mailbox>()
            .map_err(|err| format!("to {to}: {err}"))?);
    }
    let msg = m
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|err| err.to_string())?;
    let builder = match e.tls {
        crate::config::SmtpTls::None => SmtpTransport::builder_dangerous(&e.host),
        crate::config::SmtpTls::StartTls => {
            SmtpTransport::starttls_relay(&e.host).map_err(|err| err.to_string())?
        }
        crate::config::SmtpTls::Tls => {
            SmtpTransport::relay(&e.host).map_err(|err| err.to_string())?
        }
    };
    let mut builder = builder.port(e.port).timeout(Some(Duration::from_secs(20)));
    if let Some(f) = &e.credentials_file {
        let raw = std::fs::read_to_string(f)
            .map_err(|err| format!("credentials_file {}: {err}", f.display()))?;
        let raw = raw.trim_end();
        let (user, pass) = raw
            .split_once('\n')
            .or_else(|| raw.split_once(':'))
            .ok_or_else(|| format!("credentials_file {} must hold user:password", f.display()))?;
        builder = builder.credentials(Credentials::new(
            user.trim().to_string(),
            pass.trim().to_string(),
        ));
    }
    builder
        .build()
        .send(&msg)
        .map(|_| ())
        .map_err(|err| format!("SMTP {}:{}: {err}", e.host, e.port))
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

#[cfg(test)]
mod tests {
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
}
