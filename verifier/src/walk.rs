//! Streaming, sorted walk of a directory tree.
//!
//! Both sides of a compare are walked in the same order (siblings sorted by name,
//! depth first), which is the component-wise order of `Path`'s `Ord`. That lets the
//! compare merge-join two walks while holding only one directory listing per level
//! in memory, never the whole tree.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::GlobSet;

/// The type of a tree entry, as the inventory sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Other => "special file",
        }
    }

    fn of(meta: &Metadata) -> Kind {
        let ft = meta.file_type();
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

/// One inventory entry: everything the inventory compares, plus the times drift
/// tolerance needs.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the walked root.
    pub rel: PathBuf,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Creation (birth) time, where the filesystem records it.
    pub btime: Option<SystemTime>,
    pub target: Option<PathBuf>,
    /// Content hash, when the entry comes from a manifest.
    pub sha256: Option<String>,
    /// For manifest entries that are not files ("table"), their kind as written.
    pub kind_label: Option<String>,
}

/// A problem reading part of a tree; `rel` is relative to the root when known.
#[derive(Debug)]
pub struct WalkError {
    pub rel: PathBuf,
    pub message: String,
}

fn to_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs as u64)
    }
}

/// Builds an entry from `lstat` data.
pub fn entry_from(rel: PathBuf, full: &Path, meta: &Metadata) -> Result<Entry, WalkError> {
    let kind = Kind::of(meta);
    let target = if kind == Kind::Symlink {
        Some(std::fs::read_link(full).map_err(|e| WalkError {
            rel: rel.clone(),
            message: format!("cannot read symlink: {e}"),
        })?)
    } else {
        None
    };
    Ok(Entry {
        size: if kind == Kind::File { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        mtime: to_time(meta.mtime(), meta.mtime_nsec()),
        ctime: to_time(meta.ctime(), meta.ctime_nsec()),
        btime: meta.created().ok(),
        target,
        sha256: None,
        kind_label: None,
        kind,
        rel,
    })
}

/// Iterator over a tree in merge-join order; the root itself is not yielded.
pub struct Walk {
    root: PathBuf,
    inner: walkdir::IntoIter,
    excludes: Option<GlobSet>,
}

impl Walk {
    pub fn new(root: &Path, excludes: Option<GlobSet>) -> Walk {
        let inner = walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            // Siblings share their parent's prefix, so comparing whole paths as
            // bytes orders them by name, without parsing components.
            .sort_by(|a, b| {
                let (a, b) = (a.path().as_os_str(), b.path().as_os_str());
                a.as_encoded_bytes().cmp(b.as_encoded_bytes())
            })
            .into_iter();
        Walk {
            root: root.to_path_buf(),
            inner,
            excludes,
        }
    }

    fn rel(&self, p: &Path) -> PathBuf {
        p.strip_prefix(&self.root).unwrap_or(p).to_path_buf()
    }
}

impl Iterator for Walk {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let item = self.inner.next()?;
            let dent = match item {
                Ok(d) => d,
                Err(e) => {
                    let rel = e.path().map(|p| self.rel(p)).unwrap_or_default();
                    let message = match e.io_error() {
                        Some(io) => io.to_string(),
                        None => e.to_string(),
                    };
                    return Some(Err(WalkError { rel, message }));
                }
            };
            let rel = self.rel(dent.path());
            if let Some(ex) = &self.excludes
                && ex.is_match(&rel)
            {
                if dent.file_type().is_dir() {
                    self.inner.skip_current_dir();
                }
                continue;
            }
            let meta = match dent.metadata() {
                Ok(m) => m,
                Err(e) => {
                    return Some(Err(WalkError {
                        rel,
                        message: e.to_string(),
                    }));
                }
            };
            return Some(entry_from(rel, dent.path(), &meta));
        }
    }
}
