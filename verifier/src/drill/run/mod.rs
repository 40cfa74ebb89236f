//! One drill, start to finish: sandbox, restore, compare, objectives, verdict.
//!
//! `run_drill` never panics on bad input and always returns a record; the caller
//! appends it to the ledger. Findings make a `fail`; being unable to run makes an
//! `error`; anything that verified nothing is never a `pass`.
//!
//! The parts: this file is what a drill is given ([`DrillSpec`], [`DrillEnv`])
//! and the records it makes without restoring; `sequence.rs` is the drill
//! itself ([`run_drill_as`]), one long sequence; `judge.rs` turns the compare's
//! findings into reasons; `metadata.rs` decides which metadata is compared.

mod judge;
mod metadata;
mod sequence;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, FixedOffset, SubsecRound, Utc};

use crate::drill::checks::CheckSpec;
use crate::drill::process::Isolation;
use crate::driver::Driver;
use crate::evidence::record::*;
use crate::progress::{Phase, Progress};
use crate::tree::metadata::MetadataSet;
use crate::tree::select::ContentSelection;

pub use metadata::metadata_to_compare;
pub use sequence::run_drill_as;

/// What to verify after the restore.
#[derive(Debug, Clone)]
pub struct VerifySpec {
    pub selection: ContentSelection,
    pub exclude: Vec<String>,
    /// Fewer restored files than this fails the drill.
    pub min_files: u64,
    /// Canaries: must be restored and match.
    pub expect: Vec<PathBuf>,
    /// What is compared beyond content (`[job.verify] metadata`); `None`:
    /// mode, owner when the agent is root, and ACLs, each where the backup
    /// holds it.
    pub metadata: Option<MetadataSet>,
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec {
            selection: ContentSelection::All,
            exclude: Vec::new(),
            min_files: 1,
            expect: Vec::new(),
            metadata: None,
        }
    }
}

/// One configured backup to drill.
pub struct DrillSpec {
    pub job: String,
    pub system: Option<String>,
    pub driver: Box<dyn Driver>,
    /// Live data to compare against; `None` reads the restored tree only.
    pub source: Option<PathBuf>,
    /// A manifest to verify against exactly, instead of the source.
    pub manifest: Option<PathBuf>,
    pub verify: VerifySpec,
    pub timeout: Option<Duration>,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    /// Refuse (before, or stop during) a restore larger than this.
    pub max_restore_bytes: Option<u64>,
    /// Commands run against the restored data after the compare.
    pub checks: Vec<CheckSpec>,
    /// Who runs the checks (and a runbook's steps), and with what network.
    pub isolation: Isolation,
}

/// Where and when a drill runs.
#[derive(Debug, Clone)]
pub struct DrillEnv {
    pub sandbox_dir: PathBuf,
    /// Run artifacts go to `state_dir/runs/<id>/`.
    pub state_dir: PathBuf,
    pub trigger: Trigger,
    /// Timestamps in records are written with this UTC offset.
    pub offset: FixedOffset,
    pub host: String,
    pub agent_version: String,
    /// The drill's start time; `None` reads the clock.
    pub now: Option<SystemTime>,
    /// When set (by a signal handler), the drill stops, records `error`, and
    /// still removes its sandbox.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Counters for a progress display.
    pub progress: Option<Arc<Progress>>,
}

impl DrillEnv {
    /// An environment with the local host name and UTC timestamps.
    pub fn new(sandbox_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> DrillEnv {
        DrillEnv {
            sandbox_dir: sandbox_dir.into(),
            state_dir: state_dir.into(),
            trigger: Trigger {
                kind: TriggerKind::Manual,
                reason: None,
                scheduled_for: None,
            },
            offset: FixedOffset::east_opt(0).expect("zero offset"),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            now: None,
            cancel: None,
            progress: None,
        }
    }

    fn phase(&self, phase: Phase) {
        if let Some(p) = &self.progress {
            p.set_phase(phase);
        }
    }

    pub fn stamp(&self, t: SystemTime) -> DateTime<FixedOffset> {
        DateTime::<Utc>::from(t)
            .with_timezone(&self.offset)
            .trunc_subsecs(3)
    }
}

/// Runs one drill and returns its (not yet appended) record.
pub fn run_drill(spec: &DrillSpec, env: &DrillEnv) -> Record {
    run_drill_as(spec, env, new_id())
}

/// A record for a drill that did not restore anything: skipped, or interrupted
/// by a crash. Its sections are empty; `reasons` say why.
pub fn note_record(
    env: &DrillEnv,
    id: String,
    job: &str,
    system: Option<String>,
    started: SystemTime,
    result: Verdict,
    reasons: Vec<String>,
) -> Record {
    let now = SystemTime::now().max(started);
    Record::note(
        NoteHead {
            id,
            job: job.to_string(),
            system,
            host: env.host.clone(),
            agent_version: env.agent_version.clone(),
            trigger: env.trigger.clone(),
            started_at: env.stamp(started),
            finished_at: env.stamp(now),
        },
        result,
        reasons,
    )
}
