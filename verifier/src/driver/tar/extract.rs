//! Extracting a tar stream into the sandbox, member by member: every name and
//! link checked before anything is written (see `safe`), file data written
//! with its holes left as holes, directories' modes and times set last.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::extra::Extra;
use super::tap::{Tap, checksum};
use crate::drill::deadline::Deadline;
use crate::driver::pax;
use crate::driver::safe::{self, Refusal};
use crate::driver::{DriverError, RestoreStats};

pub(super) struct Extract<'a> {
    archive: &'a Path,
    root: &'a Path,
    deadline: &'a Deadline,
    pub(super) stats: RestoreStats,
    /// Directory modes and times, applied last (children change a dir's mtime).
    dirs: Vec<(PathBuf, u32, filetime::FileTime, Extra)>,
    /// Where each directory is in `dirs`: a directory stored twice takes the
    /// last member's mode and time, as GNU tar does.
    dir_index: std::collections::HashMap<PathBuf, usize>,
    /// The last member read, to say where a damaged archive broke.
    last: Option<String>,
}

impl<'a> Extract<'a> {
    pub(super) fn new(archive: &'a Path, root: &'a Path, deadline: &'a Deadline) -> Self {
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
    pub(super) fn run<R: Read>(&mut self, mut r: R) -> Result<R, DriverError> {
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
            extra.put_owner(&dir)?;
            extra.put_xattrs(&dir, &mut self.stats)?;
            set_mode(&dir, mode).map_err(|e| DriverError::Sandbox {
                path: dir.clone(),
                source: e,
            })?;
            extra.put_acls(&dir, &mut self.stats)?;
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
        let extra = Extra::read(entry.header(), &pax, &mut self.stats);
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
                extra.put_owner(&dest)?;
                extra.put_xattrs(&dest, &mut self.stats)?;
                set_mode(&dest, mode).map_err(|e| DriverError::Sandbox {
                    path: dest.clone(),
                    source: e,
                })?;
                extra.put_acls(&dest, &mut self.stats)?;
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
                extra.put_owner(&dest)?;
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
                extra.put_owner(&dest)?;
                set_mode(&dest, mode).map_err(sandbox_err)?;
                extra.put_acls(&dest, &mut self.stats)?;
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
