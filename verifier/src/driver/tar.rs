//! `tar`: a tar archive, plain or compressed with gzip, zstd, xz, bzip2 or lz4
//! (recognised by content, not name); `path` may be a glob, the
//! newest match wins. Extraction is done here, entry by entry, so that every
//! name and link is checked before anything is written (see `safe`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::compression::{Compression, Decoder};
use super::pax;
use super::safe::{self, Refusal};
use super::{BackupInfo, Driver, DriverError, RestoreStats};
use crate::drill::deadline::Deadline;

const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct TarDriver {
    /// A path or glob pattern.
    pub path: String,
    /// Backup time when the archive's mtime is not it.
    pub backup_time: Option<SystemTime>,
    /// Where in the backup the data that corresponds to the source is
    /// (`srv/share`); unset, it is found from the source's path.
    pub root: Option<PathBuf>,
}

/// Finds the newest file matching `pattern` (a plain path matches itself).
pub fn newest_match(pattern: &str) -> Result<PathBuf, DriverError> {
    let paths = glob::glob(pattern).map_err(|e| {
        DriverError::NotFound(format!("{pattern} is not a valid glob pattern: {e}"))
    })?;
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for p in paths.flatten() {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        let t = m.modified().unwrap_or(UNIX_EPOCH);
        if best.as_ref().is_none_or(|(bt, bp)| (t, &p) > (*bt, bp)) {
            best = Some((t, p));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| DriverError::NotFound(format!("no file matches {pattern}")))
}

/// What a compressed archive says its content size is, where the format keeps
/// it: a zstd frame header's content size, or gzip's size field (modulo 4 GiB,
/// so only a lower bound). `None` for plain tar or when unknown.
fn uncompressed_size(path: &Path) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).ok()?;
    let mut head = [0u8; 18];
    let n = f.read(&mut head).ok()?;
    let compression = Compression::detect(&head[..n]).ok()?;
    if compression == Compression::Gzip {
        let mut tail = [0u8; 4];
        f.seek(SeekFrom::End(-4)).ok()?;
        f.read_exact(&mut tail).ok()?;
        return Some(u64::from(u32::from_le_bytes(tail)));
    }
    if compression == Compression::Zstd {
        return zstd::zstd_safe::get_frame_content_size(&head[..n])
            .ok()
            .flatten();
    }
    if compression != Compression::Plain {
        return None;
    }
    // A plain archive: add up the members' sizes, seeking over their data.
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut archive = tar::Archive::new(f);
    let mut total = 0u64;
    for entry in archive.entries_with_seek().ok()? {
        let entry = entry.ok()?;
        // What is stored, not the logical size: a sparse file's holes take
        // no room in the sandbox.
        let size = if entry.header().entry_type().is_gnu_sparse() {
            entry.header().entry_size().ok()?
        } else {
            entry.size()
        };
        total = total.saturating_add(size);
    }
    Some(total)
}

impl Driver for TarDriver {
    fn kind(&self) -> &'static str {
        "tar"
    }

    fn locate(&self, _deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        let mut info = super::file_backup("tar", newest_match(&self.path)?, self.backup_time)?;
        if let Some(p) = &info.location {
            info.size_estimate = info.size_estimate.max(uncompressed_size(p));
        }
        Ok(info)
    }

    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        let path = backup
            .location
            .clone()
            .ok_or_else(|| DriverError::NotFound(self.path.clone()))?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DriverError::NotFound(path.display().to_string()),
            _ => DriverError::Read {
                path: path.clone(),
                source: e,
            },
        })?;
        let mut raw = BufReader::with_capacity(CHUNK, Hashing::new(file));
        let head = raw.fill_buf().map_err(|e| DriverError::Read {
            path: path.clone(),
            source: e,
        })?;
        let compression = Compression::detect(head).map_err(|name| {
            DriverError::Unsupported(format!(
                "{} is compressed with {name}, which restore-verifier does not read; recompress it with gzip, zstd, xz, bzip2 or lz4, or restore it with a runbook (type = \"command\")",
                path.display()
            ))
        })?;
        let damaged = |e: io::Error| DriverError::Damaged {
            path: path.clone(),
            detail: e.to_string(),
        };
        let mut x = Extract::new(&path, sandbox, deadline);
        x.stats.max_bytes = stats.max_bytes;
        let dec = Decoder::new(compression, raw).map_err(damaged)?;
        let mut dec = x.run(dec)?;
        // What follows the last member: the tar reader stops after the first
        // zero block, so a complete archive still has at least the second one.
        // Nothing at all means the file was cut at a block boundary.
        let tail = io::copy(&mut dec, &mut io::sink()).map_err(damaged)?;
        let mut raw = dec.into_inner();
        if tail < 512 {
            return Err(DriverError::Damaged {
                path: path.clone(),
                detail: "the archive ends without its end-of-archive blocks (truncated?)".into(),
            });
        }
        io::copy(&mut raw, &mut io::sink()).map_err(|e| DriverError::Read {
            path: path.clone(),
            source: e,
        })?;

        backup.sha256 = Some(hex::encode(raw.into_inner().hasher.finalize()));
        *stats = x.stats;
        stats.root = self.root.clone();
        Ok(())
    }
}

