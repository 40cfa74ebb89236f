//! `restore-verifier agent`: the daemon. Schedules every job's cron expression in
//! the configured time zone, runs at most `max_concurrent_drills` drills at once
//! (the rest queue), never lets a job overlap itself (a due run that finds the
//! previous drill still going is recorded as `skipped`), recovers drills a crash
//! interrupted, reloads on SIGHUP, and stops cleanly on SIGTERM/SIGINT.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use verifier::{Record, Trigger, TriggerKind, Verdict};

use crate::config::{self, Check, Config, Job};
use crate::exit::{CliError, Outcome};
use crate::state::{Agent, JobState, Pending, Submitted};
use crate::{drills, schedule};

/// How often the agent verifies its whole ledger.
const LEDGER_CHECK_EVERY: Duration = Duration::from_secs(600);

impl Agent {
    /// Verifies the whole ledger now and then (at start, then every
    /// [`LEDGER_CHECK_EVERY`]), for the metrics: a chain or a signature that
    /// broke is an alert even when no one runs `evidence verify`.
    async fn check_ledger(self: Arc<Self>) {
        loop {
            let cfg = self.config();
            let check = tokio::task::spawn_blocking(move || drills::check_ledger(&cfg));
            if let Ok(check) = check.await {
                if let Some(p) = &check.problem {
                    tracing::error!(problem = %p, "The ledger does not verify; run `restore-verifier evidence verify` for details.");
                }
                *self.ledger_check.lock().expect("ledger check lock") = Some(check);
            }
            tokio::select! {
                _ = tokio::time::sleep(LEDGER_CHECK_EVERY) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Publishes the ledger to the shared evidence store (when one is
    /// configured) in the background: at start, when a record was appended
    /// ([`Agent::published`] wakes it), and every [`LEDGER_CHECK_EVERY`] to
    /// catch up after an outage. Drills, alerts and shutdown never wait for it.
    async fn publish(self: Arc<Self>) {
        loop {
            let cfg = self.config();
            if cfg.store != crate::config::Store::File {
                let path = drills::ledger(&cfg).path().to_path_buf();
                let _ = tokio::task::spawn_blocking(move || {
                    crate::store::publish_quietly(&cfg.store, &path)
                })
                .await;
            }
            tokio::select! {
                _ = self.publish_wanted.notified() => {}
                _ = tokio::time::sleep(LEDGER_CHECK_EVERY) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// A record was appended: publish it soon.
    fn published(&self) {
        self.publish_wanted.notify_one();
    }

    /// Appends a record for a drill that did not run (skipped) or could not
    /// be recorded the normal way (error), under its own id when it has one.
    async fn note(
        &self,
        cfg: &Arc<Config>,
        job: &Job,
        trigger: Trigger,
        id: Option<String>,
        verdict: Verdict,
        reason: String,
    ) -> Option<Record> {
        let cfg = cfg.clone();
        let job = job.clone();
        let name = job.name.clone();
        let res = tokio::task::spawn_blocking(move || {
            let env = drills::env(&cfg, trigger, None);
            let mut rec = verifier::note_record(
                &env,
                id.unwrap_or_else(verifier::new_id),
                &job.name,
                job.system.clone(),
                SystemTime::now(),
                verdict,
                vec![reason],
            );
            drills::signing_ledger(&cfg)?.append(&mut rec)?;
            anyhow::Ok(rec)
        })
        .await;
        match res {
            Ok(Ok(rec)) => {
                tracing::warn!(job = %rec.job, id = %rec.id, reason = rec.reasons[0].as_str(), "Drill not run.");
                self.seen(&rec);
                Some(rec)
            }
            Ok(Err(e)) => {
                tracing::error!(job = %name, error = %e, "Could not record a skipped drill.");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "Recording a skipped drill panicked.");
                None
            }
        }
    }

    /// Queues a drill of `name`, or records it as skipped when the job is busy.
    pub async fn submit(self: &Arc<Self>, name: &str, trigger: Trigger) -> Submitted {
        let cfg = self.config();
        let Some(job) = cfg.jobs.iter().find(|j| j.name == name).cloned() else {
            return Submitted::UnknownJob;
        };
        let id = verifier::new_id();
        let busy = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            let st = jobs.entry(job.name.clone()).or_default();
            match &st.busy {
                Some(running) => Some(running.clone()),
                None => {
                    st.busy = Some(id.clone());
                    None
                }
            }
        };
        if let Some(running) = busy {
            let state = match self.pending.lock().expect("pending lock").get(&running) {
                Some((_, Pending::Running)) => "running",
                _ => "queued",
            };
            let when = trigger
                .scheduled_for
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "now".into());
            let reason = format!(
                "skipped: the previous drill {running} of this job was still {state} when this {} drill was due ({when})",
                kind_name(trigger.kind)
            );
            let skipped = self
                .note(&cfg, &job, trigger, None, Verdict::Skipped, reason)
                .await
                .map(|r| r.id)
                .unwrap_or_default();
            return Submitted::Skipped { skipped, running };
        }
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), (job.name.clone(), Pending::Queued));
        let agent = self.clone();
        let run_id = id.clone();
        self.tracker
            .spawn(async move { agent.execute(cfg, job, trigger, run_id).await });
        Submitted::Queued(id)
    }

    async fn execute(self: Arc<Self>, cfg: Arc<Config>, job: Job, trigger: Trigger, id: String) {
        let permit = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            p = self.slots.clone().acquire_owned() => p.ok(),
        };
        match permit {
            None => {
                let reason =
                    "skipped: the agent shut down before this queued drill could start".to_string();
                // Under the id an API caller was given, so its poll finds it.
                self.note(
                    &cfg,
                    &job,
                    trigger,
                    Some(id.clone()),
                    Verdict::Skipped,
                    reason,
                )
                .await;
            }
            Some(permit) => {
                if let Some(p) = self.pending.lock().expect("pending lock").get_mut(&id) {
                    p.1 = Pending::Running;
                }
                self.running.fetch_add(1, Ordering::SeqCst);
                let stop = self.stop.clone();
                let (c, j, rid, t) = (cfg.clone(), job.clone(), id.clone(), trigger.clone());
                let res = tokio::task::spawn_blocking(move || {
                    drills::drill(&c, &j, t, Some(rid), Some(stop), None)
                })
                .await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
                match res {
                    Ok(Ok(rec)) => self.seen(&rec),
                    // A due run always leaves a record: if the drill could not
                    // keep its own, say so under its id.
                    Ok(Err(e)) => {
                        let reason = format!("the drill could not run or keep its record: {e:#}");
                        self.unrecorded(&cfg, &job, trigger, &id, reason).await;
                    }
                    Err(e) => {
                        let reason = format!("the drill stopped unexpectedly: {e}");
                        self.unrecorded(&cfg, &job, trigger, &id, reason).await;
                    }
                }
            }
        }
        if let Some(st) = self.jobs.lock().expect("jobs lock").get_mut(&job.name)
            && st.busy.as_deref() == Some(id.as_str())
        {
            st.busy = None;
        }
        self.pending.lock().expect("pending lock").remove(&id);
    }

    /// A drill that left no record of its own gets an `error` record under its id.
    async fn unrecorded(
        &self,
        cfg: &Arc<Config>,
        job: &Job,
        trigger: Trigger,
        id: &str,
        reason: String,
    ) {
        tracing::error!(job = %job.name, id = %id, error = %reason, "Drill could not be recorded.");
        self.note(
            cfg,
            job,
            trigger,
            Some(id.to_string()),
            Verdict::Error,
            reason,
        )
        .await;
    }

    /// A new record: the job's state, and what on-call must hear about it.
    fn seen(&self, rec: &Record) {
        self.jobs
            .lock()
            .expect("jobs lock")
            .entry(rec.job.clone())
            .or_default()
            .apply(rec);
        self.alerts.observe(&self.config(), rec);
        self.published();
    }

    /// The dead-man check, reminders and alert delivery, every second until shutdown.
    async fn watch(self: Arc<Self>, started: DateTime<Utc>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let cfg = self.config();
            let states = self.jobs.lock().expect("jobs lock").clone();
            let due = |job: &Job| {
                states.get(&job.name).cloned().unwrap_or_default().due(
                    job,
                    cfg.agent.timezone,
                    started,
                    Utc::now(),
                )
            };
            self.alerts.watch(&cfg, &due);
            let (a, c) = (self.alerts.clone(), cfg.clone());
            let _ = tokio::task::spawn_blocking(move || a.deliver_due(&c)).await;
        }
    }

