//! The agent's HTTP API: health, jobs, records, change-triggered drills, and
//! Prometheus metrics. POST endpoints need the bearer token from
//! `api_token_file`; without that file they are disabled, not open.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use verifier::{Trigger, TriggerKind};

use crate::state::{Agent, Pending, Submitted};
use crate::{drills, evidence};

type Shared = Arc<Agent>;

pub fn router(agent: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/jobs", get(jobs))
        .route("/v1/records", get(records))
        .route("/v1/records/{id}", get(record))
        .route("/v1/jobs/{name}/drills", post(trigger))
        .route("/metrics", get(metrics))
        .with_state(agent)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn healthz(State(agent): State<Shared>) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "jobs": agent.config().jobs.len(),
        "running": agent.running.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn jobs(State(agent): State<Shared>) -> Response {
    let cfg = agent.config();
    let now = Utc::now();
    let states = agent.jobs.lock().expect("jobs lock").clone();
    let list: Vec<_> = cfg
        .jobs
        .iter()
        .map(|j| {
            let st = states.get(&j.name).cloned().unwrap_or_default();
            let next = j.schedule.as_ref().and_then(|(_, s)| {
                s.after(&now.with_timezone(&cfg.agent.timezone))
                    .next()
                    .map(|t| t.to_rfc3339())
            });
            let due = st.due(j, cfg.agent.timezone, agent.started, now);
            json!({
                "name": j.name,
                "system": j.system,
                "schedule": j.schedule.as_ref().map(|(e, _)| e),
                "next_run": next,
                "max_interval_seconds": j.max_interval.map(|d| d.as_secs()),
                // The interval in force: max_interval, else twice the
                // schedule's period.
                "interval_seconds": due.interval.map(|d| d.as_secs()),
                "due_by": due.by.map(|t| t.with_timezone(&cfg.agent.timezone).to_rfc3339()),
                "overdue": due.overdue,
                "running": st.busy,
                "last": st.last,
                "last_pass_at": st.last_pass,
                "totals": st.totals,
            })
        })
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
struct RecordQuery {
    job: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

async fn records(State(agent): State<Shared>, Query(q): Query<RecordQuery>) -> Response {
    let cfg = agent.config();
    let tz = cfg.agent.timezone;
    let parse = |s: &Option<String>, end| {
        s.as_deref()
            .map(|s| evidence::parse_date(s, tz, end))
            .transpose()
    };
    let (since, until) = match (parse(&q.since, false), parse(&q.until, true)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let filter = evidence::Filter {
        job: q.job,
        since,
        until,
    };
    let ledger = drills::ledger(&cfg);
    let res = tokio::task::spawn_blocking(
        move || -> Result<Vec<verifier::Record>, verifier::LedgerError> {
            let mut out = Vec::new();
            for r in ledger.records()? {
                let r = r?;
                if filter.keeps(&r) {
                    out.push(r);
                }
            }
            Ok(out)
        },
    )
    .await;
    match res {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A record by id; 202 with its state while it is queued or running.
async fn record(State(agent): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some((job, state)) = agent
        .pending
        .lock()
        .expect("pending lock")
        .get(&id)
        .cloned()
    {
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "job": job, "state": state })),
        )
            .into_response();
    }
    let ledger = drills::ledger(&agent.config());
    let found = tokio::task::spawn_blocking(move || -> Option<verifier::Record> {
        ledger
            .records()
            .ok()?
            .filter_map(Result::ok)
            .find(|r| r.id == id)
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such record"),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrillRequest {
    reason: Option<String>,
}

async fn trigger(
    State(agent): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match agent.token_matches(presented) {
        None => {
            return error(
                StatusCode::FORBIDDEN,
                "POST endpoints are disabled: set api_token_file in [agent] to enable them",
            );
        }
        Some(false) => {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": "missing or wrong bearer token" })),
            )
                .into_response();
        }
        Some(true) => {}
    }
    let req: DrillRequest = if body.is_empty() {
        DrillRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "body must be JSON like {{\"reason\": \"CHG-1234 kernel update\"}}: {e}"
                    ),
                );
            }
        }
    };
    let trigger = Trigger {
        kind: TriggerKind::Change,
        reason: req.reason,
        scheduled_for: None,
    };
    match agent.submit(&name, trigger).await {
        Submitted::Queued(id) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "job": name, "state": Pending::Queued, "poll": format!("/v1/records/{id}") })),
        )
            .into_response(),
        Submitted::Skipped { skipped, running } => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": "a drill of this job is already queued or running; this request was recorded as skipped",
                "running": running,
                "skipped": skipped,
            })),
        )
            .into_response(),
        Submitted::UnknownJob => error(StatusCode::NOT_FOUND, format!("no job named {name:?}")),
    }
}

async fn metrics(State(agent): State<Shared>) -> Response {
    match crate::metrics::render(&agent) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
