//! Helpers shared by the library tests and the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z: every fixture entry's mtime.
pub const TREE_TIME: u64 = 1_767_225_600;
/// 2026-01-02T00:00:00Z: the fixture backups' time.
pub const BACKUP_TIME: u64 = TREE_TIME + 86_400;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Copies fixtures/tree to `dst` with the modes and times the archives carry.
pub fn source_tree(dst: &Path) -> PathBuf {
    copy_tree(&fixtures().join("tree"), dst);
    let t = filetime::FileTime::from_system_time(at(TREE_TIME));
    let mut entries: Vec<_> = walkdir::WalkDir::new(dst)
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    entries.reverse();
    for e in entries {
        let p = e.path();
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else if ft.is_file() {
            let mode = if p.ends_with("scripts/run.sh") {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        filetime::set_symlink_file_times(p, t, t).unwrap();
    }
    dst.to_path_buf()
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in walkdir::WalkDir::new(from).min_depth(1) {
        let e = e.unwrap();
        let dst = to.join(e.path().strip_prefix(from).unwrap());
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Copies fixtures/tar/NAME into `dir`, dated BACKUP_TIME.
pub fn archive(name: &str, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let dst = dir.join(name);
    std::fs::copy(fixtures().join("tar").join(name), &dst).unwrap();
    let t = filetime::FileTime::from_system_time(at(BACKUP_TIME));
    filetime::set_file_mtime(&dst, t).unwrap();
    dst
}

/// Non-directory entries under `root`.
pub fn file_count(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter(|e| !e.as_ref().unwrap().file_type().is_dir())
        .count() as u64
}

/// Every path under `root` with its type, size and mtime: to prove nothing changed.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (bool, u64, SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            (
                e.path().to_path_buf(),
                (m.is_dir(), m.len(), m.modified().unwrap()),
            )
        })
        .collect()
}

pub fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// Every entry under `root` with its mode, mtime and content (SHA-256 of a
/// file, the target of a link): a drill must leave a source exactly so.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (u32, SystemTime, String)> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    if !root.exists() {
        return BTreeMap::new();
    }
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(e.path()).unwrap().display().to_string()
            } else if m.is_file() {
                hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap()))
            } else {
                String::new()
            };
            (
                e.path().to_path_buf(),
                (m.mode(), m.modified().unwrap(), content),
            )
        })
        .collect()
}

/// How many processes have exactly `argv` as their command line.
pub fn running(argv: &[&str]) -> usize {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .count()
}
