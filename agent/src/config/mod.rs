//! The configuration file (DESIGN.md "Configuration"): parsing with positions,
//! validation that reports every problem it can find, and conversion into the
//! library's drill specs.
//!
//! Each section (`[agent]`, every `[[job]]`) is deserialized on its own so that
//! one mistake does not hide the next; values that need more than a type check
//! (durations, cron, time zone, names, paths) keep their spans and are validated
//! afterwards, all of them.
//!
//! `model` is what the rest of the agent works from; `raw` is each section as
//! written; `parse` reads the file and the `[agent]` and `[evidence]` sections;
//! `job`, `backup` and `alert` check their sections; `values` parses single
//! values; `diagnostics` carries each problem with its place in the file.

mod alert;
mod backup;
mod diagnostics;
mod job;
mod model;
mod parse;
mod raw;
#[cfg(test)]
mod tests;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use alert::*;
pub use backup::{Backup, BackupKind};
use backup::{ReadBackup, backup_config, read_backup};
use job::*;
use raw::*;

use diagnostics::Ctx;
pub use diagnostics::{ConfigErrors, Diagnostic, line_col};
pub use model::*;
pub use parse::{Check, config_path, load, parse};
use values::*;
pub use values::{has_password, parse_bytes, parse_cron, parse_duration, parse_percent};

/// The backup types `[job.backup] type` accepts, in the order messages list
/// them.
pub fn backup_types() -> impl Iterator<Item = &'static str> {
    backup::TYPES.iter().map(|t| t.name)
}

pub const DEFAULT_CONFIG: &str = "/etc/restore-verifier/config.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/restore-verifier";
pub const DEFAULT_SANDBOX_DIR: &str = "/var/tmp/restore-verifier";
/// A drill's `timeout` when the job sets none: room for a restore and a full
/// compare of a few hundred GiB at disk speed, and short enough that a hung
/// tool (pg_restore spinning on a cut dump, a repository that never answers)
/// is killed and reported the same night, before a daily job's next run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
