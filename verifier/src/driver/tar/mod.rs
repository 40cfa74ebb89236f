//! `tar`: a tar archive, plain or compressed with gzip, zstd, xz, bzip2 or lz4
//! (recognised by content, not name); `path` may be a glob, the
//! newest match wins. Extraction is done here, entry by entry, so that every
//! name and link is checked before anything is written (see `safe`).
//!
//! The parts: this file finds the archive and reads it through (hashing every
//! byte, checking its end); `extract.rs` writes each member into the sandbox;
//! `extra.rs` puts back what a member carries beyond mode and time (owner,
//! ACLs, attributes); `tap.rs` keeps the raw pax header the tar reader read.

mod extra;
mod extract;
mod tap;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::compression::{Compression, Decoder};
use super::{BackupInfo, Driver, DriverError, RestoreStats};
use crate::drill::deadline::Deadline;
use extract::Extract;

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
