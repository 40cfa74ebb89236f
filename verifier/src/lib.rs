//! restore-verifier's engine: restore a backup into a throw-away sandbox, compare
//! it with the live source, and keep hash-chained evidence of the result.
//!
//! Synchronous and free of CLI or config-file concerns, so that one drill is one
//! call: build a [`DrillSpec`], call [`run_drill`], append the [`Record`] to a
//! [`Ledger`].

mod checks;
mod compare;
mod content;
mod coverage;
mod deadline;
pub mod drift;
mod drill;
pub mod driver;
mod findings;
mod ledger;
pub mod manifest;
pub mod metadata;
pub mod process;
pub mod progress;
pub mod reach;
mod record;
pub mod root;
mod running;
mod sandbox;
mod select;
pub mod signing;
mod walk;

pub use checks::{CheckRecord, CheckSpec, ExpectOutput};
pub use compare::{
    CompareError, CompareOptions, CompareReport, ExpectResult, ExpectStatus, Reference, compare,
    compare_with, display, exclude_set, from_display,
};
pub use content::{CHUNK, ContentError, ContentOutcome, content_check, worker_count};
pub use coverage::{RotationCoverage, rotation_coverage, slice_list};
pub use deadline::{Deadline, Stop, human_bytes, humanize};
pub use drill::{DrillEnv, DrillSpec, VerifySpec, new_id, note_record, run_drill, run_drill_as};
pub use findings::{Finding, Findings, LIST_CAP};
pub use ledger::{
    ChainChecker, ChainProblem, ChainReport, GENESIS, LEDGER_JOB, Ledger, LedgerError, LostRecords,
    Records, SignedRange, SigningTail, TailSource, canonical, record_hash,
};
pub use progress::{Phase, Progress};
pub use record::*;
pub use running::{drill_to_ledger, recover_interrupted};
pub use sandbox::{PREFIX as SANDBOX_PREFIX, Sandbox, overlaps, remove_tree, sandbox_path};
pub use select::{ContentSelection, in_slice, path_key};
