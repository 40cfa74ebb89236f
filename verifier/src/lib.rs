//! restore-verifier's engine: restore a backup into a throw-away sandbox, compare
//! it with the live source, and keep hash-chained evidence of the result.
//!
//! Synchronous and free of CLI or config-file concerns, so that one drill is one
//! call: build a [`DrillSpec`], call [`run_drill`], append the [`Record`] to a
//! [`Ledger`].

pub mod drill;
pub mod driver;
pub mod evidence;
pub mod progress;
pub mod tree;
pub mod units;

pub use drill::checks::{CheckSpec, ExpectOutput};
pub use drill::deadline::{Deadline, Stop};
pub use drill::marker::{drill_to_ledger, recover_interrupted};
pub use drill::run::{DrillEnv, DrillSpec, VerifySpec, note_record, run_drill, run_drill_as};
pub use drill::sandbox::{PREFIX as SANDBOX_PREFIX, Sandbox, overlaps, remove_tree, sandbox_path};
pub use evidence::coverage::{RotationCoverage, rotation_coverage, slice_list};
pub use evidence::ledger::{
    ChainChecker, ChainProblem, ChainReport, GENESIS, Ledger, LedgerError, LostRecords, Records,
    SignedRange, SigningTail, TailSource, canonical, record_hash,
};
pub use evidence::record::*;
pub use progress::{Phase, Progress};
pub use tree::compare::{
    CompareError, CompareOptions, CompareReport, Reference, compare, compare_with, exclude_set,
};
pub use tree::content::{CHUNK, ContentError, ContentOutcome, content_check, worker_count};
pub use tree::path::{display, from_display};
pub use tree::select::{ContentSelection, in_slice, path_key};
pub use units::{human_bytes, humanize};
