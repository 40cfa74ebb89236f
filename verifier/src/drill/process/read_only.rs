//! Running a step that cannot write to given directories (a backup
//! repository): bind-mounted read-only in a mount namespace of its own, as
//! root in a thread of the agent's, else under util-linux `unshare`.

use std::path::PathBuf;

use super::{StepError, StepOptions, StepOutcome, run_step};
use crate::drill::deadline::Deadline;

/// A directory that could not be made read-only for a step
/// ([`run_read_only`]); the step did not run.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {} read-only for {program}: {why}", path.display())]
pub struct ReadOnlyRefused {
    pub program: String,
    pub path: PathBuf,
    pub why: String,
}

/// [`run_step`] where the step cannot write to `dirs` (a backup repository):
/// each is bind-mounted read-only onto itself in a mount namespace of the
/// step's own, which nothing else on the host sees, and everything the step
/// starts inherits. When that cannot be arranged the step does not run.
pub fn run_read_only(
    argv: &[String],
    opts: &StepOptions,
    dirs: &[PathBuf],
    deadline: &Deadline,
) -> Result<Result<StepOutcome, StepError>, ReadOnlyRefused> {
    let Some(first) = dirs.first() else {
        return Ok(run_step(argv, opts, deadline));
    };
    let program = argv.first().cloned().unwrap_or_default();
    if rustix::process::geteuid().is_root() {
        // A mount namespace belongs to a thread: this one makes its own,
        // mounts the directories read-only there and starts the step, which
        // inherits it; the agent's other threads never see the mounts.
        return std::thread::scope(|s| {
            s.spawn(|| {
                mount_read_only(dirs).map_err(|(path, why)| ReadOnlyRefused {
                    program: program.clone(),
                    path,
                    why,
                })?;
                Ok(run_step(argv, opts, deadline))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
    }
    // Not root: util-linux `unshare` makes a user namespace (the agent's ids
    // mapped to root in it, which `mount` needs) with a mount namespace, and
    // a fixed script mounts each directory there before it execs the step.
    let mut wrapped: Vec<String> = [
        "unshare",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        READ_ONLY_SCRIPT,
        "restore-verifier",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    wrapped.extend(dirs.iter().map(|d| d.display().to_string()));
    wrapped.push("--".into());
    wrapped.extend(argv.iter().cloned());
    let out = match run_step(&wrapped, opts, deadline) {
        Ok(out) => out,
        other => return Ok(other),
    };
    let said = out.stderr_seen();
    let refused = !out.success()
        && (said.contains(READ_ONLY_REFUSED)
            || said
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("unshare: ")));
    if !refused {
        return Ok(Ok(out));
    }
    let why = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(READ_ONLY_REFUSED))
        .collect::<Vec<_>>()
        .join(" | ");
    let path = dirs
        .iter()
        .find(|d| said.contains(&format!("{READ_ONLY_REFUSED} {}", d.display())))
        .unwrap_or(first)
        .clone();
    Err(ReadOnlyRefused {
        program,
        path,
        why: if why.is_empty() {
            "the mount failed".into()
        } else {
            why
        },
    })
}

/// What the script says (exit 125) when a directory could not be mounted
/// read-only.
const READ_ONLY_REFUSED: &str = "restore-verifier: cannot mount read-only:";

/// `sh -c` script: `$1 … --` are the directories, the rest the step. Its
/// arguments are never part of the script's text.
const READ_ONLY_SCRIPT: &str = r#"while [ "$1" != -- ]; do
  if mount --bind -o ro,nosuid,nodev,noexec -- "$1" "$1" && ! test -w "$1"; then shift; else
    echo "restore-verifier: cannot mount read-only: $1" >&2; exit 125; fi
done
shift; exec "$@""#;

/// In the calling thread: a new mount namespace, nothing in it propagating
/// back to the host, and each of `dirs` bind-mounted read-only onto itself;
/// checked by the kernel's own view of the mount (ST_RDONLY).
fn mount_read_only(dirs: &[PathBuf]) -> Result<(), (PathBuf, String)> {
    use rustix::fs::{StatVfsMountFlags as St, statvfs};
    use rustix::mount::{
        MountFlags as Ms, MountPropagationFlags, mount_bind, mount_change, mount_remount,
    };
    let first = dirs.first().cloned().unwrap_or_default();
    // Sound as used: CLONE_NEWNS brings only CLONE_FS with it (this thread's
    // own root, cwd and umask), never CLONE_FILES, the flag that makes
    // `unshare` unsafe for a Rust program.
    #[allow(deprecated)]
    let made = rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNS);
    made.map_err(|e| (first.clone(), format!("no mount namespace of its own: {e}")))?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| {
        (
            first.clone(),
            format!("cannot make its mounts private: {e}"),
        )
    })?;
    for d in dirs {
        let fail = |what: &str, e: rustix::io::Errno| (d.clone(), format!("{what}: {e}"));
        let before = statvfs(d).map_err(|e| fail("cannot read its mount", e))?;
        mount_bind(d, d).map_err(|e| fail("bind mount failed", e))?;
        // A remount sets every flag it is given and clears the others: keep
        // those the mount had (a container may have locked them).
        let mut flags = Ms::BIND | Ms::RDONLY;
        for (st, ms) in [
            (St::NOSUID, Ms::NOSUID),
            (St::NODEV, Ms::NODEV),
            (St::NOEXEC, Ms::NOEXEC),
            (St::NOATIME, Ms::NOATIME),
            (St::NODIRATIME, Ms::NODIRATIME),
            (St::RELATIME, Ms::RELATIME),
        ] {
            if before.f_flag.contains(st) {
                flags |= ms;
            }
        }
        mount_remount(d, flags, "").map_err(|e| fail("read-only remount failed", e))?;
        let after = statvfs(d).map_err(|e| fail("cannot read its mount", e))?;
        if !after.f_flag.contains(St::RDONLY) {
            return Err((d.clone(), "the mount is still writable".into()));
        }
    }
    Ok(())
}
