//! `run`: drill the named jobs now (all when none is named), one after
//! another, each recorded, alerted and summed up; then publish the ledger.

use std::path::Path;
use std::sync::atomic::Ordering;

use verifier::TriggerKind;

use super::args::TriggerArg;
use crate::config::Check;
use crate::exit::{CliError, Outcome};
use crate::{alerts, drills, output, progress, store};

pub fn run(
    cfg_flag: Option<&Path>,
    jobs: &[String],
    trigger: TriggerArg,
    reason: Option<String>,
    json: bool,
    quiet: bool,
) -> Result<Outcome, CliError> {
    let cfg = super::load(cfg_flag, Check::Values)?;
    let selected = drills::select(&cfg, jobs).map_err(CliError::Usage)?;
    let kind = match trigger {
        TriggerArg::Schedule => TriggerKind::Schedule,
        TriggerArg::Manual => TriggerKind::Manual,
        TriggerArg::Change => TriggerKind::Change,
    };
    // An unreadable signing key or a state_dir that cannot be written
    // stops everything before any drill runs.
    // The handler goes in first: a signal during the checks below stops
    // the run (exit 130) before its first drill, recording nothing.
    let stop = drills::interrupt_flag();
    drills::signing_ledger(&cfg).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    drills::check_dirs(&cfg).map_err(CliError::Usage)?;
    let mut all_pass = true;
    // Alerts from a one-off run go through the same outbox; what cannot
    // be delivered now is retried by the agent or the next run.
    let alerts = (!cfg.alerts.is_empty())
        .then(|| alerts::Alerts::open(&cfg.agent.state_dir).ok())
        .flatten();
    for job in selected {
        // Interrupted before this drill began: nothing to record.
        if stop.load(Ordering::SeqCst) {
            eprintln!("restore-verifier: interrupted before {} began", job.name);
            return Ok(Outcome::Interrupted);
        }
        let bar = progress::Bar::start(&job.name, quiet);
        let drilled = drills::drill(
            &cfg,
            job,
            drills::trigger(kind, reason.clone()),
            None,
            Some(stop.clone()),
            progress::counters(&bar),
        );
        drop(bar);
        let rec = match drilled {
            Ok(rec) => rec,
            Err(e) => {
                // One job's bookkeeping problem does not stop the others' drills.
                eprintln!("restore-verifier: {e:#}");
                all_pass = false;
                continue;
            }
        };
        all_pass &= rec.result == verifier::Verdict::Pass;
        if let Some(a) = &alerts {
            a.observe(&cfg, &rec);
        }
        if json {
            println!(
                "{}",
                serde_json::to_string(&rec).map_err(anyhow::Error::from)?
            );
        }
        // The verdict where people look: stdout (`run job > out.txt`
        // holds it); with --json, stdout is the records, and the
        // summary goes to stderr with the logs.
        if !json {
            print!("{}", output::summary(&rec));
        } else if !quiet {
            eprint!("{}", output::summary(&rec));
        }
        if stop.load(Ordering::Relaxed) {
            eprintln!(
                "restore-verifier: interrupted; the drill was recorded and its sandbox removed"
            );
            store::publish_quietly(&cfg.store, drills::ledger(&cfg).path());
            return Ok(Outcome::Interrupted);
        }
    }
    // The records of this run go to the shared store (if any) after
    // the drills, never holding one up.
    store::publish_quietly(&cfg.store, drills::ledger(&cfg).path());
    if let Some(a) = &alerts {
        a.deliver_due(&cfg);
    }
    Ok(if all_pass {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
