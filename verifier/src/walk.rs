//! Streaming, sorted walk of a directory tree.
//!
//! Both sides of a compare are walked in the same order (siblings sorted by name,
//! depth first), which is the component-wise order of `Path`'s `Ord`. That lets the
//! compare merge-join two walks while holding only one directory listing per level
//! in memory, never the whole tree.
//!
//! The walk keeps each directory it is in open and looks entries up by name
//! relative to it (`statx`, `openat`), so the kernel resolves one path component
//! per entry instead of the whole path. Every entry carries its directory, so
//! the content workers open files the same way.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::GlobSet;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, StatxFlags};

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

    fn of(ft: FileType) -> Kind {
        match ft {
            FileType::Symlink => Kind::Symlink,
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            _ => Kind::Other,
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
    /// How to reach the entry's bytes.
    pub handle: Handle,
}

/// An open directory, shared by the entries listed from it.
pub type DirFd = Arc<OwnedFd>;

/// How a content worker reaches an entry's bytes.
#[derive(Debug, Clone, Default)]
pub enum Handle {
    /// By name in the directory the walk found it in.
    InDir(DirFd),
    /// By its whole path (manifests, samples, very deep trees).
    #[default]
    Path,
}

/// Flags for opening a file to read: never follow a symlink, never block on a
/// FIFO that replaced a file since the walk saw it.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

/// Opens a file for reading through its handle; `full` is its whole path.
pub fn open_file(handle: &Handle, full: &Path) -> std::io::Result<File> {
    let fd = match (handle, full.file_name()) {
        (Handle::InDir(d), Some(name)) => rustix::fs::openat(d, name, READ_FLAGS, Mode::empty()),
        _ => rustix::fs::openat(CWD, full, READ_FLAGS, Mode::empty()),
    }?;
    Ok(File::from(fd))
}

/// A problem reading part of a tree; `rel` is relative to the root when known.
#[derive(Debug)]
pub struct WalkError {
    pub rel: PathBuf,
    pub message: String,
}

fn to_time(secs: i64, nsecs: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs.into())
    }
}

/// Directories deeper than this below the root are not kept open (each level
/// holds one descriptor); below it entries are looked up by their whole path.
const OPEN_DEPTH: usize = 32;

/// Where an entry is: by name in an open directory, or by its whole path.
enum At<'a> {
    Dir(&'a DirFd, &'a std::ffi::OsStr),
    Path(&'a Path),
}

const STAT_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::BTIME);

fn err(rel: &Path, message: String) -> WalkError {
    WalkError {
        rel: rel.to_path_buf(),
        message,
    }
}

/// `lstat` of one entry, as an inventory entry.
fn stat_entry(rel: PathBuf, at: At, handle: Handle) -> Result<Entry, WalkError> {
    let flags = AtFlags::SYMLINK_NOFOLLOW;
    let st = match &at {
        At::Dir(d, name) => rustix::fs::statx(d, *name, flags, STAT_MASK),
        At::Path(p) => rustix::fs::statx(CWD, *p, flags, STAT_MASK),
    }
    .map_err(|e| err(&rel, std::io::Error::from(e).to_string()))?;
    let kind = Kind::of(FileType::from_raw_mode(st.stx_mode.into()));
    let target = if kind == Kind::Symlink {
        let link = match &at {
            At::Dir(d, name) => rustix::fs::readlinkat(d, *name, Vec::new()),
            At::Path(p) => rustix::fs::readlinkat(CWD, *p, Vec::new()),
        }
        .map_err(|e| {
            err(
                &rel,
                format!("cannot read symlink: {}", std::io::Error::from(e)),
            )
        })?;
        Some(PathBuf::from(OsString::from_vec(link.into_bytes())))
    } else {
        None
    };
    let time = |t: rustix::fs::StatxTimestamp| to_time(t.tv_sec, t.tv_nsec);
    let has_btime = StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME);
    Ok(Entry {
        size: if kind == Kind::File { st.stx_size } else { 0 },
        mode: u32::from(st.stx_mode) & 0o7777,
        mtime: time(st.stx_mtime),
        ctime: time(st.stx_ctime),
        btime: has_btime.then(|| time(st.stx_btime)),
        target,
        sha256: None,
        kind_label: None,
        kind,
        rel,
        handle,
    })
}

/// One directory being walked: its names, sorted, and (near the root) its
/// open descriptor.
struct Frame {
    rel: PathBuf,
    dir: Option<DirFd>,
    names: std::vec::IntoIter<OsString>,
}

/// Opens a directory and lists it, sorted by name. Only the root is opened
/// through a symlink (`is_root`).
fn open_dir(
    at: At,
    keep_open: bool,
    is_root: bool,
) -> std::io::Result<(Option<DirFd>, Vec<OsString>)> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !is_root {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match at {
        At::Dir(d, name) => rustix::fs::openat(d, name, flags, Mode::empty()),
        At::Path(p) => rustix::fs::openat(CWD, p, flags, Mode::empty()),
    }?;
    let mut names = Vec::new();
    for dent in rustix::fs::Dir::read_from(&fd)? {
        let dent = dent?;
        let name = dent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok((keep_open.then(|| Arc::new(fd)), names))
}

/// Iterator over a tree in merge-join order; the root itself is not yielded.
pub struct Walk {
    root: PathBuf,
    excludes: Option<GlobSet>,
    stack: Vec<Frame>,
    started: bool,
    /// A directory that was yielded but could not be listed: reported next.
    pending: Option<WalkError>,
}

impl Walk {
    pub fn new(root: &Path, excludes: Option<GlobSet>) -> Walk {
        Walk {
            root: root.to_path_buf(),
            excludes,
            stack: Vec::new(),
            started: false,
            pending: None,
        }
    }

    fn descend(&mut self, rel: PathBuf, at: At) -> Result<(), WalkError> {
        let keep_open = self.stack.len() < OPEN_DEPTH;
        match open_dir(at, keep_open, self.stack.is_empty()) {
            Ok((dir, names)) => {
                self.stack.push(Frame {
                    rel,
                    dir,
                    names: names.into_iter(),
                });
                Ok(())
            }
            Err(e) => Err(WalkError {
                rel,
                message: e.to_string(),
            }),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        if !self.started {
            self.started = true;
            let root = self.root.clone();
            if let Err(e) = self.descend(PathBuf::new(), At::Path(&root)) {
                return Some(Err(e));
            }
        }
        loop {
            let frame = self.stack.last_mut()?;
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            let rel = frame.rel.join(&name);
            if let Some(ex) = &self.excludes
                && ex.is_match(&rel)
            {
                continue;
            }
            let dir = frame.dir.clone();
            // Beyond the open directories, by the whole path.
            let full = match dir {
                Some(_) => PathBuf::new(),
                None => self.root.join(&rel),
            };
            let at = || match &dir {
                Some(d) => At::Dir(d, &name),
                None => At::Path(&full),
            };
            let handle = dir.clone().map_or(Handle::Path, Handle::InDir);
            let entry = match stat_entry(rel, at(), handle) {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            if entry.kind == Kind::Dir
                && let Err(e) = self.descend(entry.rel.clone(), at())
            {
                self.pending = Some(e);
            }
            return Some(Ok(entry));
        }
    }
}
