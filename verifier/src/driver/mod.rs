//! Restore drivers: one trait, one file per backup type.
//!
//! A driver finds the backup ([`Driver::locate`]) and restores it into an empty
//! sandbox ([`Driver::restore`]). A damaged, missing or hostile backup is a
//! finding (the drill fails); not being able to run at all is an error.

mod borg;
mod command;
mod compression;
mod dir;
mod pax;
mod pgdump;
mod postgres;
mod restic;
mod safe;
mod tar;
mod tool;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use borg::BorgDriver;
pub use command::CommandDriver;
pub use dir::DirDriver;
pub use postgres::{
    PostgresDriver, setup_problems as postgres_setup_problems, table_counts_manifest,
};
pub use restic::ResticDriver;
pub use safe::check_all_links;
pub use tar::{TarDriver, newest_match};

use crate::drill::deadline::{Deadline, Stop};

/// What a drill knows about the backup it restores.
#[derive(Debug, Clone, Default)]
pub struct BackupInfo {
    /// Backup type as configured: "dir", "tar", …
    pub kind: String,
    /// A human-meaningful identity: archive file name, snapshot id, …
    pub id: String,
    /// Where the backup is.
    pub location: Option<PathBuf>,
    /// When the backup was taken (its age against the RPO); `None` when unknown.
    pub created_at: Option<SystemTime>,
    /// By when the backup had read every file, where that is later than
    /// `created_at` (a copy's newest change); the drift rules' backup time.
    pub read_by: Option<SystemTime>,
    /// The earliest the backup could have read a file, where the tool records
    /// it (a snapshot's start).
    pub started_at: Option<SystemTime>,
    /// SHA-256 of the backup file as read during the restore, when it is one file.
    pub sha256: Option<String>,
    /// About how many bytes the restore will write, when the driver can tell
    /// before restoring (archive size and compression, dump size, tree size).
    pub size_estimate: Option<u64>,
}

/// What a restore produced.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// Non-directory entries written into the sandbox.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Exit status of the restore tool, for drivers that run one.
    pub exit_code: Option<i32>,
    /// Where, relative to the sandbox, the restored data that corresponds to
    /// the source is (tools that restore full paths put it deeper).
    pub root: Option<PathBuf>,
    /// The restore tool and its version, e.g. "restic 0.14.0".
    pub tool: Option<String>,
    /// Every command run, in order.
    pub steps: Vec<crate::evidence::record::StepRecord>,
    /// Drivers that verify what they restored themselves (a database is not a
    /// file tree) put their findings here; the tree compare is then skipped.
    pub verified: Option<crate::tree::compare::CompareReport>,
    /// Extra environment for post-restore checks (e.g. PGHOST).
    pub check_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Set by the drill before the restore: drivers that write the files
    /// themselves stop when their content passes this many bytes.
    pub max_bytes: Option<u64>,
    /// Special files in the backup that were not restored (device nodes).
    pub skipped_special: crate::evidence::record::Findings,
    /// The metadata beyond mode the backup holds and the restore put back.
    pub held: crate::tree::metadata::Held,
    /// Why some metadata could not be put back (the sandbox's filesystem has
    /// no ACLs, say): not compared, and said so in the record.
    pub metadata_notes: Vec<String>,
    /// What the record should say of how the restore treated the backup
    /// (mounted read-only, or why not): `restore.notes`.
    pub notes: Vec<String>,
    /// What a driver that verifies itself compared with (`verify.against`),
    /// when neither the manifest nor the source: "live" (a database).
    pub against: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("backup not found: {0}")]
    NotFound(String),
    #[error("backup {path} is damaged: {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error("unsafe entry {entry:?} in {path} refused: {why}")]
    Unsafe {
        path: PathBuf,
        entry: String,
        why: String,
    },
    #[error("restore {}", of_the_job(.0))]
    Stopped(#[from] Stop),
    /// A restore tool or runbook step failed: the backup did not restore.
    #[error("{step} failed ({status}): {reason}")]
    Tool {
        step: String,
        status: String,
        reason: String,
    },
    /// A step ran out of time or was cancelled; its process group was killed.
    #[error("{step} {}; its processes were killed", of_the_job(stop))]
    StepStopped { step: String, stop: Stop },
    /// A restore tool is missing or cannot start.
    #[error("{0}")]
    NoTool(String),
    #[error("cannot read backup {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path} in the sandbox: {source}")]
    Sandbox { path: PathBuf, source: io::Error },
    /// The drill is set up in a way that would break a safety rule.
    #[error("{0}")]
    Setup(String),
    /// Not enough room for the restore, or more than `max_restore_bytes`.
    #[error("{0}")]
    Space(String),
    /// A valid backup in a form restore-verifier does not read: nothing is
    /// known about the backup, so the drill errs (it is not "damaged").
    #[error("{0}")]
    Unsupported(String),
}

