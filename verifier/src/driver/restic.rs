//! `restic`: restores a snapshot with the real `restic` binary, the way an
//! operator would. The password reaches restic through `--password-file` (a
//! path), never argv or the environment; the repository is opened without
//! locks and without a cache, so nothing is written outside the sandbox.

use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde::Deserialize;

use super::tool::cause::{self, Tool};
use super::{BackupInfo, Driver, DriverError, RestoreStats, tool};
use crate::drill::deadline::Deadline;
use crate::drill::process::{StepOptions, StepOutcome};

#[derive(Debug, Clone)]
pub struct ResticDriver {
    pub repository: String,
    pub password_file: PathBuf,
    /// "latest" or a snapshot id (or its prefix).
    pub snapshot: String,
    pub host: Option<String>,
    pub tags: Vec<String>,
    /// The directory in the snapshot that corresponds to the source; default:
    /// the snapshot's only path.
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Snapshot {
    time: String,
    id: String,
    short_id: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
}

/// restic's messages, turned into reasons an operator can act on; damage is
/// told by the line that names it (the missing pack, the blob that failed
/// verification), not by restic's complaints about every file it could not
/// finish.
fn explain(out: &StepOutcome) -> Option<String> {
    let e = format!("{}\n{}", out.stderr_seen(), out.stdout_tail);
    let said = |s: &str| e.contains(s);
    let cause = cause::root_cause(Tool::Restic, &e);
    Some(if said("wrong password") {
        "wrong password: restic could not open the repository with password_file".into()
    } else if let Some(c) = cause.filter(|c| c.damage) {
        format!("the repository is damaged: {}", c.text)
    } else if said("unable to open config file")
        || said("Is there a repository")
        || said("does not exist")
    {
        "repository not found: check `repository` (restic found no repository there)".into()
    } else if said("unable to create lock") || said("repository is already locked") {
        "the repository is locked by another restic process".into()
    } else {
        return None;
    })
}

/// The newest of `snaps`; times carry offsets: instants are compared, not
/// strings.
fn newest<'a>(snaps: impl Iterator<Item = &'a Snapshot>) -> Option<&'a Snapshot> {
    snaps.max_by_key(|s| DateTime::parse_from_rfc3339(&s.time).ok())
}

/// Whether the snapshot path `snapshot_path` (absolute, as `restic
/// snapshots` lists it) holds the job's `path`: an absolute `path` equal to
/// it or inside it; a relative one as restic stores a relative backup (`cd
/// /srv && restic backup share` lists `/srv/share` and keeps `share/…`) or an
/// absolute one (`srv/share/…`): a leading part of `path` is the end of the
/// snapshot path.
fn holds(snapshot_path: &str, path: &str) -> bool {
    let parts = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect()
    };
    let (have, want) = (parts(snapshot_path), parts(path));
    if have.is_empty() {
        // A snapshot of `/` holds everything.
        return true;
    }
    if path.starts_with('/') {
        return want.starts_with(&have);
    }
    (1..=want.len().min(have.len())).any(|k| have.ends_with(&want[..k]))
}

impl ResticDriver {
    fn base(&self) -> Vec<String> {
        vec![
            "restic".into(),
            "--repo".into(),
            self.repository.clone(),
            "--password-file".into(),
            self.password_file.display().to_string(),
            "--no-cache".into(),
            "--no-lock".into(),
        ]
    }

    /// `restic stats --mode restore-size` of snapshot `id`: the bytes a
    /// restore writes. `None` when restic cannot say (the restore still runs).
    fn restore_size(&self, id: &str, cwd: &Path, deadline: &Deadline) -> Option<u64> {
        #[derive(Deserialize)]
        struct Stats {
            total_size: u64,
        }
        let mut argv = self.base();
        argv.extend([
            "stats".into(),
            "--mode".into(),
            "restore-size".into(),
            "--json".into(),
            id.into(),
        ]);
        let out = tool::step(
            "restic stats",
            argv,
            &Self::opts(cwd),
            deadline,
            &mut Vec::new(),
            explain,
        )
        .inspect_err(|e| tracing::warn!("no restore size estimate: {e}"))
        .ok()?;
        serde_json::from_slice::<Stats>(&out.stdout)
            .ok()
            .map(|s| s.total_size)
    }

    fn opts(dir: &Path) -> StepOptions {
        let mut o = StepOptions::in_dir(dir);
        o.keep_stdout = 64 << 20;
        o
    }
}