/// Hashes every byte read from the archive file.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Extract<'a> {
    archive: &'a Path,
    root: &'a Path,
    deadline: &'a Deadline,
    stats: RestoreStats,
    /// Directory modes and times, applied last (children change a dir's mtime).
    dirs: Vec<(PathBuf, u32, filetime::FileTime, Extra)>,
    /// Where each directory is in `dirs`: a directory stored twice takes the
    /// last member's mode and time, as GNU tar does.
    dir_index: std::collections::HashMap<PathBuf, usize>,
    /// The last member read, to say where a damaged archive broke.
    last: Option<String>,
}

impl<'a> Extract<'a> {
    fn new(archive: &'a Path, root: &'a Path, deadline: &'a Deadline) -> Self {
        Extract {
            archive,
            root,
            deadline,
            stats: RestoreStats::default(),
            dirs: Vec::new(),
            dir_index: std::collections::HashMap::new(),
            last: None,
        }
    }

    fn damaged(&self, detail: String) -> DriverError {
        DriverError::Damaged {
            path: self.archive.to_path_buf(),
            detail,
        }
    }

    fn refused(&self, entry: &Path, r: Refusal) -> DriverError {
        match r {
            Refusal::Unsafe(why) => DriverError::Unsafe {
                path: self.archive.to_path_buf(),
                entry: entry.display().to_string(),
                why,
            },
            Refusal::Io(path, source) => DriverError::Sandbox { path, source },
        }
    }