/// A drill's stop in words: a time-out is the job's `timeout` (a drill's
/// steps run under it).
fn of_the_job(stop: &Stop) -> String {
    match stop {
        Stop::TimedOut(_) => format!("{stop} (the job's timeout)"),
        Stop::Cancelled => stop.to_string(),
    }
}

impl DriverError {
    /// True when the error says something about the backup (the drill fails),
    /// false when the drill could not run (the drill errs).
    pub fn is_finding(&self) -> bool {
        match self {
            DriverError::NotFound(_)
            | DriverError::Damaged { .. }
            | DriverError::Unsafe { .. }
            | DriverError::Tool { .. }
            | DriverError::StepStopped {
                stop: Stop::TimedOut(_),
                ..
            }
            | DriverError::Stopped(Stop::TimedOut(_)) => true,
            DriverError::StepStopped {
                stop: Stop::Cancelled,
                ..
            }
            | DriverError::NoTool(_)
            | DriverError::Stopped(Stop::Cancelled)
            | DriverError::Read { .. }
            | DriverError::Sandbox { .. }
            | DriverError::Setup(_)
            | DriverError::Space(_)
            | DriverError::Unsupported(_) => false,
        }
    }
}

/// What is known about a backup that is one file (or directory) before it is
/// restored: its name as id, and its mtime as the backup time unless configured.
pub(crate) fn file_backup(
    kind: &str,
    path: PathBuf,
    backup_time: Option<SystemTime>,
) -> Result<BackupInfo, DriverError> {
    let meta = std::fs::metadata(&path).map_err(|e| DriverError::Read {
        path: path.clone(),
        source: e,
    })?;
    Ok(BackupInfo {
        kind: kind.into(),
        id: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        created_at: backup_time.or(meta.modified().ok()),
        location: Some(path),
        read_by: None,
        started_at: None,
        sha256: None,
        size_estimate: meta.is_file().then_some(meta.len()),
    })
}

/// Refuses a restore that cannot fit: more than `max` bytes, or more than the
/// free space of `sandbox_dir` minus a reserve (5% of the filesystem, at most
/// 1 GiB), so a drill never fills the disk it shares with production.
pub fn check_space(estimate: u64, max: Option<u64>, sandbox_dir: &Path) -> Result<(), DriverError> {
    use crate::units::human_bytes;
    if let Some(max) = max
        && estimate > max
    {
        return Err(DriverError::Space(format!(
            "the restore would write about {}, more than max_restore_bytes ({}); raise it or restore a smaller selection",
            human_bytes(estimate),
            human_bytes(max)
        )));
    }
    let st = rustix::fs::statvfs(sandbox_dir).map_err(|e| DriverError::Read {
        path: sandbox_dir.to_path_buf(),
        source: e.into(),
    })?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let reserve = (st.f_blocks.saturating_mul(st.f_frsize) / 20).min(1 << 30);
    if estimate.saturating_add(reserve) > free {
        return Err(DriverError::Space(format!(
            "not enough space in sandbox_dir {}: the restore needs about {}, {} is free and {} is kept in reserve; free some space or move sandbox_dir",
            sandbox_dir.display(),
            human_bytes(estimate),
            human_bytes(free),
            human_bytes(reserve)
        )));
    }
    Ok(())
}

/// A backup type.
pub trait Driver: Send + Sync {
    /// The configured backup type name.
    fn kind(&self) -> &'static str;

    /// Finds the backup to restore and what is known about it before restoring.
    fn locate(&self, deadline: &Deadline) -> Result<BackupInfo, DriverError>;

    /// Restores `backup` into the empty directory `sandbox`. May fill in
    /// `backup.sha256` and `backup.created_at`. `stats` is filled as the restore
    /// goes, so what ran before a failure is still in the record.
    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError>;

    /// Stops whatever the restore left running (a database cluster). Called
    /// after the checks, also when the drill failed.
    fn finish(&self, _sandbox: &Path) {}

    /// Whether the restore runs the job's own commands under the job's
    /// isolation (a runbook): then the sandbox is the job account's from the
    /// start. Otherwise the agent restores, and the account gets the sandbox
    /// only for the checks.
    fn restores_as_job(&self) -> bool {
        false
    }

    /// Whether each restored file carries the modification time the backup
    /// recorded for it (tar members, restic and borg metadata, a copy with
    /// preserved times), so drift can be judged per file.
    fn records_mtimes(&self) -> bool {
        true
    }
}
