//! Where, inside a restore, the data that corresponds to the source is.
//!
//! Tools store paths the way they were run: `tar czf x.tgz /srv/share` keeps
//! `srv/share/…`, `cd /srv && tar czf x.tgz share` keeps `share/…`, and
//! `cd /srv/share && restic backup .` keeps the content at the top. A restore
//! that holds nothing but the chain of directories leading to the source's
//! path (or a tail of it) is that path; anything else is compared from the top.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The one name in `dir`, when it holds exactly one entry and that entry is a
/// real directory (not a link to one).
fn only_dir(dir: &Path) -> Option<OsString> {
    let mut names = std::fs::read_dir(dir).ok()?;
    let first = names.next()?.ok()?;
    if names.next().is_some() {
        return None;
    }
    first.file_type().ok()?.is_dir().then(|| first.file_name())
}

/// Finds `path` (absolute or relative) in the restored tree `sandbox`: the
/// longest tail of its components `c_k/…/c_n` such that the sandbox holds
/// only `c_k`, which holds only `c_k+1`, and so on down to `c_n`, a
/// directory. `None` when no tail fits: the data is at the top.
pub fn find_root(sandbox: &Path, path: &Path) -> Option<PathBuf> {
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    'tails: for k in 0..parts.len() {
        let mut at = sandbox.to_path_buf();
        for p in &parts[k..] {
            match only_dir(&at) {
                Some(name) if name == *p => at.push(p),
                _ => continue 'tails,
            }
        }
        return Some(parts[k..].iter().collect());
    }
    None
}

/// Where the source's data is in `sandbox`, for a job whose source is
/// `source`: [`find_root`] of its path (and of the path it resolves to, when
/// that is a link); when the sandbox's top could be the source itself too (a
/// source whose only entry is a directory of its own name), the one whose
/// names are the source's wins.
pub fn root_for_source(sandbox: &Path, source: &Path) -> Option<PathBuf> {
    let found = find_root(sandbox, source).or_else(|| {
        let real = std::fs::canonicalize(source).ok()?;
        (real != source)
            .then(|| find_root(sandbox, &real))
            .flatten()
    })?;
    let names = |p: &Path| -> Option<Vec<OsString>> {
        let mut v: Vec<OsString> = std::fs::read_dir(p)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        v.sort();
        Some(v)
    };
    let src = names(source);
    if src.is_some() && names(&sandbox.join(&found)) != src && names(sandbox) == src {
        return None;
    }
    Some(found)
}

/// The restored root must be reached without a symlink: a link to the live
/// source would compare the source with itself.
pub fn check_root(sandbox: &Path, root: &Path) -> Result<(), String> {
    let mut at = sandbox.to_path_buf();
    for c in root.components() {
        match c {
            Component::Normal(p) => at.push(p),
            Component::CurDir => continue,
            _ => {
                return Err(format!(
                    "{} is not a path inside the restore",
                    root.display()
                ));
            }
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} in the restore is a symlink, which is never followed",
                    at.strip_prefix(sandbox).unwrap_or(&at).display()
                ));
            }
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(format!(
                    "the restore produced no {} in the sandbox",
                    root.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for p in paths {
            let full = t.path().join(p);
            if p.ends_with('/') {
                std::fs::create_dir_all(full).unwrap();
            } else {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(full, "x").unwrap();
            }
        }
        t
    }

    #[rstest]
    #[case::absolute(&["srv/share/a.txt", "srv/share/docs/"], "/srv/share", Some("srv/share"))]
    #[case::relative_tail(&["share/a.txt"], "/srv/share", Some("share"))]
    #[case::content_at_the_top(&["a.txt", "docs/b.txt"], "/srv/share", None)]
    #[case::one_dir_at_the_top_not_the_source(&["docs/b.txt"], "/srv/share", None)]
    #[case::something_beside_the_chain(&["srv/share/a.txt", "srv/other.txt"], "/srv/share", None)]
    #[case::longest_tail_first(&["srv/share/share/a.txt"], "/srv/share", Some("srv/share"))]
    #[case::relative_source(&["data/x/a.txt"], "data/x", Some("data/x"))]
    fn roots(#[case] paths: &[&str], #[case] source: &str, #[case] want: Option<&str>) {
        let t = tree(paths);
        assert_eq!(
            find_root(t.path(), Path::new(source)),
            want.map(PathBuf::from)
        );
    }

    #[test]
    fn a_source_holding_a_directory_of_its_own_name() {
        // /srv/share holds only share/ (with a.txt in it).
        let src = tree(&["share/share/a.txt"]);
        let source = src.path().join("share");
        // `cd /srv/share && tar c .`: the sandbox is the source.
        let dot = tree(&["share/a.txt"]);
        assert_eq!(root_for_source(dot.path(), &source), None);
        // `cd /srv && tar c share`: the sandbox holds the source under share/.
        let named = tree(&["share/share/a.txt"]);
        assert_eq!(root_for_source(named.path(), &source), Some("share".into()));
    }

    #[test]
    fn a_root_behind_a_symlink_is_refused() {
        let t = tree(&["real/a.txt"]);
        std::os::unix::fs::symlink("real", t.path().join("srv")).unwrap();
        assert!(find_root(t.path(), Path::new("/srv")).is_none());
        assert!(
            check_root(t.path(), Path::new("srv"))
                .unwrap_err()
                .contains("symlink")
        );
        assert!(check_root(t.path(), Path::new("real")).is_ok());
        assert!(check_root(t.path(), Path::new("none")).is_err());
        assert!(check_root(t.path(), Path::new("")).is_ok());
    }
}
