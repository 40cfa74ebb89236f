//! The throw-away directory a drill restores into.
//!
//! Created under `sandbox_dir` with a recognisable prefix and always removed after
//! the drill, including read-only directories a restore may have produced.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::process::STEP_MARKER;

/// Every sandbox directory name starts with this, so leftovers can be found.
pub const PREFIX: &str = "rv-";

#[derive(Debug)]
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Sandbox {
    /// Makes a fresh, empty sandbox for drill `id` of `job` under `sandbox_dir`
    /// (created if missing), at [`sandbox_path`].
    pub fn create(sandbox_dir: &Path, job: &str, id: &str) -> io::Result<Sandbox> {
        std::fs::create_dir_all(sandbox_dir)?;
        let dir = tempfile::Builder::new()
            .prefix(&sandbox_name(job, id))
            .rand_bytes(0)
            .tempdir_in(sandbox_dir)?;
        let path = dir.path().to_path_buf();
        Ok(Sandbox {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the sandbox and everything in it, after killing whatever still
    /// runs in it: a step's child that left its process group (`setsid`)
    /// escapes the group kill, not this.
    pub fn remove(mut self) -> io::Result<()> {
        kill_processes_in(&self.path);
        make_writable(&self.path);
        match self.dir.take() {
            Some(d) => d.close(),
            None => Ok(()),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.dir.is_some() {
            kill_processes_in(&self.path);
            make_writable(&self.path);
        }
    }
}

fn sandbox_name(job: &str, id: &str) -> String {
    format!("{PREFIX}{job}-{id}")
}

/// Where the sandbox of drill `id` is: known before the drill starts, so a crash
/// can be cleaned up from the drill's in-progress marker.
pub fn sandbox_path(sandbox_dir: &Path, job: &str, id: &str) -> PathBuf {
    sandbox_dir.join(sandbox_name(job, id))
}

/// `p` made absolute and free of `.`/`..` and symlinks, as far as it exists:
/// the longest existing ancestor is canonicalized, the rest appended as written.
fn real(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                norm.pop();
            }
            std::path::Component::CurDir => {}
            other => norm.push(other),
        }
    }
    let mut base = norm.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                base = parent;
            }
            _ => return norm,
        }
    }
}

/// True when one of the two paths is inside the other (or they are the same),
/// also when they do not exist yet.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    let (a, b) = (real(a), real(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// Processes a drill started (restore tools, runbook steps, a database server)
/// can outlive it: after a crash, or when a step's child started a session of
/// its own (`setsid`). Before a sandbox goes, kill every process that a drill
/// started (its environment carries [`STEP_MARKER`]) and that works in the
/// sandbox or names it on its command line. Anybody else's process there, an
/// operator's shell that changed into it say, is left alone: removing the
/// directory does not need it gone.
fn kill_processes_in(path: &Path) {
    let needle = path.to_string_lossy().into_owned();
    if needle.len() < 8 {
        return;
    }
    let marker = format!("{}={}", STEP_MARKER.0, STEP_MARKER.1);
    let me = std::process::id();
    // A process may fork while the scan runs: scan until nothing is left.
    for _ in 0..10 {
        let mut killed = 0;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if !(cwd.starts_with(path) || String::from_utf8_lossy(&cmd).contains(&needle)) {
                continue;
            }
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let ours = env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes());
            if !ours {
                continue;
            }
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32)
                && rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok()
            {
                killed += 1;
            }
        }
        if killed == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes a sandbox left behind (by a crash); a missing one is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    kill_processes_in(path);
    make_writable(path);
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Restored trees may contain directories without write or search permission;
/// removal as a non-root user needs them opened up first.
fn make_writable(root: &Path) {
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir()
            && let Ok(m) = e.metadata()
        {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(
                    e.path(),
                    std::fs::Permissions::from_mode(mode | 0o700),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_left_sandbox_kills_what_runs_in_it() {
        use std::os::unix::process::CommandExt;
        let base = tempfile::tempdir().unwrap();
        let sb = base
            .path()
            .join("sandboxes/rv-job-0190aaaa-0000-7000-8000-000000000000");
        std::fs::create_dir_all(&sb).unwrap();
        // A step of a crashed drill: its own process group, working in the sandbox.
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(&sb)
            .env(STEP_MARKER.0, STEP_MARKER.1)
            .process_group(0)
            .spawn()
            .unwrap();
        // Somebody else's: an operator's shell that changed into the sandbox,
        // and a job of that shell's group.
        let mut shell = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(&sb)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut pager = std::process::Command::new("sleep")
            .arg("601")
            .process_group(shell.id() as i32)
            .spawn()
            .unwrap();
        remove_tree(&sb).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the leftover process was not killed");
        assert!(!sb.exists());
        for p in [&mut shell, &mut pager] {
            assert!(
                p.try_wait().unwrap().is_none(),
                "a process the drill did not start was killed"
            );
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    #[test]
    fn overlap_is_found_before_paths_exist() {
        let base = tempfile::tempdir().unwrap();
        let share = base.path().join("srv/share");
        std::fs::create_dir_all(&share).unwrap();
        assert!(overlaps(&share.join(".rv/sandbox"), &share));
        assert!(overlaps(&share, &share.join("x/../y")));
        assert!(overlaps(
            &base.path().join("srv/./share/../share/z"),
            &share
        ));
        assert!(!overlaps(&base.path().join("srv/share2"), &share));
        std::os::unix::fs::symlink(&share, base.path().join("link")).unwrap();
        assert!(overlaps(&base.path().join("link/new/dir"), &share));
    }

    #[test]
    fn removes_read_only_trees() {
        let base = tempfile::tempdir().unwrap();
        let sb = Sandbox::create(&base.path().join("sb"), "job", "id1").unwrap();
        let p = sb.path().to_path_buf();
        assert_eq!(p, sandbox_path(&base.path().join("sb"), "job", "id1"));
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/f"), b"x").unwrap();
        std::fs::set_permissions(p.join("a/b"), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::fs::set_permissions(p.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        sb.remove().unwrap();
        assert!(!p.exists());
    }
}
