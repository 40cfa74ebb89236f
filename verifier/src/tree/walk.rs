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
    /// Compared by type and mode; never opened.
    Fifo,
    /// No archiver stores one: left out of the compare and counted.
    Socket,
    /// Device nodes: left out of the compare and counted.
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::Other => "device node",
        }
    }

    fn of(ft: FileType) -> Kind {
        match ft {
            FileType::Symlink => Kind::Symlink,
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
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
    pub uid: u32,
    pub gid: u32,
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

impl Entry {
    /// Sockets and device nodes: no archiver stores a socket, and a device
    /// holds no data and is never made in a sandbox; the compare counts them
    /// and goes on. (A manifest's database tables are `Other` too, by label.)
    pub fn is_skipped_special(&self) -> bool {
        match self.kind {
            Kind::Socket => true,
            Kind::Other => self.kind_label.as_deref().is_none_or(|l| l == "other"),
            _ => false,
        }
    }
}

/// An open directory, shared by the entries listed from it.
pub type DirFd = Arc<OwnedFd>;

/// How a content worker reaches an entry's bytes.
#[derive(Debug, Clone, Default)]
pub enum Handle {
    /// By name in the directory the walk found it in.
    InDir(DirFd),
    /// By its path from the tree's root (manifests, samples).
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

/// Opens `rel` beneath the directory `dir` without following any symlink on
/// the way (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). Kernels
/// before 5.6 lack it: there only the last component is kept from being a
/// symlink.
fn open_beneath(dir: &DirFd, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
    match rustix::fs::openat2(dir, rel, flags, Mode::empty(), how) {
        Err(rustix::io::Errno::NOSYS) => {
            rustix::fs::openat(dir, rel, flags | OFlags::NOFOLLOW, Mode::empty())
        }
        r => r,
    }
}

/// Opens a regular file to read it: by name in the directory the walk found it
/// in, else by `rel` beneath the tree's `root` (no symlink followed), else by
/// `full` path. What is open must still be a regular file: a FIFO or a device
/// swapped in since the walk is reported, never read.
pub fn open_file(
    handle: &Handle,
    root: Option<&DirFd>,
    rel: &Path,
    full: &Path,
) -> std::io::Result<File> {
    let open = |flags: OFlags| match (handle, root, rel.file_name()) {
        (Handle::InDir(d), _, Some(name)) => rustix::fs::openat(d, name, flags, Mode::empty()),
        (_, Some(r), _) => open_beneath(r, rel, flags),
        _ => rustix::fs::openat(CWD, full, flags, Mode::empty()),
    };
    let fd = match open(READ_FLAGS) {
        // A lease held by a file server (Samba, NFS): wait for it to break.
        Err(rustix::io::Errno::WOULDBLOCK) => open(READ_FLAGS - OFlags::NONBLOCK),
        r => r,
    }?;
    let ft = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    if ft != FileType::RegularFile {
        return Err(std::io::Error::other(format!(
            "no longer a regular file (now a {})",
            Kind::of(ft).name()
        )));
    }
    Ok(File::from(fd))
}

/// Opens the root of a tree for [`open_file`]; a root given through a symlink
/// is followed.
pub fn open_root(root: &Path) -> Option<DirFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::openat(CWD, root, flags, Mode::empty())
        .ok()
        .map(Arc::new)
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

/// How many directory levels below the root stay open while the walk is below
/// them. Deeper, only the directory being listed is open; one the walk comes
/// back to is opened again beneath the deepest open one, never through a
/// symlink.
const OPEN_DEPTH: usize = 32;

const STAT_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
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

/// What the inventory needs of an entry's `lstat`.
struct Meta {
    ftype: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: SystemTime,
    ctime: SystemTime,
    btime: Option<SystemTime>,
}

/// `lstat` of `name` in `dir`: `statx`, or where a kernel or a seccomp
/// profile refuses it, the standard library's `lstat` through the directory.
fn lstat_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<Meta> {
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, STAT_MASK) {
        Ok(st) => {
            let time = |t: rustix::fs::StatxTimestamp| to_time(t.tv_sec, t.tv_nsec);
            let has_btime = StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME);
            Ok(Meta {
                ftype: FileType::from_raw_mode(st.stx_mode.into()),
                mode: u32::from(st.stx_mode),
                uid: st.stx_uid,
                gid: st.stx_gid,
                size: st.stx_size,
                mtime: time(st.stx_mtime),
                ctime: time(st.stx_ctime),
                btime: has_btime.then(|| time(st.stx_btime)),
            })
        }
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            p.push(name);
            let m = std::fs::symlink_metadata(p)?;
            let t = |s: i64, ns: i64| to_time(s, u32::try_from(ns).unwrap_or(0));
            Ok(Meta {
                ftype: FileType::from_raw_mode(m.mode()),
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.len(),
                mtime: t(m.mtime(), m.mtime_nsec()),
                ctime: t(m.ctime(), m.ctime_nsec()),
                btime: m.created().ok(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `lstat` of one entry, as an inventory entry.
fn stat_entry(rel: PathBuf, dir: &DirFd, name: &std::ffi::OsStr) -> Result<Entry, WalkError> {
    let m = lstat_at(dir, name).map_err(|e| err(&rel, e.to_string()))?;
    let kind = Kind::of(m.ftype);
    let target = if kind == Kind::Symlink {
        let link = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| {
            err(
                &rel,
                format!("cannot read symlink: {}", std::io::Error::from(e)),
            )
        })?;
        Some(PathBuf::from(OsString::from_vec(link.into_bytes())))
    } else {
        None
    };
    Ok(Entry {
        size: if kind == Kind::File { m.size } else { 0 },
        mode: m.mode & 0o7777,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        ctime: m.ctime,
        btime: m.btime,
        target,
        sha256: None,
        kind_label: None,
        kind,
        rel,
        handle: Handle::InDir(dir.clone()),
    })
}

/// One directory being walked: its names, sorted, and its descriptor while
/// it is open.
struct Frame {
    rel: PathBuf,
    dir: Option<DirFd>,
    names: std::vec::IntoIter<OsString>,
}

/// Lists an open directory, sorted by name.
fn list(fd: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for dent in rustix::fs::Dir::read_from(fd)? {
        let dent = dent?;
        let name = dent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

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

    fn push(&mut self, rel: PathBuf, fd: OwnedFd) -> Result<(), WalkError> {
        let names = list(&fd).map_err(|e| err(&rel, e.to_string()))?;
        // Deep in the tree only the directory being listed stays open.
        if self.stack.len() > OPEN_DEPTH
            && let Some(parent) = self.stack.last_mut()
        {
            parent.dir = None;
        }
        self.stack.push(Frame {
            rel,
            dir: Some(Arc::new(fd)),
            names: names.into_iter(),
        });
        Ok(())
    }

    /// The top directory's descriptor, opened again beneath the deepest open
    /// directory when the walk comes back to it.
    fn top_dir(&mut self) -> Result<DirFd, WalkError> {
        let top = self.stack.len() - 1;
        if let Some(d) = &self.stack[top].dir {
            return Ok(d.clone());
        }
        let (base, base_rel) = self.stack[..top]
            .iter()
            .rev()
            .find_map(|f| f.dir.clone().map(|d| (d, f.rel.clone())))
            .expect("the root stays open");
        let rel = self.stack[top].rel.clone();
        let below = rel.strip_prefix(&base_rel).unwrap_or(&rel);
        let fd = Arc::new(
            open_beneath(&base, below, DIR_FLAGS)
                .map_err(|e| err(&rel, std::io::Error::from(e).to_string()))?,
        );
        self.stack[top].dir = Some(fd.clone());
        Ok(fd)
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
            // Only the root may be reached through a symlink.
            let flags = DIR_FLAGS - OFlags::NOFOLLOW;
            let opened = rustix::fs::openat(CWD, &self.root, flags, Mode::empty())
                .map_err(|e| err(Path::new(""), std::io::Error::from(e).to_string()))
                .and_then(|fd| self.push(PathBuf::new(), fd));
            if let Err(e) = opened {
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
            let dir = match self.top_dir() {
                Ok(d) => d,
                Err(e) => {
                    // The directory went away (or was swapped for a link)
                    // while the walk was below it: the rest of it is unread.
                    self.stack.pop();
                    return Some(Err(e));
                }
            };
            let entry = match stat_entry(rel, &dir, &name) {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            if entry.kind == Kind::Dir {
                let opened = rustix::fs::openat(&dir, &name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| err(&entry.rel, std::io::Error::from(e).to_string()))
                    .and_then(|fd| self.push(entry.rel.clone(), fd));
                if let Err(e) = opened {
                    self.pending = Some(e);
                }
            }
            return Some(Ok(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::ffi::OsStrExt;

    /// What an inventory compares of an entry, from either walk.
    type Seen = (PathBuf, Kind, u64, u32, Option<PathBuf>);

    fn seen(e: &Entry) -> Seen {
        (e.rel.clone(), e.kind, e.size, e.mode, e.target.clone())
    }

    /// The walk this one replaced: walkdir, sorted by path bytes, not
    /// following links, skipping excluded entries (and what is below them).
    fn reference(root: &Path, excludes: Option<&GlobSet>) -> Vec<Seen> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut it = walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            .sort_by(|a, b| {
                a.path()
                    .as_os_str()
                    .as_bytes()
                    .cmp(b.path().as_os_str().as_bytes())
            })
            .into_iter();
        let mut out = Vec::new();
        while let Some(d) = it.next() {
            let d = d.unwrap();
            let rel = d.path().strip_prefix(root).unwrap().to_path_buf();
            if excludes.is_some_and(|g| g.is_match(&rel)) {
                if d.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            let m = d.metadata().unwrap();
            let ft = m.file_type();
            let kind = if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_socket() {
                Kind::Socket
            } else {
                Kind::Other
            };
            let target = ft
                .is_symlink()
                .then(|| std::fs::read_link(d.path()).unwrap());
            let size = if kind == Kind::File { m.len() } else { 0 };
            out.push((rel, kind, size, m.mode() & 0o7777, target));
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Node {
        File(u16, u32),
        Dir,
        Link(Vec<u8>),
        Fifo,
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![
            b"a".to_vec(),
            b"a.b".to_vec(),
            b"B".to_vec(),
            b"a-b".to_vec(),
            b"z".to_vec(),
            b"\xff\xfe".to_vec(),
            "日本".as_bytes().to_vec(),
            b".hidden".to_vec(),
        ])
    }

    fn node() -> impl Strategy<Value = Node> {
        prop_oneof![
            (
                any::<u16>(),
                prop::sample::select(vec![0o644, 0o600, 0o4755, 0o000])
            )
                .prop_map(|(n, m)| Node::File(n % 3000, m)),
            Just(Node::Dir),
            Just(Node::Dir),
            prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..12)
                .prop_map(Node::Link),
            Just(Node::Fifo),
        ]
    }

    /// Creates `entries` (paths of up to 3 names) under `root`; a path whose
    /// parent is not a directory is skipped.
    fn build(root: &Path, entries: &[(Vec<Vec<u8>>, Node)]) {
        use std::os::unix::fs::PermissionsExt;
        'entries: for (names, node) in entries {
            // Parents are made as real directories; a path through anything
            // else (a file, a symlink: never followed) is skipped.
            let mut p = root.to_path_buf();
            for n in &names[..names.len() - 1] {
                p.push(std::ffi::OsStr::from_bytes(n));
                match p.symlink_metadata() {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => continue 'entries,
                    Err(_) => std::fs::create_dir(&p).unwrap(),
                }
            }
            p.push(std::ffi::OsStr::from_bytes(names.last().unwrap()));
            if p.symlink_metadata().is_ok() {
                continue;
            }
            match node {
                Node::File(n, mode) => {
                    std::fs::write(&p, vec![b'x'; usize::from(*n)]).unwrap();
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                }
                Node::Dir => std::fs::create_dir(&p).unwrap(),
                Node::Link(t) => {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p).unwrap()
                }
                Node::Fifo => {
                    rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o644), 0)
                        .unwrap()
                }
            }
        }
    }

    /// A file opened by its path from the root (a sampled file, after the
    /// walk) is never reached through a symlink on the way, and what is opened
    /// must be a regular file.
    #[test]
    fn files_open_beneath_the_root_and_must_be_regular() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("d/f"), b"inside").unwrap();
        std::fs::write(outside.join("f"), b"secret").unwrap();
        let fd = open_root(&root).unwrap();
        let open = |rel: &str| {
            open_file(&Handle::Path, Some(&fd), Path::new(rel), &root.join(rel))
                .map(|mut f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s).unwrap();
                    s
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(open("d/f").unwrap(), "inside");
        // The directory swapped for a link to elsewhere.
        std::fs::rename(root.join("d"), root.join("d.old")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        assert!(
            open("d/f").is_err(),
            "read through a symlink: {:?}",
            open("d/f")
        );
        assert!(open("../outside/f").is_err());
        // A FIFO swapped in for a file is reported, not read as empty.
        std::fs::remove_file(root.join("d")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        rustix::fs::mknodat(
            CWD,
            root.join("d/f"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = open("d/f").unwrap_err();
        assert!(e.contains("no longer a regular file"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Entry for entry, the walk on open directories sees what walkdir saw:
        /// the same order, kinds, sizes, modes and link targets, with and
        /// without excludes, whatever the names' bytes.
        #[test]
        fn the_walk_sees_what_walkdir_saw(
            entries in prop::collection::vec((prop::collection::vec(name(), 1..4), node()), 0..30),
            exclude in prop::option::of(prop::sample::select(vec!["*.b", "a/**", "B", "*"])),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            std::fs::create_dir(&root).unwrap();
            build(&root, &entries);
            let excludes = exclude.map(|p| {
                let mut b = globset::GlobSetBuilder::new();
                b.add(globset::Glob::new(p).unwrap());
                b.build().unwrap()
            });
            let ours: Vec<Seen> = Walk::new(&root, excludes.clone())
                .map(|e| seen(&e.unwrap()))
                .collect();
            prop_assert_eq!(ours, reference(&root, excludes.as_ref()));
        }
    }
}
