//! `command`: the runbook, as steps. Each step is an argv list with `{sandbox}`
//! and `{backup}` placeholders, run in order with the sandbox as working
//! directory and a minimal environment. This drills any tool (rsync, a share
//! mirror, a vendor CLI) exactly as its runbook says.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{BackupInfo, Driver, DriverError, RestoreStats, tool};
use crate::drill::deadline::Deadline;
use crate::drill::process::{Isolation, StepOptions};

#[derive(Debug, Clone)]
pub struct CommandDriver {
    pub steps: Vec<Vec<String>>,
    /// Optional backup file or directory (a glob; newest wins), for `{backup}`.
    pub backup: Option<String>,
    /// When the backup was taken; else the `{backup}` file's mtime (not a
    /// directory's), else unknown.
    pub backup_time: Option<SystemTime>,
    /// Who runs the steps, and with what network.
    pub isolation: Isolation,
}

fn fill(arg: &str, sandbox: &Path, backup: Option<&Path>) -> String {
    let mut s = arg.replace("{sandbox}", &sandbox.display().to_string());
    if let Some(b) = backup {
        s = s.replace("{backup}", &b.display().to_string());
    }
    s
}

impl Driver for CommandDriver {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn restores_as_job(&self) -> bool {
        true
    }

    /// A runbook's tools may or may not keep times: one backup time decides.
    fn records_mtimes(&self) -> bool {
        false
    }

    fn locate(&self, _deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        let location: Option<PathBuf> = match &self.backup {
            Some(pattern) => Some(match glob::glob(pattern) {
                Ok(paths) => paths
                    .flatten()
                    .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (m.modified().ok(), p)))
                    .max()
                    .map(|(_, p)| p)
                    .ok_or_else(|| DriverError::NotFound(format!("nothing matches {pattern}")))?,
                Err(e) => return Err(DriverError::NotFound(format!("{pattern}: {e}"))),
            }),
            None => None,
        };
        // A file's mtime is when it was written. A directory's says nothing
        // of when the backup ran (`rsync -a` copies the source's old one), so
        // a mirror without `backup_time` has no known time: then nothing is
        // excused as drift, and an RPO cannot be shown to be met.
        let mtime = location.as_ref().and_then(|p| {
            let m = std::fs::metadata(p).ok()?;
            m.is_file().then(|| m.modified().ok()).flatten()
        });
        Ok(BackupInfo {
            kind: "command".into(),
            id: location
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "runbook".into()),
            created_at: self.backup_time.or(mtime),
            location,
            read_by: None,
            started_at: None,
            sha256: None,
            size_estimate: None,
        })
    }

    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        if backup.created_at.is_none() {
            stats.notes.push(
                match &self.backup {
                    Some(_) => "the backup time is unknown: no backup_time, and the backup is a directory (its mtime is not when it was written); no difference is excused as changed since the backup, and an RPO cannot be shown to be met",
                    None => "the backup time is unknown: no backup_time and no backup path; no difference is excused as changed since the backup, and an RPO cannot be shown to be met",
                }
                .into(),
            );
        }
        let mut opts = StepOptions::in_dir(sandbox);
        self.isolation.apply(&mut opts);
        opts.drop_caps = true;
        for (i, step) in self.steps.iter().enumerate() {
            let argv: Vec<String> = step
                .iter()
                .map(|a| fill(a, sandbox, backup.location.as_deref()))
                .collect();
            let name = format!(
                "step {} ({})",
                i + 1,
                step.first().map(String::as_str).unwrap_or("")
            );
            let out = tool::step(&name, argv, &opts, deadline, &mut stats.steps, |_| None)?;
            stats.exit_code = out.exit_code;
        }
        let (files, bytes) = tool::tree_stats(sandbox);
        stats.files = files;
        stats.bytes = bytes;
        Ok(())
    }
}