    fn set_slots(&self, want: u32) {
        let have = self.slot_count.swap(want, Ordering::SeqCst);
        if want > have {
            self.slots.add_permits((want - have) as usize);
        } else if want < have {
            let slots = self.slots.clone();
            let n = have - want;
            // Permits in use are not revoked; they are retired as they come back.
            self.tracker.spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(n).await {
                    p.forget();
                }
            });
        }
    }

    /// Starts one scheduler per scheduled job, replacing any running ones.
    fn start_schedulers(self: &Arc<Self>) {
        let token = self.shutdown.child_token();
        let old = std::mem::replace(
            &mut *self.schedulers.lock().expect("schedulers lock"),
            token.clone(),
        );
        old.cancel();
        let cfg = self.config();
        // One reference time for all jobs, so jobs with the same schedule fire
        // for the same ticks however long spawning takes.
        let since = Utc::now().with_timezone(&cfg.agent.timezone);
        for job in cfg.jobs.iter().filter(|j| j.schedule.is_some()) {
            let agent = self.clone();
            let token = token.clone();
            let job = job.clone();
            self.tracker
                .spawn(async move { agent.schedule(job, since, token).await });
        }
    }

    async fn schedule(
        self: Arc<Self>,
        job: Job,
        since: DateTime<chrono_tz::Tz>,
        token: CancellationToken,
    ) {
        let Some((_, cron)) = job.schedule.clone() else {
            return;
        };
        let tz = since.timezone();
        let mut last = since;
        loop {
            let now = Utc::now();
            let next = match schedule::next_tick(&cron, last, now, job.jitter) {
                None => return,
                Some(schedule::Tick::Missed { count, first }) => {
                    // The host slept or the clock jumped: one record says so,
                    // instead of a burst of drills for every tick that passed.
                    let cfg = self.config();
                    let trigger = Trigger {
                        kind: TriggerKind::Schedule,
                        reason: None,
                        scheduled_for: Some(first.fixed_offset()),
                    };
                    let reason = schedule::missed_reason(count, first);
                    self.note(&cfg, &job, trigger, None, Verdict::Skipped, reason)
                        .await;
                    last = now.with_timezone(&tz);
                    continue;
                }
                Some(schedule::Tick::Wait { next, wait }) => {
                    let mut wait = wait;
                    if let Some(j) = job.jitter {
                        wait += Duration::from_millis(
                            drills::random_u64() % j.as_millis().max(1) as u64,
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = token.cancelled() => return,
                    }
                    next
                }
            };
            last = next;
            let trigger = Trigger {
                kind: TriggerKind::Schedule,
                reason: None,
                scheduled_for: Some(next.fixed_offset()),
            };
            self.submit(&job.name, trigger).await;
        }
    }

    /// `catch_up = true`: a job whose last scheduled run was missed while the
    /// agent was down runs once now.
    async fn catch_up(self: &Arc<Self>) {
        let cfg = self.config();
        let now = Utc::now().with_timezone(&cfg.agent.timezone);
        for job in cfg.jobs.iter().filter(|j| j.catch_up) {
            let Some((_, cron)) = &job.schedule else {
                continue;
            };
            let last = self
                .jobs
                .lock()
                .expect("jobs lock")
                .get(&job.name)
                .and_then(|s| s.last.as_ref().map(|l| l.started_at));
            let reason = schedule::catch_up_reason(cron, last, now);
            if let Some(reason) = reason {
                tracing::info!(job = %job.name, %reason, "Catching up.");
                let trigger = Trigger {
                    kind: TriggerKind::Schedule,
                    reason: Some(reason),
                    scheduled_for: None,
                };
                self.submit(&job.name, trigger).await;
            }
        }
    }

    fn reload(self: &Arc<Self>) {
        match config::load(&self.cfg_path, Check::Values)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                let problems = drills::start_problems(&c);
                if let Some(p) = problems.iter().find(|p| p.refuses) {
                    anyhow::bail!("{}: {}", p.key, p.why);
                }
                for p in &problems {
                    tracing::warn!(key = p.key, "{}", p.why);
                }
                let t = drills::read_token(&c).map_err(anyhow::Error::msg)?;
                Ok((c, t))
            }) {
            Err(e) => {
                tracing::error!(config = %self.cfg_path.display(), error = format!("{e:#}"), "Configuration reload failed; keeping the running configuration.")
            }
            Ok((cfg, token)) => {
                // A job the reload adds is watched from now.
                let now = Utc::now();
                let mut jobs = self.jobs.lock().expect("jobs lock");
                for j in &cfg.jobs {
                    jobs.entry(j.name.clone())
                        .or_default()
                        .watching_since
                        .get_or_insert(now);
                }
                drop(jobs);
                self.set_slots(cfg.agent.max_concurrent_drills);
                *self.token.write().expect("token lock") = token;
                *self.cfg.write().expect("config lock") = Arc::new(cfg);
                self.start_schedulers();
                tracing::info!(config = %self.cfg_path.display(), "Configuration reloaded.");
            }
        }
    }
}

