//! Alerts that reach on-call: `fail`, `error`, `overdue` (no passing drill
//! within the job's interval — a dead-man check that fires even when no drill
//! starts) and `recovered`.
//!
//! Delivery is reliable and never in a drill's way: an alert is written to an
//! outbox in `state_dir` (fsync) before anything is sent; a sender retries it
//! with exponential backoff, across restarts, and deletes it once delivered.
//! One alert per state change; reminders at most every `repeat_interval`.
//! URLs may carry secrets (Slack webhooks do): they are never logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use verifier::{Record, Verdict};

use crate::config::{AlertSink, Config, Event, SinkKind};

/// What an on-call engineer reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub event: Event,
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

/// Per-job alert state, kept in `state_dir/alerts/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JobAlertState {
    /// The last event sent that is still in force (fail, error, overdue).
    active: Option<Event>,
    last_sent: Option<DateTime<Utc>>,
}

pub struct Alerts {
    dir: PathBuf,
    state: Mutex<BTreeMap<String, JobAlertState>>,
    /// Deliveries by sink and outcome, for /metrics.
    pub delivered: Mutex<BTreeMap<(String, &'static str), u64>>,
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

impl Alerts {
    pub fn open(state_dir: &Path) -> std::io::Result<Alerts> {
        let dir = state_dir.join("alerts");
        std::fs::create_dir_all(dir.join("outbox"))?;
        let state = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Alerts {
            dir,
            state: Mutex::new(state),
            delivered: Mutex::new(BTreeMap::new()),
        })
    }

    fn save_state(&self, state: &BTreeMap<String, JobAlertState>) {
        if let Err(e) = write_durably(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state).unwrap_or_default(),
        ) {
            tracing::error!(error = %e, "Could not save the alert state.");
        }
    }

    /// Decides what a new record means for on-call and queues it.
    pub fn observe(&self, cfg: &Config, rec: &Record) {
        let event = match rec.result {
            Verdict::Pass => Event::Recovered,
            Verdict::Fail => Event::Fail,
            Verdict::Error => Event::Error,
            Verdict::Skipped => return,
        };
        let job = cfg.jobs.iter().find(|j| j.name == rec.job);
        self.transition(
            cfg,
            &rec.job,
            job.and_then(|j| j.system.clone()),
            event,
            Some(rec),
            &rec.host,
        );
    }

    /// The dead-man check: jobs with no passing drill within their interval.
    pub fn check_overdue(
        &self,
        cfg: &Config,
        due: &dyn Fn(&crate::config::Job) -> crate::due::Due,
    ) {
        let host = gethostname();
        for job in &cfg.jobs {
            if due(job).overdue {
                self.transition(
                    cfg,
                    &job.name,
                    job.system.clone(),
                    Event::Overdue,
                    None,
                    &host,
                );
            }
        }
    }

