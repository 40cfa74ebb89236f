//! One `[[alert]]`: its sink, events, jobs and repeat interval.

use super::*;

pub(super) fn alert_config(
    cx: &mut Ctx,
    i: usize,
    a: RawAlert,
    jobs: &[Job],
    base: &Path,
) -> Option<AlertSink> {
    let k = |key: &str| format!("alert[{i}].{key}");
    let kind_name = a.kind.get_ref().clone();
    let url = |cx: &mut Ctx, u: Option<Spanned<String>>| -> Option<String> {
        match u {
            Some(u)
                if u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://") =>
            {
                Some(u.into_inner())
            }
            Some(u) => {
                cx.at(u.span(), k("url"), "must be an http:// or https:// URL");
                None
            }
            None => {
                cx.at(
                    a.kind.span(),
                    k("url"),
                    format!("alert type {kind_name:?} needs `url`"),
                );
                None
            }
        }
    };
    let kind = match kind_name.as_str() {
        "webhook" => SinkKind::Webhook {
            url: url(cx, a.url)?,
        },
        "slack" => SinkKind::Slack {
            url: url(cx, a.url)?,
        },
        "alertmanager" => SinkKind::Alertmanager {
            url: url(cx, a.url)?,
        },
        "command" => match a.run {
            Some(r) if !r.get_ref().is_empty() => SinkKind::Command {
                run: r.into_inner(),
            },
            _ => {
                cx.at(
                    a.kind.span(),
                    k("run"),
                    "alert type \"command\" needs `run`, e.g. [\"/usr/local/bin/page-oncall\"]",
                );
                return None;
            }
        },
        "email" => {
            let Some(smtp) = a.smtp else {
                cx.at(
                    a.kind.span(),
                    k("smtp"),
                    "alert type \"email\" needs `smtp = \"host:port\"`",
                );
                return None;
            };
            let (host, port) = match smtp
                .get_ref()
                .rsplit_once(':')
                .map(|(h, p)| (h, p.parse::<u16>()))
            {
                Some((h, Ok(p))) if !h.is_empty() => (h.to_string(), p),
                _ => {
                    cx.at(
                        smtp.span(),
                        k("smtp"),
                        "must be host:port, e.g. \"smtp.example.com:587\"",
                    );
                    return None;
                }
            };
            let tls = match a.tls.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("starttls") => SmtpTls::StartTls,
                Some("tls") => SmtpTls::Tls,
                Some("none") => SmtpTls::None,
                Some(other) => {
                    cx.at(
                        a.tls.as_ref().map(|t| t.span()).unwrap_or(0..0),
                        k("tls"),
                        format!("unknown tls mode {other:?}; expected starttls, tls or none"),
                    );
                    return None;
                }
            };
            let (Some(from), Some(to)) = (a.from, a.to) else {
                cx.at(
                    a.kind.span(),
                    k("to"),
                    "alert type \"email\" needs `from` and `to`",
                );
                return None;
            };
            for addr in std::iter::once(from.get_ref()).chain(to.get_ref().iter()) {
                if addr.parse::<lettre::Address>().is_err() {
                    cx.at(
                        to.span(),
                        k("to"),
                        format!("{addr:?} is not an e-mail address"),
                    );
                }
            }
            SinkKind::Email(EmailSink {
                host,
                port,
                tls,
                credentials_file: a.credentials_file.map(|c| resolve(base, c.get_ref())),
                from: from.into_inner(),
                to: to.into_inner(),
            })
        }
        other => {
            cx.at(
                a.kind.span(),
                k("type"),
                format!(
                    "unknown alert type {other:?}; expected webhook, slack, email, alertmanager or command"
                ),
            );
            return None;
        }
    };
    let mut on = Vec::new();
    for e in a.on.unwrap_or_default() {
        match e.get_ref().as_str() {
            "fail" => on.push(Event::Fail),
            "error" => on.push(Event::Error),
            "overdue" => on.push(Event::Overdue),
            "recovered" => on.push(Event::Recovered),
            other => cx.at(
                e.span(),
                k("on"),
                format!("unknown event {other:?}; expected fail, error, overdue or recovered"),
            ),
        }
    }
    if on.is_empty() {
        on = vec![Event::Fail, Event::Error, Event::Overdue, Event::Recovered];
    }
    let mut names = Vec::new();
    for j in a.jobs.unwrap_or_default() {
        if !jobs.iter().any(|x| &x.name == j.get_ref()) {
            cx.at(
                j.span(),
                k("jobs"),
                format!("no job named {:?}", j.get_ref()),
            );
        }
        names.push(j.into_inner());
    }
    // An unnamed sink is named by what it sends to, not by its place in the
    // file: the alert state keeps what each sink was told under its name, and
    // a reload that adds a sink above it must not make it a new one.
    let name = a.name.map(Spanned::into_inner).unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sink_target(&kind).as_bytes());
        format!("{kind_name}-{}", &hex::encode(digest)[..8])
    });
    Some(AlertSink {
        name,
        kind,
        on,
        jobs: names,
        repeat_interval: duration(cx, a.repeat_interval, k("repeat_interval")),
    })
}

/// What an unnamed sink is named after: where it sends, without a URL's
/// user, password or query (a short hash of it is shown in logs and state).
pub(super) fn sink_target(kind: &SinkKind) -> String {
    let bare = |url: &str| {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or_default();
        format!("{scheme}://{host}/{path}")
    };
    match kind {
        SinkKind::Webhook { url } | SinkKind::Slack { url } | SinkKind::Alertmanager { url } => {
            bare(url)
        }
        SinkKind::Command { run } => run.join("\0"),
        SinkKind::Email(e) => format!("{}:{}|{}|{}", e.host, e.port, e.from, e.to.join(",")),
    }
}
