//! The throw-away server's setup: which binaries, which account runs it, where
//! its socket goes (a Unix socket's path is short), what `config check` can
//! tell in advance, and why a server that did not start failed.

use std::path::{Path, PathBuf};

use super::PORT;
use crate::driver::DriverError;

/// The newest `/usr/lib/postgresql/N/bin`, else whatever is on PATH.
pub(super) fn bindir() -> PathBuf {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            if let Ok(v) = e.file_name().to_string_lossy().parse::<u32>() {
                let bin = e.path().join("bin");
                if bin.join("postgres").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, bin));
                }
            }
        }
    }
    best.map(|(_, b)| b).unwrap_or_default()
}

pub(super) fn tool_path(bin: &Path, name: &str) -> String {
    if bin.as_os_str().is_empty() {
        name.to_string()
    } else {
        bin.join(name).display().to_string()
    }
}

/// PostgreSQL refuses to run its server as root: use the `postgres` account.
pub(super) fn server_user() -> Result<Option<(u32, u32)>, DriverError> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Ok(None);
    }
    crate::drill::process::RunAs::lookup("postgres")
        .ok()
        .map(|r| Some((r.uid, r.gid)))
        .ok_or_else(|| {
            DriverError::NoTool(
                "running as root, but there is no `postgres` user to run the throw-away cluster as; install PostgreSQL's server package or run restore-verifier as another user".into(),
            )
        })
}

pub(super) fn chown(p: &Path, ids: Option<(u32, u32)>) -> Result<(), DriverError> {
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(p, Some(u), Some(g)).map_err(|e| DriverError::Sandbox {
            path: p.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

pub(super) fn mkdir(p: &Path, ids: Option<(u32, u32)>) -> Result<(), DriverError> {
    std::fs::create_dir_all(p).map_err(|e| DriverError::Sandbox {
        path: p.to_path_buf(),
        source: e,
    })?;
    chown(p, ids)
}

/// The longest path a Unix socket may have (`sun_path` less its NUL).
pub(super) const SOCKET_PATH_MAX: usize = 107;
/// The socket's path for a socket directory `dir`.
pub(super) fn socket_path_len(dir: &Path) -> usize {
    dir.as_os_str().len() + "/.s.PGSQL.".len() + PORT.len()
}

/// The server's socket directory in `sandbox`, when the socket's path there
/// fits in a Unix socket address; else `None`: a short directory beside the
/// sandbox is used instead ([`short_socket_dir`]).
pub(super) fn socket_dir_in_sandbox(sandbox: &Path) -> Option<PathBuf> {
    let dir = sandbox.join("pg").join("sock");
    (socket_path_len(&dir) <= SOCKET_PATH_MAX).then_some(dir)
}

/// The short socket directory of the drill whose sandbox is `sandbox`:
/// `sandbox_dir/rv-s-<drill id>`, whatever the job's name. It ends with the
/// drill's id, so crash recovery removes it with the sandbox it belongs to.
pub(super) fn short_socket_path(sandbox: &Path) -> PathBuf {
    let name = sandbox
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = name.get(name.len().saturating_sub(36)..).unwrap_or(&name);
    sandbox
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{}s-{id}", crate::drill::sandbox::PREFIX))
}

/// A directory removed when dropped.
#[derive(Debug)]
pub(super) struct SocketDir(pub(super) PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes the short socket directory ([`short_socket_path`]): new (never an
/// existing one), owner-only (0700) and owned by the server's account, since
/// trust authentication is safe only because nobody else can reach the
/// socket. Removed when the drill ends (`finish`, or its drop).
pub(super) fn short_socket_dir(
    sandbox: &Path,
    ids: Option<(u32, u32)>,
) -> Result<SocketDir, DriverError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = short_socket_path(sandbox);
    let too_long = socket_path_len(&dir) > SOCKET_PATH_MAX;
    let why = |e: String| {
        DriverError::Setup(format!(
            "no room for the throw-away PostgreSQL server's socket: in the sandbox its path would be {} bytes, over the {SOCKET_PATH_MAX} a Unix socket allows, and {} {e}; shorten sandbox_dir (to {} bytes or fewer)",
            socket_path_len(&sandbox.join("pg").join("sock")),
            dir.display(),
            SOCKET_PATH_MAX - socket_path_len(Path::new("")) - "/rv-s-".len() - 36,
        ))
    };
    if too_long {
        return Err(why(format!(
            "would make it {} bytes too",
            socket_path_len(&dir)
        )));
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| why(format!("cannot be made ({e})")))?;
    let guard = SocketDir(dir.clone());
    // Whatever the umask made of it.
    std::fs::set_permissions(&guard.0, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| why(format!("cannot be made private ({e})")))?;
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(&guard.0, Some(u), Some(g))
            .map_err(|e| why(format!("cannot be given to the server's account ({e})")))?;
    }
    Ok(guard)
}

/// Why the server's account cannot reach `sandbox_dir` (its directories
/// from `/` down must let it search), with what would let it; `None` when
/// it can.
pub(super) fn unreachable(sandbox_dir: &Path, (uid, gid): (u32, u32)) -> Option<String> {
    let b = crate::drill::reach::first_blocking(sandbox_dir, uid, gid)?;
    Some(format!(
        "the `postgres` account (uid {uid}), which runs the throw-away PostgreSQL server, cannot reach sandbox_dir {}: {} does not let it search; run `{}`, or set [agent] sandbox_dir to a directory it can reach",
        sandbox_dir.display(),
        b.describe(),
        b.fix(uid, gid)
    ))
}

/// What cannot work for a `postgres` job with sandboxes under `sandbox_dir`
/// (the `config check` view): the server's account cannot reach
/// `sandbox_dir`; or the socket's path in `sandbox` (a drill's sandbox of
/// the job) is too long, and so is the short one beside it.
/// Only a root agent runs the server as `postgres`; others, as themselves.
pub fn setup_problems(sandbox_dir: &Path, sandbox: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match server_user() {
        Ok(Some(ids)) => problems.extend(unreachable(sandbox_dir, ids)),
        Ok(None) => {}
        Err(e) => problems.push(e.to_string()),
    }
    if socket_dir_in_sandbox(sandbox).is_none()
        && socket_path_len(&short_socket_path(sandbox)) > SOCKET_PATH_MAX
    {
        // (Too long: nothing is made.)
        problems.extend(short_socket_dir(sandbox, None).err().map(|e| e.to_string()));
    }
    problems
}

/// The reason a server that did not start gives, from its log: the FATAL
/// (or PANIC) lines first, then what led to them (the log's other warnings
/// and messages, in file order, without the routine ones), at most five.
pub(super) fn server_log_reason(log: &str) -> String {
    let routine = [
        "starting PostgreSQL",
        "database system is shut down",
        "database system was shut down at",
        "listening on ",
    ];
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !routine.iter().any(|r| l.contains(r)))
        .collect();
    let fatal = |l: &&str| l.starts_with("FATAL:") || l.starts_with("PANIC:");
    let mut picked: Vec<&str> = lines.iter().copied().filter(fatal).collect();
    picked.extend(lines.iter().copied().filter(|l| !fatal(l)));
    if picked.is_empty() {
        // Nothing but routine lines: the last ones, in file order.
        let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        picked = all[all.len().saturating_sub(3)..].to_vec();
    }
    picked.truncate(5);
    if picked.is_empty() {
        "its log is empty".into()
    } else {
        picked.join(" | ")
    }
}
