//! Turning configured jobs into drills, running them, and keeping their records.

use anyhow::Context;
use chrono::Offset;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use verifier::{DrillEnv, DrillSpec, Ledger, Record, Trigger, TriggerKind};

use crate::config::{Config, Content, Job};
use crate::plan;

/// The ledger, for reading.
pub fn ledger(cfg: &Config) -> Ledger {
    Ledger::new(cfg.agent.state_dir.join("ledger.jsonl"))
}

/// The ledger, for appending: signing every record when `signing_key_file` is
/// set (and, for a key change, the first with `previous_signing_key_file`
/// too). A key that cannot be read is an error, never a silently unsigned
/// record; so is a ledger the next record could not continue (signed by
/// another key, or signed while no key is set).
pub fn signing_ledger(cfg: &Config) -> anyhow::Result<Ledger> {
    let mut l = ledger(cfg);
    if let Some(source) = crate::store::tail_source(&cfg.store) {
        l = l.recovering_from(source);
    }
    if let Some(p) = &cfg.agent.signing_key_file {
        l = l.signed_by(verifier::evidence::signing::load_signing_key(p)?);
    }
    if let Some(p) = &cfg.agent.previous_signing_key_file {
        l = l.previously_signed_by(
            verifier::evidence::signing::load_signing_key(p)
                .context("previous_signing_key_file")?,
        );
    }
    if let Some(why) = l.signing_tail()?.refusal() {
        anyhow::bail!("{why}");
    }
    Ok(l)
}

/// The public halves of `signing_key_file` and `previous_signing_key_file`,
/// to verify signatures with (none without a key, or when a `.pub` file
/// cannot be read).
pub fn verifying_keys(cfg: &Config) -> Vec<verifier::evidence::signing::EvidencePublicKey> {
    [
        &cfg.agent.signing_key_file,
        &cfg.agent.previous_signing_key_file,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| {
        verifier::evidence::signing::load_public_key(&verifier::evidence::signing::public_path(p))
            .ok()
    })
    .collect()
}

/// Whether the ledger verified when last checked, and what was wrong.
#[derive(Debug, Clone)]
pub struct LedgerCheck {
    pub at: chrono::DateTime<chrono::Utc>,
    pub intact: bool,
    pub problem: Option<String>,
}

/// Verifies the whole ledger (hash chain, and signatures with a key). No
/// ledger yet is intact: nothing was recorded to break.
pub fn check_ledger(cfg: &Config) -> LedgerCheck {
    let ledger = ledger(cfg);
    let problem = if ledger.path().exists() {
        match ledger.verify_with(&verifying_keys(cfg)) {
            Ok(rep) => rep.problem.map(|p| format!("line {}: {}", p.line, p.what)),
            Err(e) => Some(e.to_string()),
        }
    } else {
        None
    };
    LedgerCheck {
        at: chrono::Utc::now(),
        intact: problem.is_none(),
        problem,
    }
}

/// Something the agent checks at start, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProblem {
    pub key: &'static str,
    pub why: String,
    /// The agent refuses to start (`config check` exits 2); otherwise a
    /// warning both print.
    pub refuses: bool,
}

impl StartProblem {
    fn refuses(key: &'static str, why: String) -> StartProblem {
        StartProblem {
            key,
            why,
            refuses: true,
        }
    }
}