    fn transition(
        &self,
        cfg: &Config,
        job: &str,
        system: Option<String>,
        event: Event,
        rec: Option<&Record>,
        host: &str,
    ) {
        let now = Utc::now();
        let mut state = self.state.lock().expect("alert state");
        let st = state.entry(job.to_string()).or_default();
        let send = match event {
            Event::Recovered => st.active.is_some(),
            _ if st.active == Some(event) => {
                // Still the same problem: a reminder, at most every repeat_interval.
                return self.remind(cfg, job, system, event, rec, host, &mut state);
            }
            // A failing job going overdue, or a changed problem: a new alert.
            _ => true,
        };
        if !send {
            return;
        }
        st.active = if event == Event::Recovered {
            None
        } else {
            Some(event)
        };
        st.last_sent = Some(now);
        let alert = make_alert(event, job, system, host, rec);
        self.save_state(&state);
        drop(state);
        self.enqueue(cfg, &alert, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn remind(
        &self,
        cfg: &Config,
        job: &str,
        system: Option<String>,
        event: Event,
        rec: Option<&Record>,
        host: &str,
        state: &mut BTreeMap<String, JobAlertState>,
    ) {
        let now = Utc::now();
        let st = state.entry(job.to_string()).or_default();
        let last = st.last_sent.unwrap_or(now);
        let due: Vec<&AlertSink> = cfg
            .alerts
            .iter()
            .filter(|s| {
                s.repeat_interval
                    .is_some_and(|r| (now - last).to_std().unwrap_or_default() >= r)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        st.last_sent = Some(now);
        let alert = make_alert(event, job, system, host, rec);
        self.save_state(state);
        let names: Vec<String> = due.iter().map(|s| s.name.clone()).collect();
        self.enqueue(cfg, &alert, Some(&names));
    }

    /// Writes one outbox item per interested sink; durable before it returns.
    fn enqueue(&self, cfg: &Config, alert: &Alert, only: Option<&[String]>) {
        for sink in &cfg.alerts {
            if !sink.on.contains(&alert.event)
                || !(sink.jobs.is_empty() || sink.jobs.contains(&alert.job))
                || only.is_some_and(|o| !o.contains(&sink.name))
            {
                continue;
            }
            let item = Item {
                alert: alert.clone(),
                sink: sink.name.clone(),
                attempts: 0,
                next_attempt: Utc::now(),
                last_error: None,
            };
            let path = self
                .dir
                .join("outbox")
                .join(format!("{}.{}.json", alert.id, sink.name));
            match write_durably(&path, &serde_json::to_vec_pretty(&item).unwrap_or_default()) {
                Ok(()) => {
                    tracing::info!(job = %alert.job, event = alert.event.as_str(), sink = %sink.name, "Alert queued.")
                }
                Err(e) => {
                    tracing::error!(job = %alert.job, sink = %sink.name, error = %e, "Could not queue an alert.")
                }
            }
        }
    }

    /// Sends every due outbox item once; failures are retried later with
    /// exponential backoff (5 s doubling, at most 1 h).
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
        for path in paths {
            let Some(mut item) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Item>(&b).ok())
            else {
                continue;
            };
            if item.next_attempt > Utc::now() {
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
                    let _ =
                        write_durably(&path, &serde_json::to_vec_pretty(&item).unwrap_or_default());
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

fn make_alert(
    event: Event,
    job: &str,
    system: Option<String>,
    host: &str,
    rec: Option<&Record>,
) -> Alert {
    let verdict = match event {
        Event::Fail => "FAIL",
        Event::Error => "ERROR",
        Event::Overdue => "OVERDUE",
        Event::Recovered => "RECOVERED",
    };
    let first = rec
        .and_then(|r| r.reasons.first().cloned())
        .unwrap_or_else(|| match event {
            Event::Overdue => "no passing restore drill within the job's interval".into(),
            Event::Recovered => "the drill passed again".into(),
            _ => String::new(),
        });
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
        id: verifier::new_id(),
        event,
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
                    "severity": if a.event == Event::Overdue { "warning" } else { "critical" },
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
                Event::Overdue => {
                    serde_json::json!([{ "labels": labels("RestoreDrillOverdue"), "annotations": annotations, "startsAt": a.at }])
                }
                _ => {
                    serde_json::json!([{ "labels": labels("RestoreDrillFailed"), "annotations": annotations, "startsAt": a.at }])
                }
            };
            post(&format!("{base}/api/v2/alerts"), &body)
        }
        SinkKind::Email(e) => send_mail(e, a),
        SinkKind::Command { run } => {
            let mut opts = verifier::process::StepOptions::in_dir(&std::env::temp_dir());
            opts.stdin = Some(serde_json::to_vec(a).unwrap_or_default());
            match verifier::process::run_step(
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
    let mut m = Message::builder()
        .from(
            e.from
                .parse::<Mailbox>()
                .map_err(|err| format!("from: {err}"))?,
        )
        .subject(subject);
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

/// `alert test [NAME]`: one test alert through each (or one) sink.
pub fn test_alert(cfg: &Config) -> Alert {
    let mut a = make_alert(
        Event::Fail,
        "restore-verifier-test",
        Some("alert test".into()),
        &gethostname(),
        None,
    );
    a.summary =
        "restore-verifier-test: TEST — this is a test alert from `restore-verifier alert test`"
            .into();
    a.details
        .push_str(&format!("config {}\n", cfg.path.display()));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

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
