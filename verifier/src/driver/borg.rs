//! `borg`: extracts an archive with the real `borg`, in the sandbox. The
//! passphrase reaches borg through BORG_PASSCOMMAND reading `passphrase_file`
//! (never argv or a variable holding it), the key of a keyfile repository as
//! BORG_KEY_FILE (`key_file`); borg's cache and config live in the state
//! directory; the repository is read without taking its lock, and a local
//! one is mounted read-only for every borg command, so that borg cannot
//! write to it (it would rebuild a damaged index, for one).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Deserialize;

use super::tool::cause::{self, Tool};
use super::{BackupInfo, Driver, DriverError, RestoreStats, tool};
use crate::drill::deadline::Deadline;
use crate::drill::process::{StepOptions, StepOutcome};

#[derive(Debug, Clone)]
pub struct BorgDriver {
    pub repository: String,
    pub passphrase_file: Option<PathBuf>,
    /// The key of a keyfile repository (`borg init -e keyfile`), handed to
    /// borg as BORG_KEY_FILE.
    pub key_file: Option<PathBuf>,
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

/// How a reason starts when borg stopped because it would have had to write
/// to the (read-only) repository: the drill errs, it does not fail.
const NEEDS_WRITE: &str = "cannot read the repository without writing to it";

/// borg's messages, turned into reasons; damage is told by the line that
/// names it (a traceback's exception line), not the traceback's first line.
/// `repository` is the repository as borg was given it (a local one's path).
fn explain(out: &StepOutcome, repository: &str) -> Option<String> {
    let e = format!("{}\n{}", out.stderr_seen(), out.stdout_tail);
    let said = |s: &str| e.contains(s);
    let exception = || crate::drill::process::python_exception(&e).unwrap_or_default();
    Some(if said("passphrase supplied") && said("is incorrect") {
        "wrong passphrase: borg could not open the repository with passphrase_file".into()
    } else if said("No key file for repository") {
        "no key file for this repository: it is encrypted with a key kept outside it (`borg init -e keyfile`), and borg found none in the agent's own keys directory; set `key_file` in [job.backup] to the key's path (`borg key export` on the backup host makes a copy)".into()
    } else if said("Mismatch between repository") {
        "key_file is the key of another repository: set `key_file` to this repository's key".into()
    } else if said("Invalid key file for repository") {
        "key_file is not a borg key file: set `key_file` to this repository's key (`borg key export`)".into()
    } else if said("Read-only file system") && exception().contains(repository) {
        // borg tried to change the repository, which is mounted read-only.
        let rebuild = e
            .lines()
            .find_map(|l| l.split_once("Repository index missing or corrupted"))
            .map(|(_, why)| {
                why.trim_start_matches(|c: char| c == ',' || c.is_whitespace())
                    .trim_start_matches("trying to recover from: ")
                    .trim()
                    .to_string()
            });
        match rebuild {
            Some(why) => format!(
                "{NEEDS_WRITE}: its index is missing or damaged ({why}) and borg would rebuild it, writing index, hints and a new segment into the repository. A drill never writes to a backup, so nothing was changed. Rebuild the index with `borg check --repository-only {repository}` (it rewrites the index from the segments; run it while no backup runs), then drill again"
            ),
            None => format!(
                "{NEEDS_WRITE} ({}). A drill never writes to a backup, so nothing was changed; look into it with `borg check --repository-only {repository}`",
                exception()
            ),
        }
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

/// Whether `dir`'s filesystem is mounted read-only (ST_RDONLY).
fn already_read_only(dir: &Path) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

impl BorgDriver {
    /// The repository's directory, when it is local: `ssh://…` and scp-like
    /// `user@host:path` are remote (served by `borg serve` over ssh).
    fn local_dir(&self) -> Option<PathBuf> {
        let r = self.repository.as_str();
        let r = r.strip_prefix("file://").unwrap_or(r);
        let remote = r.starts_with("ssh://")
            || r.find(':')
                .is_some_and(|c| r.find('/').is_none_or(|s| c < s));
        (!remote).then(|| PathBuf::from(r))
    }

    /// The local repository's directory, resolved (symlinks, `..`), when
    /// it is there: the one directory that is mounted read-only and the one
    /// borg is given, so both name the same files.
    fn canonical_dir(&self) -> Option<PathBuf> {
        self.local_dir()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .filter(|d| d.is_dir())
    }

    /// The repository as borg is given it: resolved when it is local.
    fn repository_arg(&self) -> String {
        self.canonical_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| self.repository.clone())
    }

    /// What every borg command is kept from writing to: the local
    /// repository's directory, unless its filesystem is mounted read-only
    /// already (a `:ro` volume, systemd's ProtectSystem=strict), where a
    /// mount of its own would add nothing and may not be allowed. None when
    /// it is remote or not there (borg then finds no repository and writes
    /// nothing).
    fn read_only(&self) -> Vec<PathBuf> {
        self.canonical_dir()
            .filter(|d| !already_read_only(d))
            .into_iter()
            .collect()
    }

    /// Runs one borg command where it cannot write to the repository. A
    /// command that stopped because it would have had to is an error of the
    /// drill (the backup may be fine), not a finding.
    fn step(
        &self,
        name: &str,
        argv: Vec<String>,
        cwd: &Path,
        deadline: &Deadline,
        steps: &mut Vec<crate::evidence::record::StepRecord>,
    ) -> Result<StepOutcome, DriverError> {
        let repository = self.repository_arg();
        tool::step_on(
            name,
            argv,
            &self.opts(cwd),
            &self.read_only(),
            deadline,
            steps,
            |o| explain(o, &repository),
        )
        .map_err(|e| match e {
            DriverError::Tool { step, reason, .. } if reason.starts_with(NEEDS_WRITE) => {
                DriverError::Setup(format!("{step} {reason}"))
            }
            other => other,
        })
    }

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
        if let Some(k) = &self.key_file {
            env.push(("BORG_KEY_FILE".into(), k.clone().into()));
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
            format!("{}::{archive}", self.repository_arg()),
        ];
        let out = self
            .step("borg info", argv, &self.base_dir, deadline, &mut Vec::new())
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
        if let Some(f) = &self.key_file
            && let Err(e) = std::fs::File::open(f)
        {
            return Err(DriverError::NoTool(format!(
                "key_file {} is not readable: {e}; fix its path or mode",
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
            self.repository_arg(),
        ];
        let mut steps = Vec::new();
        let out = self
            .step("borg list", argv, &self.base_dir, deadline, &mut steps)
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
            location: Some(PathBuf::from(format!(
                "{}::{}",
                self.repository_arg(),
                a.name
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
        stats.notes.push(match (self.local_dir(), self.canonical_dir()) {
            (_, Some(d)) if already_read_only(&d) => format!(
                "the repository {} is on a filesystem mounted read-only: borg could not write to it",
                d.display()
            ),
            (_, Some(d)) => format!(
                "the repository {} was mounted read-only for every borg command (a bind mount in the drill's own mount namespace): borg could not write to it",
                d.display()
            ),
            (Some(d), None) => format!("the repository {} is not there", d.display()),
            (None, None) => "the repository is remote and was not mounted read-only here: that borg did not write to it rests on its server (serve the drill's ssh key from a read-only copy or mount of the repository)".into(),
        });
        let out = self.step("borg extract", argv, sandbox, deadline, &mut stats.steps)?;
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