fn kind_name(k: TriggerKind) -> &'static str {
    match k {
        TriggerKind::Schedule => "scheduled",
        TriggerKind::Manual => "manual",
        TriggerKind::Change => "change-triggered",
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(cfg_path: PathBuf) -> Result<Outcome, CliError> {
    let cfg = config::load(&cfg_path, Check::Values)?;
    let problems = drills::start_problems(&cfg)
        .into_iter()
        .chain(drills::listen_problem(&cfg));
    for p in problems {
        // At start an address in use is not this agent's: refused.
        if p.refuses || p.key == "agent.listen" {
            return Err(CliError::Usage(format!("{}: {}", p.key, p.why)));
        }
        tracing::warn!(key = p.key, "{}", p.why);
    }
    drills::check_dirs(&cfg).map_err(CliError::Usage)?;
    let token = drills::read_token(&cfg).map_err(CliError::Usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = rt.block_on(serve(cfg_path, cfg, token));
    // Drill threads that ignored their cancel flag must not hold the exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    outcome
}

async fn serve(cfg_path: PathBuf, cfg: Config, token: Option<String>) -> Result<Outcome, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let ledger = drills::signing_ledger(&cfg).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    // Drills a crash interrupted: their sandboxes go, their records say so.
    let env = drills::env(&cfg, drills::trigger(TriggerKind::Schedule, None), None);
    // What the start checks refuse, found again at the last moment (after
    // the tail was mended), is a start-time refusal too.
    let refusal = |e: verifier::LedgerError| match e {
        verifier::LedgerError::Signing(why) => {
            CliError::Usage(format!("agent.signing_key_file: {why}"))
        }
        e => CliError::Other(e.into()),
    };
    let recovered = tokio::task::block_in_place(|| verifier::recover_interrupted(&env, &ledger))
        .map_err(refusal)?;
    // Signing that begins (or a key that changes) is on the ledger from the
    // start, not from the first drill.
    let like = verifier::note_record(
        &env,
        verifier::new_id(),
        verifier::KEY_JOB,
        None,
        std::time::SystemTime::now(),
        Verdict::Key,
        Vec::new(),
    );
    tokio::task::block_in_place(|| ledger.begin_signing(&like)).map_err(refusal)?;
    let mut jobs: BTreeMap<String, JobState> = cfg
        .jobs
        .iter()
        .map(|j| (j.name.clone(), JobState::default()))
        .collect();
    for r in ledger.records().map_err(anyhow::Error::from)? {
        let r = r.map_err(anyhow::Error::from)?;
        jobs.entry(r.job.clone()).or_default().apply(&r);
    }
    let started = Utc::now();
    for st in jobs.values_mut() {
        st.watching_since.get_or_insert(started);
    }
    let max = cfg.agent.max_concurrent_drills;
    let listen = cfg.agent.listen;
    let state_dir = cfg.agent.state_dir.clone();
    let agent = Arc::new(Agent {
        cfg_path,
        cfg: RwLock::new(Arc::new(cfg)),
        jobs: Mutex::new(jobs),
        pending: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(max as usize)),
        slot_count: AtomicU32::new(max),
        stop: Arc::new(AtomicBool::new(false)),
        shutdown: CancellationToken::new(),
        schedulers: Mutex::new(CancellationToken::new()),
        tracker: TaskTracker::new(),
        running: AtomicUsize::new(0),
        token: RwLock::new(token),
        alerts: Arc::new(crate::alerts::Alerts::open(&state_dir).with_context(|| {
            format!(
                "cannot create the alert outbox under {}",
                state_dir.display()
            )
        })?),
        ledger_check: Mutex::new(None),
        publish_wanted: tokio::sync::Notify::new(),
        started,
    });
    for r in &recovered {
        agent.alerts.observe(&agent.config(), r);
    }
    tracing::info!(
        jobs = agent.config().jobs.len(),
        recovered = recovered.len(),
        listen = listen
            .map(|l| l.to_string())
            .unwrap_or_else(|| "off".into()),
        "Agent started."
    );
    let mut server = None;
    if let Some(addr) = listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; is another agent running?"))?;
        let app = crate::http::router(agent.clone());
        let token = agent.shutdown.clone();
        server = Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        }));
    }
    agent.catch_up().await;
    agent.start_schedulers();
    agent.tracker.spawn(agent.clone().watch(agent.started));
    agent.tracker.spawn(agent.clone().check_ledger());
    // Not tracked: shutdown does not wait for the store.
    tokio::spawn(agent.clone().publish());

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break Outcome::Success,
            _ = int.recv() => break Outcome::Interrupted,
            _ = hup.recv() => agent.reload(),
        }
    };
    tracing::info!(
        running = agent.running.load(Ordering::SeqCst),
        "Shutting down: stopping schedules and running drills."
    );
    agent.stop.store(true, Ordering::SeqCst);
    agent.shutdown.cancel();
    agent.tracker.close();
    if tokio::time::timeout(Duration::from_secs(9), agent.tracker.wait())
        .await
        .is_err()
    {
        tracing::error!(
            "Drills did not stop within 9 s; exiting anyway. Their markers remain and the next start records them."
        );
    }
    if let Some(s) = server {
        let _ = tokio::time::timeout(Duration::from_secs(1), s).await;
    }
    // The records of the drills shutdown stopped: one last publish, bounded.
    let cfg = agent.config();
    if cfg.store != crate::config::Store::File {
        let path = drills::ledger(&cfg).path().to_path_buf();
        let last =
            tokio::task::spawn_blocking(move || crate::store::publish_quietly(&cfg.store, &path));
        if tokio::time::timeout(Duration::from_secs(5), last)
            .await
            .is_err()
        {
            tracing::warn!(
                "The evidence store did not answer in 5 s; the next start publishes the rest."
            );
        }
    }
    tracing::info!("Agent stopped.");
    Ok(outcome)
}