    /// Extracts every entry of the tar stream `r` and hands `r` back so the
    /// caller can read (and check) the rest of the file.
    fn run<R: Read>(&mut self, mut r: R) -> Result<R, DriverError> {
        // A volume label (`tar -V`) can only be the first header; GNU tar
        // leaves its size field empty, which the tar reader refuses, so it is
        // passed over here.
        let mut first = [0u8; 512];
        let got = crate::tree::content::fill(&mut r, &mut first, 512)
            .map_err(|e| self.damaged(e.to_string()))?;
        let skip = got == 512
            && first[156] == b'V'
            && tar::Header::from_byte_slice(&first).cksum().ok() == Some(checksum(&first));
        let head = if skip { &first[..0] } else { &first[..got] };
        let tap = Tap::new(io::Cursor::new(head).chain(r));
        let seen = tap.seen.clone();
        let mut archive = tar::Archive::new(tap);
        let mut entries = archive.entries().map_err(|e| self.damaged(e.to_string()))?;
        loop {
            self.deadline.check()?;
            seen.borrow_mut().start();
            let Some(entry) = entries.next() else { break };
            let mut entry = entry.map_err(|e| match &self.last {
                Some(m) => self.damaged(format!("{e}, after member {m} (truncated?)")),
                None => self.damaged(e.to_string()),
            })?;
            let raw_pax = {
                let mut s = seen.borrow_mut();
                s.recording = false;
                s.pax_data()
            };
            self.last = Some(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
            self.entry(&mut entry, raw_pax.as_deref())?;
            // What the member has left is read here, so that what the tar
            // reader reads for the next one starts at its headers.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| {
                self.damaged(format!("{}: {e}", self.last.as_deref().unwrap_or_default()))
            })?;
        }
        self.dir_index.clear();
        let dirs = std::mem::take(&mut self.dirs);
        for (dir, mode, mtime, extra) in dirs.into_iter().rev() {
            self.owner(&dir, &extra)?;
            self.put_xattrs(&dir, &extra)?;
            set_mode(&dir, mode).map_err(|e| DriverError::Sandbox {
                path: dir.clone(),
                source: e,
            })?;
            self.put_acls(&dir, &extra)?;
            let _ = filetime::set_file_mtime(&dir, mtime);
        }
        Ok(archive.into_inner().inner.into_inner().1)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw_pax: Option<&[u8]>,
    ) -> Result<(), DriverError> {
        // Pax global headers (`git archive`'s commit id, GNU tar's
        // `/tmp/GlobalHead.N`) and volume labels (`tar -V`) describe the
        // archive, not a member.
        if matches!(entry.header().entry_type().as_byte(), b'g' | b'V') {
            return Ok(());
        }
        let pax = pax::read(entry, raw_pax).map_err(|why| {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.damaged(format!("{name}: {why}"))
        })?;
        let mtime = pax::member_mtime(entry.header(), &pax);
        let extra = self.extra(entry.header(), &pax);
        let name = match pax.sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(n) => n,
            None => entry
                .path()
                .map_err(|e| self.damaged(format!("bad entry name: {e}")))?
                .into_owned(),
        };
        let rel = match safe::safe_rel(&name) {
            Ok(Some(rel)) => rel,
            Ok(None) => return Ok(()),
            Err(why) => return Err(self.refused(&name, Refusal::Unsafe(why))),
        };
        let header = entry.header();
        // All permission bits, setuid/setgid included: the sandbox root is 0700,
        // so nobody else can reach (or run) what is restored in it.
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        // `D`: a GNU incremental dump directory; its data lists the names the
        // directory had, and there is nothing more to restore from it.
        // v7 archives (`bsdtar --format v7`) have no directory type: a
        // directory is a regular member whose name ends in `/`.
        let kind = match header.entry_type().as_byte() {
            b'D' => tar::EntryType::Directory,
            b'0' | 0 if entry.path_bytes().ends_with(b"/") => tar::EntryType::Directory,
            _ => header.entry_type(),
        };
        let dest = self.root.join(&rel);
        safe::ensure_parent(self.root, &rel).map_err(|r| self.refused(&name, r))?;
        match kind {
            tar::EntryType::Directory => {
                let sandbox_err = |e| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                };
                match std::fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    // An appended update where a file (or link) became a
                    // directory: the later member wins, as with GNU tar.
                    Ok(_) => {
                        std::fs::remove_file(&dest).map_err(sandbox_err)?;
                        std::fs::create_dir(&dest).map_err(sandbox_err)?;
                    }
                    Err(_) => std::fs::create_dir(&dest).map_err(sandbox_err)?,
                }
                match self.dir_index.get(&dest) {
                    Some(&i) => self.dirs[i] = (dest, mode, mtime, extra),
                    None => {
                        self.dir_index.insert(dest.clone(), self.dirs.len());
                        self.dirs.push((dest, mode, mtime, extra));
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let f = safe::create_new(&dest).map_err(|r| self.refused(&name, r))?;
                match &pax.sparse {
                    Some(sparse) => self.copy_sparse(entry, &f, &dest, sparse)?,
                    None => {
                        let n = self.copy_at(entry, &f, &dest, 0, None)?;
                        self.finish_file(&f, &dest, n)?;
                    }
                }
                drop(f);
                self.owner(&dest, &extra)?;
                self.put_xattrs(&dest, &extra)?;
                set_mode(&dest, mode).map_err(|e| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                })?;
                self.put_acls(&dest, &extra)?;
                let _ = filetime::set_file_mtime(&dest, mtime);
                self.stats.files += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.damaged(format!("bad link target: {e}")))?
                    .ok_or_else(|| {
                        self.damaged(format!("symlink {} has no target", rel.display()))
                    })?
                    .into_owned();
                // Absolute links and links above the tree are restored as
                // links: nothing is ever written through one (`ensure_parent`,
                // `create_new`), and the compare reads their target text only.
                safe::clear_dest(&dest).map_err(|r| self.refused(&name, r))?;
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                })?;
                self.owner(&dest, &extra)?;
                let _ = filetime::set_symlink_file_times(&dest, mtime, mtime);
                self.stats.files += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.damaged(format!("bad link target: {e}")))?
                    .ok_or_else(|| {
                        self.damaged(format!("hard link {} has no target", rel.display()))
                    })?
                    .into_owned();
                let target_rel = match safe::safe_rel(&target) {
                    Ok(Some(t)) => t,
                    _ => {
                        return Err(self.refused(
                            &name,
                            Refusal::Unsafe(format!(
                                "hard link to {} outside the archive",
                                target.display()
                            )),
                        ));
                    }
                };
                // `tar cf x d d/f` stores d/f twice, the second time as a
                // link to itself: GNU tar leaves the file as it is.
                if target_rel == rel {
                    return Ok(());
                }
                // A second name of a device node that was not made.
                let target_key = crate::tree::path::display(&target_rel);
                if self.stats.skipped_special.contains(&target_key) {
                    self.stats
                        .skipped_special
                        .push(crate::tree::path::display(&rel), "device node".into());
                    return Ok(());
                }
                let src = self.root.join(&target_rel);
                safe::ensure_parent(self.root, &target_rel).map_err(|r| self.refused(&name, r))?;
                match std::fs::symlink_metadata(&src) {
                    // A hard link to a symlink or a FIFO is one more name of it.
                    Ok(m)
                        if m.is_file()
                            || m.file_type().is_symlink()
                            || std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => {}
                    _ => {
                        return Err(self.refused(
                            &name,
                            Refusal::Unsafe(format!(
                                "hard link to {}, which is not a file restored before it",
                                target.display()
                            )),
                        ));
                    }
                }
                safe::clear_dest(&dest).map_err(|r| self.refused(&name, r))?;
                std::fs::hard_link(&src, &dest).map_err(|e| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                })?;
                self.stats.files += 1;
            }
            // A FIFO is made, never opened; the compare checks its type and mode.
            tar::EntryType::Fifo => {
                safe::clear_dest(&dest).map_err(|r| self.refused(&name, r))?;
                let sandbox_err = |e: io::Error| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                };
                safe::make_fifo(&dest).map_err(sandbox_err)?;
                self.owner(&dest, &extra)?;
                set_mode(&dest, mode).map_err(sandbox_err)?;
                self.put_acls(&dest, &extra)?;
                // (set_file_mtime would open it, and wait for a writer.)
                let _ = filetime::set_symlink_file_times(&dest, mtime, mtime);
                self.stats.files += 1;
            }
            // A device node holds no data: not made (that needs root and
            // would be a real device in the sandbox), counted as a skipped
            // special file, as the compare does with the source's.
            tar::EntryType::Char | tar::EntryType::Block => {
                self.stats
                    .skipped_special
                    .push(crate::tree::path::display(&rel), "device node".into());
            }
            other => {
                return Err(DriverError::Unsupported(format!(
                    "{}: member {} has entry type {:?} ({}), which restore-verifier does not restore; restore it with a runbook (type = \"command\") and GNU tar",
                    self.archive.display(),
                    name.display(),
                    char::from(other.as_byte()),
                    entry_type_name(other.as_byte())
                )));
            }
        }
        Ok(())
    }

    /// What a member carries beyond mode and time, in the form it is put
    /// back in. Ownership only when the agent may give it (root).
    fn extra(&mut self, header: &tar::Header, pax: &pax::Pax) -> Extra {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT, acl_from_text, lookup_id};
        let mut notes = Vec::new();
        let mut acl = |text: &Option<String>| {
            let text = text.as_deref()?;
            acl_from_text(text, lookup_id)
                .map_err(|why| notes.push(format!("acl: {why}")))
                .ok()
        };
        let mut extra = Extra {
            owner: (rustix::process::geteuid().is_root())
                .then(|| Some((header.uid().ok()? as u32, header.gid().ok()? as u32)))
                .flatten(),
            acl_access: acl(&pax.acl_access),
            acl_default: acl(&pax.acl_default),
            xattrs: Vec::new(),
        };
        // bsdtar writes each attribute twice (SCHILY and LIBARCHIVE); GNU tar
        // `--xattrs` without `--acls` carries the ACLs as attributes.
        for (name, value) in &pax.xattrs {
            if name == ACL_ACCESS {
                extra.acl_access.get_or_insert_with(|| value.clone());
            } else if name == ACL_DEFAULT {
                extra.acl_default.get_or_insert_with(|| value.clone());
            } else if !extra.xattrs.iter().any(|(n, _)| n == name) {
                extra.xattrs.push((name.clone(), value.clone()));
            }
        }
        for n in notes {
            if !self.stats.metadata_notes.contains(&n) {
                self.stats.metadata_notes.push(n);
            }
        }
        self.stats.held.owner = true;
        self.stats.held.owners_kept = true;
        self.stats.held.acl |= pax.acl_access.is_some()
            || pax.acl_default.is_some()
            || extra.acl_access.is_some()
            || extra.acl_default.is_some();
        self.stats.held.xattr |= !extra.xattrs.is_empty();
        extra
    }

    fn owner(&self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        let Some((uid, gid)) = extra.owner else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| DriverError::Sandbox {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Extended attributes, before the mode (a file made read-only could
    /// not take them after, unless as root).
    fn put_xattrs(&mut self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        for (name, value) in &extra.xattrs {
            self.put(path, name, value)?;
        }
        Ok(())
    }

    /// ACLs, after the mode: an ACL's mask is the mode's group bits.
    fn put_acls(&mut self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT};
        for (name, value) in [
            (ACL_ACCESS, &extra.acl_access),
            (ACL_DEFAULT, &extra.acl_default),
        ] {
            if let Some(v) = value {
                self.put(path, std::ffi::OsStr::new(name), v)?;
            }
        }
        Ok(())
    }

    fn put(
        &mut self,
        path: &Path,
        name: &std::ffi::OsStr,
        value: &[u8],
    ) -> Result<(), DriverError> {
        crate::tree::metadata::put(path, name, value, &mut self.stats.metadata_notes).map_err(|e| {
            DriverError::Sandbox {
                path: path.to_path_buf(),
                source: e,
            }
        })
    }

    fn rel<'p>(&self, dest: &'p Path) -> std::path::Display<'p> {
        dest.strip_prefix(self.root).unwrap_or(dest).display()
    }

    /// Writes the member's data to `f` from `offset` on, `limit` bytes or to
    /// its end; returns how many it read. Blocks of zeros are left as holes,
    /// so a sparse file stays sparse whichever way the archive stores it.
    /// What the archive stores counts against `max_restore_bytes` (a member
    /// of 10 GiB of zeros is stopped); the holes of an old GNU sparse member,
    /// which the tar reader hands over as zeros, do not.
    fn copy_at<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        f: &File,
        dest: &Path,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<u64, DriverError> {
        let holes_are_free = entry.header().entry_type() == tar::EntryType::GNUSparse;
        use std::os::unix::fs::FileExt;
        const BLOCK: usize = 4096;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            self.deadline.check()?;
            let want = match limit {
                Some(l) if l - total < buf.len() as u64 => (l - total) as usize,
                _ => buf.len(),
            };
            if want == 0 {
                break;
            }
            let n = match entry.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(self.damaged(format!("{}: {e}", self.rel(dest))));
                }
            };
            // Runs of blocks with data are written in one call each; blocks
            // of zeros between them are left as holes.
            let mut run: Option<usize> = None;
            let blocks = n.div_ceil(BLOCK);
            for i in 0..=blocks {
                let block = (i < blocks).then(|| &buf[i * BLOCK..((i + 1) * BLOCK).min(n)]);
                let hole = block.is_none_or(|b| b.iter().all(|&x| x == 0));
                if let Some(block) = block {
                    if !(hole && holes_are_free) {
                        self.stats.bytes += block.len() as u64;
                    }
                    if let Some(max) = self.stats.max_bytes
                        && self.stats.bytes > max
                    {
                        return Err(DriverError::Space(format!(
                            "the restore passed max_restore_bytes ({}) while writing {}; stopped",
                            crate::units::human_bytes(max),
                            self.rel(dest)
                        )));
                    }
                }
                match (hole, run) {
                    (false, None) => run = Some(i),
                    (true, Some(start)) => {
                        let data = &buf[start * BLOCK..(i * BLOCK).min(n)];
                        let at = offset + total + (start * BLOCK) as u64;
                        f.write_all_at(data, at).map_err(|e| DriverError::Sandbox {
                            path: dest.to_path_buf(),
                            source: e,
                        })?;
                        run = None;
                    }
                    _ => {}
                }
            }
            total += n as u64;
        }
        // The tar reader ends a member's data early, without an error, when
        // the archive ends inside it.
        let expected = limit.unwrap_or_else(|| entry.size());
        if total < expected {
            return Err(self.damaged(format!(
                "{}: the archive ends inside this member's data, after {total} of its {expected} bytes (truncated?)",
                self.rel(dest)
            )));
        }
        Ok(total)
    }

    /// Gives the file its whole size (trailing holes included).
    fn finish_file(&self, f: &File, dest: &Path, size: u64) -> Result<(), DriverError> {
        f.set_len(size).map_err(|e| DriverError::Sandbox {
            path: dest.to_path_buf(),
            source: e,
        })
    }

    /// A pax sparse member: each data region at its offset, holes between.
    fn copy_sparse<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        f: &File,
        dest: &Path,
        sparse: &pax::Sparse,
    ) -> Result<(), DriverError> {
        let map = match &sparse.map {
            pax::SparseMap::Known(m) => m.clone(),
            pax::SparseMap::InData => pax::read_data_map(entry, entry.size())
                .map_err(|e| self.damaged(format!("{}: {e}", self.rel(dest))))?,
        };
        pax::check_map(&map, sparse.real_size)
            .map_err(|why| self.damaged(format!("{}: {why}", self.rel(dest))))?;
        for (off, len) in map {
            self.copy_at(entry, f, dest, off, Some(len))?;
        }
        self.finish_file(f, dest, sparse.real_size)
    }
}