/// What the agent refuses to start (or reload) with beyond the config's own
/// syntax and values, each with the key it is about: `config check` runs the
/// same code, so `ExecStartPre=restore-verifier config check` catches it.
/// The listen address is [`listen_problem`], checked at start only.
pub fn start_problems(cfg: &Config) -> Vec<StartProblem> {
    let mut problems = Vec::new();
    for (key, dir) in [
        ("agent.state_dir", &cfg.agent.state_dir),
        ("agent.sandbox_dir", &cfg.agent.sandbox_dir),
    ] {
        if let Err(e) = creatable(dir) {
            problems.push(StartProblem::refuses(key, unwritable(key, dir, &e)));
        }
    }
    match read_token(cfg) {
        Err(e) => problems.push(StartProblem::refuses("agent.api_token_file", e)),
        Ok(_) => problems.extend(token_mode(cfg)),
    }
    for a in &cfg.alerts {
        let problem = a.on.iter().any(|e| {
            matches!(
                e,
                crate::config::Event::Fail
                    | crate::config::Event::Error
                    | crate::config::Event::Overdue
            )
        });
        if !problem {
            problems.push(StartProblem {
                key: "alert.on",
                why: format!(
                    "the sink {:?} is told of no problem (on = [{}]), and recovered goes only to sinks that had the problem, so it will never get an alert; add \"fail\", \"error\" or \"overdue\"",
                    a.name,
                    a.on.iter().map(|e| format!("{:?}", e.as_str())).collect::<Vec<_>>().join(", ")
                ),
                refuses: false,
            });
        }
    }
    let ledger = signing_ledger(cfg);
    if let Ok(l) = &ledger
        && let Some(p) = &cfg.agent.previous_signing_key_file
        && l.signing_tail().ok() == Some(verifier::SigningTail::Continues)
    {
        problems.push(StartProblem {
            key: "agent.previous_signing_key_file",
            why: format!(
                "{} is no longer needed: the ledger's last record is signed by signing_key_file; remove the key (and keep the file out of reach), since whoever holds a retired key could use it to fork the ledger",
                p.display()
            ),
            refuses: false,
        });
    }
    if let Err(e) = ledger {
        let previous = cfg
            .agent
            .previous_signing_key_file
            .as_ref()
            .is_some_and(|p| verifier::evidence::signing::load_signing_key(p).is_err());
        // A ledger that cannot be read is the state directory's problem.
        let unreadable = e
            .downcast_ref::<verifier::LedgerError>()
            .is_some_and(|l| !matches!(l, verifier::LedgerError::Signing(_)));
        problems.push(StartProblem::refuses(
            if previous {
                "agent.previous_signing_key_file"
            } else if unreadable {
                "agent.state_dir"
            } else {
                "agent.signing_key_file"
            },
            format!("{e:#}"),
        ));
    }
    problems
}

/// Whether the agent can listen on `listen`. An address in use is a warning
/// only: `config check` may run beside the agent that holds it.
pub fn listen_problem(cfg: &Config) -> Option<StartProblem> {
    let addr = cfg.agent.listen?;
    let e = std::net::TcpListener::bind(addr).err()?;
    Some(if e.kind() == std::io::ErrorKind::AddrInUse {
        StartProblem {
            key: "agent.listen",
            why: format!(
                "{addr} is in use ({e}); fine if it is this agent, otherwise stop what holds it or choose another port"
            ),
            refuses: false,
        }
    } else {
        StartProblem::refuses(
            "agent.listen",
            format!(
                "cannot listen on {addr} ({e}); use an address of this host and a free port (below 1024 needs CAP_NET_BIND_SERVICE)"
            ),
        )
    })
}

/// The token file's mode: writable by others, anyone could replace the
/// token (refused); readable by others, anyone could use it (a warning).
fn token_mode(cfg: &Config) -> Option<StartProblem> {
    use std::os::unix::fs::PermissionsExt;
    let p = cfg.agent.api_token_file.as_ref()?;
    let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o777;
    let fix = format!("chmod 600 {}", p.display());
    if mode & 0o022 != 0 {
        Some(StartProblem::refuses(
            "agent.api_token_file",
            format!(
                "{} is writable by group or others (mode {mode:03o}), so anyone could replace the token; {fix}",
                p.display()
            ),
        ))
    } else if mode & 0o004 != 0 {
        Some(StartProblem {
            key: "agent.api_token_file",
            why: format!(
                "{} is readable by every account (mode {mode:03o}), so any of them can start drills; {fix}",
                p.display()
            ),
            refuses: false,
        })
    } else {
        None
    }
}

/// Whether `dir` exists and can be written, or could be created: its
/// nearest existing ancestor is a directory this account can write. Nothing
/// is written.
fn creatable(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Access, access};
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                return access(p, Access::WRITE_OK | Access::EXEC_OK).map_err(Into::into);
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", p.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                Some(up) if !up.as_os_str().is_empty() => p = up,
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

fn unwritable(key: &str, dir: &Path, e: &dyn std::fmt::Display) -> String {
    let key = key.trim_start_matches("agent.");
    format!(
        "{key} {} is not writable ({e}); drills need it to keep {}. Fix its permissions or mount, or set [agent] {key} to a writable directory",
        dir.display(),
        if key == "state_dir" {
            "their records"
        } else {
            "their sandboxes"
        }
    )
}

/// The API token from `api_token_file` (at least 16 characters); `None`
/// without the key.
pub fn read_token(cfg: &Config) -> Result<Option<String>, String> {
    let Some(p) = &cfg.agent.api_token_file else {
        return Ok(None);
    };
    let t = std::fs::read_to_string(p).map_err(|e| {
        format!("cannot read api_token_file {} ({e}); fix its path or mode, or remove the key to disable POST endpoints", p.display())
    })?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(format!(
            "the token in api_token_file {} is shorter than 16 characters; write a longer one (e.g. `openssl rand -hex 32`)",
            p.display()
        ));
    }
    Ok(Some(t))
}

