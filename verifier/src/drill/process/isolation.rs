//! Isolation of a job's steps: the account they run as, no network, a PID
//! namespace of their own (`unshare`), and no ambient capabilities; and the
//! probe that finds a system refusing it before anything runs.

use std::path::Path;
use std::time::Duration;

use super::{StepOptions, run_step};
use crate::drill::deadline::Deadline;

/// Isolation a job asks for its restore commands and checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Run as this account.
    pub run_as: Option<RunAs>,
    /// Run without network (a new network namespace).
    pub no_network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The account `name` (or a numeric uid), looked up in the system's user
    /// database.
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        let user = match name.parse::<u32>() {
            Ok(uid) => uzers::get_user_by_uid(uid),
            Err(_) => uzers::get_user_by_name(name),
        };
        let user = user.ok_or_else(|| format!("there is no user `{name}` on this system"))?;
        Ok(RunAs {
            name: user.name().to_string_lossy().into_owned(),
            uid: user.uid(),
            gid: user.primary_group_id(),
        })
    }
}

impl Isolation {
    pub fn is_none(&self) -> bool {
        self.run_as.is_none() && !self.no_network
    }

    /// Applies this isolation to a step's options.
    pub fn apply(&self, opts: &mut StepOptions) {
        if let Some(r) = &self.run_as {
            opts.run_as = Some((r.uid, r.gid));
        }
        opts.no_network |= self.no_network;
        opts.contained |= !self.is_none();
    }

    /// What it is, for a record or a message: `as nobody, without network`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.run_as {
            parts.push(format!("as {} (uid {})", r.name, r.uid));
        }
        if self.no_network {
            parts.push("without network".to_string());
        }
        parts.join(", ")
    }

    /// Runs a probe under this isolation that enters `dir` by its full path
    /// and tests it is writable, so a system that refuses the isolation (no
    /// privilege to change user, no network namespaces) or a sandbox the
    /// account cannot reach is found before anything runs, with what to do.
    pub fn probe(&self, dir: &Path) -> Result<(), String> {
        if self.is_none() {
            return Ok(());
        }
        if let Some(r) = &self.run_as
            && rustix::process::geteuid().as_raw() != 0
            && rustix::process::geteuid().as_raw() != r.uid
        {
            return Err(format!(
                "run_as = \"{}\" needs the agent to run as root (it runs as uid {})",
                r.name,
                rustix::process::geteuid().as_raw()
            ));
        }
        let mut opts = StepOptions::in_dir(dir);
        self.apply(&mut opts);
        let argv: Vec<String> = ["sh", "-c", "cd \"$1\" && test -w .", "probe"]
            .iter()
            .map(|a| a.to_string())
            .chain([dir.display().to_string()])
            .collect();
        let probe = run_step(&argv, &opts, &Deadline::after(Duration::from_secs(30)));
        let why = match probe {
            Ok(out) if out.success() => return Ok(()),
            Ok(out) if out.last_words().is_empty() => {
                format!("{} is not writable", dir.display())
            }
            Ok(out) => out.last_words(),
            Err(e) => e.to_string(),
        };
        let hint = if why.contains("unshare") {
            "isolation runs steps in new namespaces (PID, and network for network = \"none\"): run the agent as root or allow unprivileged user namespaces (sysctl user.max_user_namespaces)"
        } else if self.run_as.is_some() {
            "the account needs search permission (x) on sandbox_dir and every directory above it"
        } else {
            "is util-linux installed?"
        };
        Err(format!(
            "cannot run a command {} in {}: {why}; {hint}",
            self.describe(),
            dir.display()
        ))
    }
}

/// The argv that runs `argv` contained: util-linux's `unshare` makes a new
/// PID namespace (its child is the step; when the step ends the kernel ends
/// everything else in it, and `--kill-child` ends the step if `unshare` is
/// killed) and, for `no_network`, a new network namespace; a user namespace
/// mapping only the caller's own ids when the agent is not root. `unshare`
/// stays in the step's process group, so the group kill and the deadline
/// still hold. `setpriv` then drops to `run_as`.
pub(super) fn contained(
    argv: &[String],
    run_as: Option<(u32, u32)>,
    no_network: bool,
) -> Vec<String> {
    let euid = rustix::process::geteuid().as_raw();
    let mut out = vec!["unshare".to_string()];
    if euid != 0 {
        out.push("--map-current-user".into());
    }
    out.extend(["--pid".into(), "--fork".into(), "--kill-child".into()]);
    if no_network {
        out.push("--net".into());
    }
    out.push("--".into());
    // Already that account (a non-root agent whose run_as is itself): nothing
    // to drop, and setgroups is denied in a user namespace anyway.
    if let Some((u, g)) = run_as.filter(|(u, _)| *u != euid) {
        out.extend([
            "setpriv".into(),
            format!("--reuid={u}"),
            format!("--regid={g}"),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    out.extend(argv.iter().cloned());
    out
}

/// Whether this process has ambient capabilities (which its children would
/// inherit), e.g. `AmbientCapabilities=` of a systemd unit.
pub fn has_ambient_caps() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapAmb:"))
                .map(|v| v.trim().trim_start_matches('0').is_empty())
        })
        .is_some_and(|none| !none)
}

/// `argv` run by util-linux `setpriv` without ambient or inheritable
/// capabilities.
pub fn without_caps(argv: &[String]) -> Vec<String> {
    ["setpriv", "--ambient-caps=-all", "--inh-caps=-all", "--"]
        .iter()
        .map(|s| s.to_string())
        .chain(argv.iter().cloned())
        .collect()
}
