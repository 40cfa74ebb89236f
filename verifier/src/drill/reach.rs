//! Whether an account can reach a directory: search permission on every
//! directory from `/` down to it, decided as the kernel decides it from each
//! directory's mode bits, owner and group. The account is taken with its
//! primary group only: that is all a step or a server run as an account has
//! (its supplementary groups are dropped).

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A directory on the way that the account may not search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub dir: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Blocked {
    /// "/srv/locked (mode 0700, owner root)".
    pub fn describe(&self) -> String {
        let name = |uid: u32| {
            uzers::get_user_by_uid(uid)
                .map(|u| u.name().to_string_lossy().into_owned())
                .unwrap_or_else(|| uid.to_string())
        };
        format!(
            "{} (mode {:04o}, owner {})",
            self.dir.display(),
            self.mode & 0o7777,
            name(self.uid)
        )
    }

    /// What would let `uid`:`gid` through: search permission for others, or
    /// for the group when the account is in the directory's group.
    pub fn fix(&self, uid: u32, gid: u32) -> String {
        let who = if self.uid == uid {
            "u"
        } else if self.gid == gid {
            "g"
        } else {
            "o"
        };
        format!("chmod {who}+x {}", self.dir.display())
    }
}

/// The first directory from `/` down to `path` (itself included) that
/// `uid`:`gid` may not search. Only what exists is looked at (`path` may be
/// created later, by the agent); a symlink on the way is resolved first.
/// `None` also when it cannot be told: a directory with an ACL (it may grant
/// what the mode bits do not) or that cannot be examined.
pub fn first_blocking(path: &Path, uid: u32, gid: u32) -> Option<Blocked> {
    if uid == 0 {
        return None;
    }
    let mut existing = path;
    let real = loop {
        if let Ok(r) = existing.canonicalize() {
            break r;
        }
        existing = existing.parent()?;
    };
    let mut dir = PathBuf::new();
    for c in real.components() {
        dir.push(c);
        let m = std::fs::metadata(&dir).ok()?;
        if !m.is_dir() {
            return None;
        }
        let mode = m.mode();
        let bit = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        if mode & bit != 0 {
            continue;
        }
        let acl = crate::tree::metadata::get(&dir, OsStr::new(crate::tree::metadata::ACL_ACCESS));
        if !matches!(acl, Ok(None)) {
            return None;
        }
        return Some(Blocked {
            dir,
            mode,
            uid: m.uid(),
            gid: m.gid(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_first_directory_without_search_permission_is_named() {
        let t = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        if me != 0 {
            return; // needs root to make directories of another owner
        }
        let (uid, gid) = (65534, 65534);
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let locked = t.path().join("a");
        std::fs::create_dir_all(locked.join("b")).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o750)).unwrap();
        let b = first_blocking(&locked.join("b/not-yet/c"), uid, gid).unwrap();
        assert_eq!(b.dir, locked);
        assert_eq!(b.fix(uid, gid), format!("chmod o+x {}", locked.display()));
        // Its group may search: the account in that group gets through.
        std::os::unix::fs::chown(&locked, None, Some(gid)).unwrap();
        assert_eq!(first_blocking(&locked.join("b"), uid, gid), None);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        let b = first_blocking(&locked.join("b"), uid, gid).unwrap();
        assert_eq!(b.fix(uid, gid), format!("chmod g+x {}", locked.display()));
        // Root searches anything.
        assert_eq!(first_blocking(&locked.join("b"), 0, 0), None);
    }
}
