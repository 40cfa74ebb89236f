//! Delivering one alert to a sink: webhook, Slack, Alertmanager, a command
//! or mail. URLs may carry secrets: only `redact`ed forms are shown.

use super::*;

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