/// Makes sure `state_dir` and `sandbox_dir` exist and can be written, before any
/// drill runs: a drill whose record cannot be kept must not start.
pub fn check_dirs(cfg: &Config) -> Result<(), String> {
    for (key, dir) in [
        ("state_dir", &cfg.agent.state_dir),
        ("sandbox_dir", &cfg.agent.sandbox_dir),
    ] {
        let probe = std::fs::create_dir_all(dir).and_then(|()| {
            tempfile::Builder::new()
                .prefix(".rv-probe")
                .tempfile_in(dir)
        });
        if let Err(e) = probe {
            return Err(unwritable(key, dir, &e));
        }
    }
    Ok(())
}

/// A fresh random number (for seeds and jitter); not for secrets.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A fresh random seed, for sampled drills without a configured one; kept
/// within i64 so it can be written back into the config file.
fn random_seed() -> u64 {
    random_u64() & i64::MAX as u64
}

/// The drill of `job` ([`plan::spec`]): a seed drawn for a sample the
/// config does not seed, the rotation slice read from the ledger.
pub fn spec(job: &Job, ledger: &Ledger, state_dir: &std::path::Path) -> DrillSpec {
    let slice = match job.verify.content {
        Content::Rotate => {
            let records = ledger
                .records()
                .into_iter()
                .flatten()
                .filter_map(Result::ok);
            plan::next_slice(records, &job.name, job.verify.rotate_over)
        }
        _ => 0,
    };
    let seed = match (job.verify.content, job.verify.seed) {
        (Content::Sample, None) => random_seed(),
        _ => 0,
    };
    plan::spec(job, state_dir, seed, slice)
}

/// Set by SIGINT/SIGTERM: running drills stop, record `error` and clean up.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registration only fails for forbidden signals, which these are not.
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

pub fn env(cfg: &Config, trigger: Trigger, cancel: Option<Arc<AtomicBool>>) -> DrillEnv {
    let mut env = DrillEnv::new(&cfg.agent.sandbox_dir, &cfg.agent.state_dir);
    env.cancel = cancel;
    env.trigger = trigger;
    env.offset = chrono::Utc::now()
        .with_timezone(&cfg.agent.timezone)
        .offset()
        .fix();
    env
}

/// A trigger without a schedule time.
pub fn trigger(kind: TriggerKind, reason: Option<String>) -> Trigger {
    Trigger {
        kind,
        reason,
        scheduled_for: None,
    }
}

/// Runs one job's drill under an in-progress marker and appends its record.
pub fn drill(
    cfg: &Config,
    job: &Job,
    trigger: Trigger,
    id: Option<String>,
    cancel: Option<Arc<AtomicBool>>,
    progress: Option<Arc<verifier::Progress>>,
) -> anyhow::Result<Record> {
    let ledger = signing_ledger(cfg)?;
    let spec = spec(job, &ledger, &cfg.agent.state_dir);
    let mut env = env(cfg, trigger, cancel);
    env.progress = progress;
    let id = id.unwrap_or_else(verifier::new_id);
    let span = tracing::info_span!("drill", job = %job.name, id = %id);
    let _entered = span.enter();
    tracing::info!("Drill started.");
    let rec = verifier::drill_to_ledger(&spec, &env, &ledger, Some(id.clone()))
        .with_context(|| format!("the drill {id} of {} could not be recorded", job.name))?;
    match rec.result {
        verifier::Verdict::Pass => tracing::info!(seq = rec.seq, "Drill passed."),
        r => {
            tracing::warn!(seq = rec.seq, result = %r, reason = rec.reasons.first().map(String::as_str).unwrap_or(""), "Drill did not pass.")
        }
    }
    Ok(rec)
}

/// The jobs named on the command line (all when none), or a usage error.
pub fn select<'a>(cfg: &'a Config, names: &[String]) -> Result<Vec<&'a Job>, String> {
    if names.is_empty() {
        if cfg.jobs.is_empty() {
            return Err(format!(
                "{} configures no job; add a [[job]] section",
                cfg.path.display()
            ));
        }
        return Ok(cfg.jobs.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            cfg.jobs.iter().find(|j| &j.name == n).ok_or_else(|| {
                let known: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
                format!("no job named {n:?}; configured jobs: {}", known.join(", "))
            })
        })
        .collect()
}
