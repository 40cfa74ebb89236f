//! The throw-away directory a drill restores into.
//!
//! Created under `sandbox_dir` with a recognisable prefix and always removed after
//! the drill, including read-only directories a restore may have produced.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::drill::process::STEP_MARKER;

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
/// its own (`setsid`). Before a sandbox goes, kill every process that works in
/// the sandbox or names it on its command line, and that a drill started: its
/// environment, or an ancestor's, carries [`STEP_MARKER`]. (PostgreSQL's
/// server processes overwrite their environment with their title; their
/// parent, the server, keeps it.) Anybody else's process there, an operator's
/// shell that changed into it say, is left alone: removing the directory does
/// not need it gone.
fn kill_processes_in(path: &Path) {
    let needle = path.to_string_lossy().into_owned();
    if needle.len() < 8 {
        return;
    }
    let me = std::process::id();
    // A process may fork while the scan runs: scan until nothing is left.
    for _ in 0..10 {
        // Find them all before killing any: a killed parent's children are
        // handed to init, and their ancestry would be lost.
        let mut ours = std::collections::HashMap::new();
        let mut targets = Vec::new();
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
            if started_by_a_drill(pid, me, &mut ours) {
                targets.push(pid);
            }
        }
        let mut killed = 0;
        for pid in targets {
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

/// True when `pid` or one of its ancestors (below this process) carries
/// [`STEP_MARKER`] in its environment; answers are kept in `known`.
fn started_by_a_drill(pid: u32, me: u32, known: &mut std::collections::HashMap<u32, bool>) -> bool {
    let marker = format!("{}={}", STEP_MARKER.0, STEP_MARKER.1);
    let mut chain = Vec::new();
    let mut p = pid;
    let answer = loop {
        if let Some(a) = known.get(&p) {
            break *a;
        }
        if p <= 1 || p == me || chain.len() > 64 {
            break false;
        }
        chain.push(p);
        let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            break true;
        }
        // Field 4 of /proc/<pid>/stat, after the parenthesised command name.
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        match stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|pp| pp.parse::<u32>().ok())
        {
            Some(parent) => p = parent,
            None => break false,
        }
    };
    for c in chain {
        known.insert(c, answer);
    }
    answer
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
        // A server's worker that overwrote its environment (as PostgreSQL's
        // do); its parent carries the marker.
        let mut server = std::process::Command::new("sh")
            .args(["-c", "env -i sleep 602 & wait"])
            .current_dir(&sb)
            .env(STEP_MARKER.0, STEP_MARKER.1)
            .process_group(0)
            .spawn()
            .unwrap();
        let worker = loop {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.id()))
                .unwrap_or_default();
            if let Some(k) = kids.split_whitespace().next() {
                break k.parse::<u32>().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        // Wait until the worker is sleep itself, without the marker.
        while !std::fs::read(format!("/proc/{worker}/cmdline"))
            .unwrap_or_default()
            .starts_with(b"sleep")
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        remove_tree(&sb).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the leftover process was not killed");
        server.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z "),
            "the server's worker still runs: {state}"
        );
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
