//! `borg`: extracts an archive with the real `borg`, in the sandbox. The
//! passphrase reaches borg through BORG_PASSCOMMAND reading `passphrase_file`
//! (never argv or a variable holding it); borg's cache and config live in the
//! state directory; the repository is read without taking its lock.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Deserialize;

use super::tool::cause::{self, Tool};
use super::{BackupInfo, Driver, DriverError, RestoreStats, tool};
use crate::deadline::Deadline;
use crate::process::{StepOptions, StepOutcome};

#[derive(Debug, Clone)]
pub struct BorgDriver {
    pub repository: String,
    pub passphrase_file: Option<PathBuf>,
    /// "latest", an archive name, or a glob (newest match wins).
    pub archive: String,
    /// The directory in the archive (as stored, without a leading `/`) that
    /// corresponds to the source; default: the archive root.
    pub path: Option<String>,
    /// borg's own files (BORG_BASE_DIR).
    pub base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
struct List {
    archives: Vec<Archive>,
}

#[derive(Debug, Deserialize)]
struct Archive {
    name: String,
    id: String,
    start: String,
}

/// borg's messages, turned into reasons; damage is told by the line that
/// names it (a traceback's exception line), not the traceback's first line.
fn explain(out: &StepOutcome) -> Option<String> {
    let e = format!("{}\n{}", out.stderr_seen(), out.stdout_tail);
    let said = |s: &str| e.contains(s);
    Some(if said("passphrase supplied") && said("is incorrect") {
        "wrong passphrase: borg could not open the repository with passphrase_file".into()
    } else if said("is not a valid repository") || said("does not exist") {
        "repository not found: check `repository`".into()
    } else if said("Failed to create/acquire the lock") {
        "the repository is locked by another borg process".into()
    } else if let Some(c) = cause::root_cause(Tool::Borg, &e).filter(|c| c.damage) {
        format!("the repository is damaged: {}", c.text)
    } else {
        return None;
    })
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

impl BorgDriver {
    fn opts(&self, cwd: &Path) -> StepOptions {
        let mut o = StepOptions::in_dir(cwd);
        o.keep_stdout = 64 << 20;
        let mut env: Vec<(OsString, OsString)> = vec![
            ("BORG_BASE_DIR".into(), self.base_dir.clone().into()),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK".into(),
                "yes".into(),
            ),
            ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()),
            ("BORG_DISPLAY_PASSPHRASE".into(), "no".into()),
            // borg prints archive times in local time without an offset:
            // UTC, so they are read the same whatever the agent's zone.
            ("TZ".into(), "UTC".into()),
        ];
        match &self.passphrase_file {
            Some(f) => env.push((
                "BORG_PASSCOMMAND".into(),
                format!("cat {}", quote(f)).into(),
            )),
            // An unencrypted repository; never prompt.
            None => env.push(("BORG_PASSPHRASE".into(), "".into())),
        }
        o.env = env;
        o
    }
}

impl BorgDriver {
    /// The archive's original size by `borg info --json`: the bytes a full
    /// extract writes (an over-estimate when `path` is part of the archive).
    /// `None` when borg cannot say; the restore still runs.
    fn original_size(&self, archive: &str, deadline: &Deadline) -> Option<u64> {
        #[derive(Deserialize)]
        struct Info {
            archives: Vec<InfoArchive>,
        }
        #[derive(Deserialize)]
        struct InfoArchive {
            stats: InfoStats,
        }
        #[derive(Deserialize)]
        struct InfoStats {
            original_size: u64,
        }
        let argv = vec![
            "borg".into(),
            "info".into(),
            "--json".into(),
            "--bypass-lock".into(),
            format!("{}::{archive}", self.repository),
        ];
        let out = tool::step(
            "borg info",
            argv,
            &self.opts(&self.base_dir),
            deadline,
            &mut Vec::new(),
            explain,
        )
        .inspect_err(|e| tracing::warn!("no restore size estimate: {e}"))
        .ok()?;
        let info: Info = serde_json::from_slice(&out.stdout).ok()?;
        info.archives.first().map(|a| a.stats.original_size)
    }
}

impl Driver for BorgDriver {
    fn kind(&self) -> &'static str {
        "borg"
    }

    fn locate(&self, deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        if let Some(f) = &self.passphrase_file
            && let Err(e) = std::fs::metadata(f)
        {
            return Err(DriverError::NoTool(format!(
                "passphrase_file {} is not readable: {e}; fix its path or mode",
                f.display()
            )));
        }
        std::fs::create_dir_all(&self.base_dir).map_err(|e| DriverError::Sandbox {
            path: self.base_dir.clone(),
            source: e,
        })?;
        let argv = vec![
            "borg".into(),
            "list".into(),
            "--json".into(),
            "--bypass-lock".into(),
            self.repository.clone(),
        ];
        let mut steps = Vec::new();
        let out = tool::step(
            "borg list",
            argv,
            &self.opts(&self.base_dir),
            deadline,
            &mut steps,
            explain,
        )
        .map_err(|e| match e {
            DriverError::Tool { reason, .. } if reason.starts_with("repository not found") => {
                DriverError::NotFound(format!("{}: {reason}", self.repository))
            }
            other => other,
        })?;
        let list: List = serde_json::from_slice(&out.stdout).map_err(|e| DriverError::Damaged {
            path: PathBuf::from(&self.repository),
            detail: format!("borg list --json gave unreadable output: {e}"),
        })?;
        let pattern = glob::Pattern::new(&self.archive).ok();
        let chosen = list
            .archives
            .iter()
            .filter(|a| {
                self.archive == "latest"
                    || a.name == self.archive
                    || pattern.as_ref().is_some_and(|p| p.matches(&a.name))
            })
            .max_by(|a, b| a.start.cmp(&b.start));
        let a = chosen.ok_or_else(|| {
            DriverError::NotFound(format!(
                "no archive {} in {}",
                self.archive, self.repository
            ))
        })?;
        // borg writes local time without an offset; it runs with TZ=UTC.
        let created = NaiveDateTime::parse_from_str(&a.start, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|t| std::time::SystemTime::from(t.and_utc()));
        let size_estimate = self.original_size(&a.name, deadline);
        Ok(BackupInfo {
            kind: "borg".into(),
            id: format!("{} ({})", a.name, &a.id[..a.id.len().min(12)]),
            location: Some(PathBuf::from(format!("{}::{}", self.repository, a.name))),
            created_at: created,
            read_by: None,
            started_at: created,
            sha256: None,
            size_estimate,
        })
    }

    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        stats.tool = tool::version(&["borg", "--version"], sandbox, deadline);
        let target = backup
            .location
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut argv = vec![
            "borg".into(),
            "extract".into(),
            "--bypass-lock".into(),
            target,
        ];
        let rel = self
            .path
            .as_deref()
            .map(|p| PathBuf::from(p.trim_start_matches('/')));
        if let Some(r) = &rel {
            argv.push(r.display().to_string());
        }
        let out = tool::step(
            "borg extract",
            argv,
            &self.opts(sandbox),
            deadline,
            &mut stats.steps,
            explain,
        )?;
        stats.exit_code = out.exit_code;
        // The tool puts owners, ACLs and attributes back; the drill does not
        // yet read what the borg repository holds of them.
        stats.metadata_notes.extend(
            ["owner", "acl", "xattr"].map(|m| format!("{m}: not compared for borg backups yet")),
        );
        let root = rel.clone().unwrap_or_default();
        let (files, bytes) = tool::tree_stats(&sandbox.join(&root));
        stats.files = files;
        stats.bytes = bytes;
        stats.root = rel;
        Ok(())
    }
}