impl Driver for ResticDriver {
    fn kind(&self) -> &'static str {
        "restic"
    }

    fn locate(&self, deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        if let Err(e) = std::fs::metadata(&self.password_file) {
            return Err(DriverError::NoTool(format!(
                "password_file {} is not readable: {e}; fix its path or mode",
                self.password_file.display()
            )));
        }
        let mut argv = self.base();
        argv.extend(["snapshots".into(), "--json".into()]);
        if let Some(h) = &self.host {
            argv.extend(["--host".into(), h.clone()]);
        }
        if !self.tags.is_empty() {
            argv.extend(["--tag".into(), self.tags.join(",")]);
        }
        let cwd = std::env::temp_dir();
        let mut steps = Vec::new();
        let out = tool::step(
            "restic snapshots",
            argv,
            &Self::opts(&cwd),
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
        let snaps: Vec<Snapshot> =
            serde_json::from_slice(&out.stdout).map_err(|e| DriverError::Damaged {
                path: PathBuf::from(&self.repository),
                detail: format!("restic snapshots --json gave unreadable output: {e}"),
            })?;
        let chosen = if self.snapshot == "latest" {
            // With `path`, the newest snapshot that holds it: the host's
            // newest may be of another directory. Else (a snapshot of `.`
            // keeps its content at the top, and its paths do not name what
            // is inside) the newest of all, as without `path`.
            self.path
                .as_deref()
                .and_then(|p| {
                    newest(
                        snaps
                            .iter()
                            .filter(|s| s.paths.iter().any(|sp| holds(sp, p))),
                    )
                })
                .or_else(|| newest(snaps.iter()))
        } else {
            snaps.iter().find(|s| s.id.starts_with(&self.snapshot))
        };
        let s = chosen.ok_or_else(|| {
            DriverError::NotFound(format!(
                "no snapshot {} in {} (host {:?}, tags {:?})",
                self.snapshot, self.repository, self.host, self.tags
            ))
        })?;
        let created = DateTime::parse_from_rfc3339(&s.time)
            .ok()
            .map(std::time::SystemTime::from);
        let root = match (&self.path, s.paths.as_slice()) {
            (Some(p), _) => p.clone(),
            (None, [only]) => only.clone(),
            (None, many) => {
                return Err(DriverError::Setup(format!(
                    "snapshot {} has {} paths ({}); set `path` to the one that matches the source",
                    s.id,
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        // The repository's own count of what a restore writes; only for a
        // snapshot of one path, the whole of which is restored.
        let size_estimate = match s.paths.as_slice() {
            [only] if *only == root => self.restore_size(&s.id, &cwd, deadline),
            _ => None,
        };
        Ok(BackupInfo {
            kind: "restic".into(),
            id: s
                .short_id
                .clone()
                .unwrap_or_else(|| s.id.chars().take(8).collect()),
            location: Some(PathBuf::from(format!(
                "{}#{}:{root}",
                self.repository, s.id
            ))),
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
        let loc = backup
            .location
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (id, root) = loc
            .rsplit_once('#')
            .and_then(|(_, rest)| rest.split_once(':'))
            .map(|(i, r)| (i.to_string(), r.to_string()))
            .unwrap_or_default();
        stats.tool = tool::version(&["restic", "version"], sandbox, deadline);
        let mut argv = self.base();
        argv.extend([
            "restore".into(),
            id,
            "--target".into(),
            sandbox.display().to_string(),
        ]);
        // Chosen by the operator: only that path. Otherwise the whole snapshot
        // (of its one path), and where that path's data is inside it is read
        // from what came back: `restic backup /srv/share` keeps `srv/share/…`,
        // `cd /srv && restic backup share` keeps `share/…`, and `cd
        // /srv/share && restic backup .` keeps the content at the top.
        if self.path.is_some() {
            argv.extend(["--include".into(), root.clone()]);
        }
        let out = tool::step(
            "restic restore",
            argv,
            &Self::opts(sandbox),
            deadline,
            &mut stats.steps,
            explain,
        )?;
        stats.exit_code = out.exit_code;
        // The tool puts owners, ACLs and attributes back; the drill does not
        // yet read what the restic repository holds of them.
        stats.metadata_notes.extend(
            ["owner", "acl", "xattr"].map(|m| format!("{m}: not compared for restic backups yet")),
        );
        let rel = if self.path.is_some() {
            PathBuf::from(root.trim_start_matches('/'))
        } else {
            crate::tree::root::find_root(sandbox, Path::new(&root)).unwrap_or_default()
        };
        let (files, bytes) = tool::tree_stats(&sandbox.join(&rel));
        stats.files = files;
        stats.bytes = bytes;
        stats.root = Some(rel);
        backup.location = Some(PathBuf::from(&self.repository));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::holds;

    #[rstest::rstest]
    #[case::same("/srv/share", "/srv/share", true)]
    #[case::inside("/srv/share", "/srv/share/docs/", true)]
    #[case::other("/srv/other", "/srv/share", false)]
    #[case::prefix_of_a_name("/srv/share", "/srv/shared", false)]
    #[case::parent_is_not_held("/srv/share/docs", "/srv/share", false)]
    #[case::relative_backup("/srv/share", "share", true)]
    #[case::relative_inside("/srv/share", "share/docs", true)]
    #[case::relative_whole("/srv/share", "srv/share/docs", true)]
    #[case::relative_other("/srv/other", "share", false)]
    #[case::dot("/srv/share", "./share", true)]
    #[case::root("/", "srv/share", true)]
    fn a_snapshot_holds_a_path(#[case] snapshot: &str, #[case] path: &str, #[case] want: bool) {
        assert_eq!(holds(snapshot, path), want, "{snapshot} holds {path}");
    }
}