/// Keeps what the tar reader reads while it finds the next member (its pax
/// header among it), up to a bound.
struct Tap<R> {
    inner: R,
    seen: std::rc::Rc<std::cell::RefCell<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// Bytes read so far, and where the current recording began.
    pos: u64,
    start: u64,
    bytes: Vec<u8>,
    overflow: bool,
    /// Only between `start` and the member's arrival: not its data.
    recording: bool,
}

/// More than this between two members is not headers: not kept.
const SEEN_MAX: usize = 4 << 20;

impl<R> Tap<R> {
    fn new(inner: R) -> Tap<R> {
        Tap {
            inner,
            seen: Default::default(),
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.seen.borrow_mut();
        s.pos += n as u64;
        if s.recording && !s.overflow {
            if s.bytes.len() + n > SEEN_MAX {
                s.overflow = true;
                s.bytes = Vec::new();
            } else {
                s.bytes.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}

impl Seen {
    fn start(&mut self) {
        self.start = self.pos;
        self.bytes.clear();
        self.overflow = false;
        self.recording = true;
    }

    /// The data of the last pax (`x`) header among the headers read since
    /// `start`, when they can be read as headers with good checksums.
    fn pax_data(&mut self) -> Option<Vec<u8>> {
        if self.overflow {
            return None;
        }
        // Headers start at the next 512-byte boundary of the stream.
        let skip = ((512 - self.start % 512) % 512) as usize;
        let mut at = skip;
        let mut found = None;
        while at + 512 <= self.bytes.len() {
            let block = &self.bytes[at..at + 512];
            let header = tar::Header::from_byte_slice(block);
            if header.cksum().ok()? != checksum(block) {
                return None;
            }
            let flag = block[156];
            let size = usize::try_from(header.entry_size().ok()?).ok()?;
            let data = at + 512;
            match flag {
                b'x' => {
                    found = Some(self.bytes.get(data..data.checked_add(size)?)?.to_vec());
                }
                b'L' | b'K' | b'g' => {}
                _ => return found,
            }
            at = data.checked_add(size.div_ceil(512).checked_mul(512)?)?;
        }
        None
    }
}

/// A tar header's checksum: its bytes summed with the checksum field as spaces.
fn checksum(block: &[u8]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum()
}

/// A member's owner, ACLs and attributes, ready to put back.
#[derive(Debug, Clone, Default)]
struct Extra {
    owner: Option<(u32, u32)>,
    acl_access: Option<Vec<u8>>,
    acl_default: Option<Vec<u8>>,
    xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}

/// What the tar type flags no restore here reads are.
fn entry_type_name(flag: u8) -> &'static str {
    match flag {
        b'M' => "a GNU multi-volume continuation",
        b'N' => "an old GNU long name",
        b'A' | b'X' => "Solaris ACL or extended attributes",
        b'I' => "inode metadata only",
        _ => "an unknown type",
    }
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}
