//! Prometheus metrics, rendered from the agent's job state at each scrape.
//!
//! The job a series is about is the `drill_job` label: Prometheus sets `job`
//! (and `instance`) on every scraped series itself.

use std::sync::atomic::Ordering;

use chrono::Utc;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::state::Agent;

const RESULTS: [&str; 4] = ["pass", "fail", "error", "skipped"];

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

pub fn render(agent: &Agent) -> prometheus::Result<String> {
    let reg = Registry::new();
    let last_run = gauge(
        &reg,
        "restore_verifier_last_run_timestamp_seconds",
        "Start time of the job's last drill that ran.",
        &["drill_job"],
    )?;
    let last_success = gauge(
        &reg,
        "restore_verifier_last_success_timestamp_seconds",
        "Start time of the job's last passing drill.",
        &["drill_job"],
    )?;
    let last_result = gauge(
        &reg,
        "restore_verifier_last_result",
        "1 for the result of the job's last drill that ran, 0 for the others.",
        &["drill_job", "result"],
    )?;
    let duration = gauge(
        &reg,
        "restore_verifier_drill_duration_seconds",
        "Restore plus verify time of the job's last drill.",
        &["drill_job"],
    )?;
    let age = gauge(
        &reg,
        "restore_verifier_backup_age_seconds",
        "Age of the backup at the job's last drill.",
        &["drill_job"],
    )?;
    let bytes = gauge(
        &reg,
        "restore_verifier_verified_bytes",
        "Bytes content-checked by the job's last drill.",
        &["drill_job"],
    )?;
    let files = gauge(
        &reg,
        "restore_verifier_verified_files",
        "Files compared by the job's last drill.",
        &["drill_job"],
    )?;
    let overdue = gauge(
        &reg,
        "restore_verifier_overdue",
        "1 when the job has had no passing drill within its interval (max_interval, else twice its schedule's period).",
        &["drill_job"],
    )?;
    let rpo = gauge(
        &reg,
        "restore_verifier_rpo_seconds",
        "The job's configured RPO: the oldest a backup may be.",
        &["drill_job"],
    )?;
    let totals = IntCounterVec::new(
        Opts::new(
            "restore_verifier_drills_total",
            "Drills recorded, by result.",
        ),
        &["drill_job", "result"],
    )?;
    reg.register(Box::new(totals.clone()))?;
    let running = IntGauge::new("restore_verifier_drills_running", "Drills running now.")?;
    reg.register(Box::new(running.clone()))?;
    running.set(agent.running.load(Ordering::SeqCst) as i64);

    let delivered = IntCounterVec::new(
        Opts::new(
            "restore_verifier_alerts_total",
            "Alert deliveries, by sink and outcome (ok, failed).",
        ),
        &["sink", "outcome"],
    )?;
    reg.register(Box::new(delivered.clone()))?;
    for ((sink, outcome), n) in agent.alerts.delivered.lock().expect("delivered").iter() {
        delivered
            .with_label_values(&[sink.as_str(), outcome])
            .inc_by(*n);
    }
    let queued = IntGauge::new(
        "restore_verifier_alerts_queued",
        "Alerts waiting in the outbox.",
    )?;
    reg.register(Box::new(queued.clone()))?;
    queued.set(agent.alerts.queued() as i64);

    if let Some(check) = agent.ledger_check() {
        let intact = IntGauge::new(
            "restore_verifier_ledger_intact",
            "1 when the ledger's hash chain (and signatures, with a key) verified at the last check, else 0.",
        )?;
        reg.register(Box::new(intact.clone()))?;
        intact.set(i64::from(check.intact));
        let when = prometheus::Gauge::new(
            "restore_verifier_ledger_checked_timestamp_seconds",
            "When the agent last verified its ledger.",
        )?;
        reg.register(Box::new(when.clone()))?;
        when.set(check.at.timestamp_millis() as f64 / 1000.0);
    }

    let cfg = agent.config();
    let states = agent.jobs.lock().expect("jobs lock").clone();
    let now = Utc::now();
    for job in &cfg.jobs {
        let name = job.name.as_str();
        let st = states.get(name).cloned().unwrap_or_default();
        for r in RESULTS {
            totals
                .with_label_values(&[name, r])
                .inc_by(st.totals.get(r).copied().unwrap_or(0));
        }
        if let Some(r) = job.rpo {
            rpo.with_label_values(&[name]).set(r.as_secs_f64());
        }
        overdue.with_label_values(&[name]).set(
            if st.due(job, cfg.agent.timezone, agent.started, now).overdue {
                1.0
            } else {
                0.0
            },
        );
        if let Some(t) = st.last_pass {
            last_success
                .with_label_values(&[name])
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(l) = &st.last {
            last_run
                .with_label_values(&[name])
                .set(l.started_at.timestamp_millis() as f64 / 1000.0);
            for r in &RESULTS[..3] {
                last_result
                    .with_label_values(&[name, r])
                    .set(if l.result.as_str() == *r { 1.0 } else { 0.0 });
            }
            duration.with_label_values(&[name]).set(l.duration_seconds);
            if let Some(a) = l.backup_age_seconds {
                age.with_label_values(&[name]).set(a as f64);
            }
            bytes.with_label_values(&[name]).set(l.bytes_checked as f64);
            files
                .with_label_values(&[name])
                .set(l.files_compared as f64);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
