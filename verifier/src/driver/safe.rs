//! Path safety for restores: nothing is ever created outside the sandbox.
//!
//! Entry names are checked lexically (no absolute paths, no `..`), and no write
//! goes through an existing symlink: every ancestor of a destination is
//! `lstat`ed and files are created with `O_EXCL`, which refuses to follow a
//! symlink at the final component. A symlink itself may point anywhere (an
//! absolute `current -> /srv/app/releases/42` is data): it is restored as a
//! link and never followed. [`check_all_links`] finds links that lead out of
//! the sandbox, so that post-restore checks never reach live data through one.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an entry is refused.
#[derive(Debug)]
pub enum Refusal {
    Unsafe(String),
    Io(PathBuf, io::Error),
}

/// Normalises an entry name to a relative path; `Ok(None)` for the root (".").
pub fn safe_rel(name: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute path".into());
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Resolves the symlink at `root/rel` inside `root`, following every symlink
/// met on the way (as the kernel would), and fails if any step leaves `root`.
/// Catches chains that each look harmless: `a/up -> ../..`, `a/x -> up/../../etc`.
pub fn resolve_inside(root: &Path, rel: &Path) -> Result<(), String> {
    use std::collections::VecDeque;
    let mut at: Vec<std::ffi::OsString> = rel
        .parent()
        .unwrap_or(Path::new(""))
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let first = std::fs::read_link(root.join(rel)).map_err(|e| e.to_string())?;
    let mut pending: VecDeque<std::ffi::OsString> = VecDeque::new();
    let push_front = |pending: &mut VecDeque<std::ffi::OsString>, t: &Path| -> Result<(), String> {
        if t.is_absolute() {
            return Err(format!(
                "symlink chain reaches absolute path {}",
                t.display()
            ));
        }
        for c in t.components().rev() {
            pending.push_front(c.as_os_str().to_owned());
        }
        Ok(())
    };
    push_front(&mut pending, &first)?;
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        match c.to_str() {
            Some(".") => continue,
            Some("..") => {
                if at.pop().is_none() {
                    return Err(format!(
                        "symlink {} resolves outside the sandbox",
                        rel.display()
                    ));
                }
                continue;
            }
            _ => {}
        }
        at.push(c);
        let here: PathBuf = at.iter().collect();
        let full = root.join(&here);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("symlink {} loops", rel.display()));
                }
                let t = std::fs::read_link(&full).map_err(|e| e.to_string())?;
                at.pop();
                push_front(&mut pending, &t)?;
            }
            // A dangling or partial path stays inside: nothing is followed.
            _ => {}
        }
    }
    Ok(())
}

/// Checks every symlink under `root` with [`resolve_inside`]; returns the first
/// offending link and why.
pub fn check_all_links(root: &Path) -> Result<(), (PathBuf, String)> {
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        // A directory that cannot be listed may hide a link: fail closed.
        let e = e.map_err(|err| {
            let rel = err
                .path()
                .and_then(|p| p.strip_prefix(root).ok())
                .unwrap_or(Path::new(""))
                .to_path_buf();
            (rel, format!("cannot be checked for links: {err}"))
        })?;
        if e.file_type().is_symlink() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(e.path())
                .to_path_buf();
            resolve_inside(root, &rel).map_err(|why| (rel, why))?;
        }
    }
    Ok(())
}

/// Creates the missing parent directories of `root/rel`, refusing to pass
/// through a symlink or a non-directory.
pub fn ensure_parent(root: &Path, rel: &Path) -> Result<(), Refusal> {
    let mut cur = root.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Refusal::Unsafe(format!(
                    "would write through symlink {}",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Refusal::Unsafe(format!(
                    "parent {} is not a directory",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|e| Refusal::Io(cur.clone(), e))?;
            }
            Err(e) => return Err(Refusal::Io(cur.clone(), e)),
        }
    }
    Ok(())
}

/// Clears the way for a new non-directory entry at `dest` (a later archive
/// member replaces an earlier one, as tar does).
pub fn clear_dest(dest: &Path) -> Result<(), Refusal> {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => Err(Refusal::Unsafe(
            "an entry replaces an existing directory".into(),
        )),
        Ok(_) => std::fs::remove_file(dest).map_err(|e| Refusal::Io(dest.to_path_buf(), e)),
        Err(_) => Ok(()),
    }
}

/// Makes a FIFO at `dest` (owner-only until its mode is set); it is never
/// opened, so nothing waits for a writer.
pub fn make_fifo(dest: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dest,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(Into::into)
}

/// Creates a new file; `O_EXCL` never follows a symlink.
pub fn create_new(dest: &Path) -> Result<File, Refusal> {
    clear_dest(dest)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Refusal::Io(dest.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_lexically() {
        assert_eq!(safe_rel(Path::new("./a/b")).unwrap(), Some("a/b".into()));
        assert_eq!(safe_rel(Path::new("./")).unwrap(), None);
        assert!(safe_rel(Path::new("a/../../etc")).is_err());
        assert!(safe_rel(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn chained_links_that_escape_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        // Each target looks fine on its own; together they reach ../../..
        std::os::unix::fs::symlink("../../..", root.join("a/b/c/up3")).unwrap();
        std::os::unix::fs::symlink("up3/../../../etc/shadow", root.join("a/b/c/x")).unwrap();
        assert!(resolve_inside(&root, Path::new("a/b/c/up3")).is_ok());
        let (bad, _) = check_all_links(&root).unwrap_err();
        assert_eq!(bad, Path::new("a/b/c/x"));
        std::fs::remove_file(root.join("a/b/c/x")).unwrap();
        std::os::unix::fs::symlink("up3/a/b", root.join("a/b/c/ok")).unwrap();
        assert!(check_all_links(&root).is_ok());
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(check_all_links(&root).is_err());
    }
}
