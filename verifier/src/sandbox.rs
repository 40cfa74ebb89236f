//! The throw-away directory a drill restores into.
//!
//! Created under `sandbox_dir` with a recognisable prefix and always removed after
//! the drill, including read-only directories a restore may have produced.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

    /// Removes the sandbox and everything in it.
    pub fn remove(mut self) -> io::Result<()> {
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

/// Removes a sandbox left behind (by a crash); a missing one is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
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
    fn removes_read_only_trees() {
        let base = tempfile::tempdir().unwrap();
        let sb = Sandbox::create(&base.path().join("sb"), "job").unwrap();
        let p = sb.path().to_path_buf();
        assert!(
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("rv-job-")
        );
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/f"), b"x").unwrap();
        std::fs::set_permissions(p.join("a/b"), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::fs::set_permissions(p.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        sb.remove().unwrap();
        assert!(!p.exists());
    }
}
