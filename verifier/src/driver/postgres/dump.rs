//! The dump file itself, before and around the restore: whether it is a tar
//! archive and whether one is cut short, and the script psql runs for a plain
//! dump (decompressed into the sandbox when compressed).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::drill::deadline::Deadline;
use crate::driver::{DriverError, pgdump};

pub(super) fn is_tar(p: &Path) -> bool {
    let mut b = [0u8; 262];
    File::open(p).and_then(|mut f| f.read_exact(&mut b)).is_ok() && &b[257..262] == b"ustar"
}

/// How a tar-format dump (`pg_dump -Ft`) is cut short, from its headers
/// alone: a member whose data runs past the end of the file, a header cut in
/// two, or no end-of-archive blocks (pg_dump always writes them). `None` for
/// a whole one, and for anything that is not a tar file.
pub(super) fn tar_dump_cut(p: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    if p.is_dir() || !is_tar(p) {
        return None;
    }
    let mut f = File::open(p).ok()?;
    let len = f.metadata().ok()?.len();
    let cut = |what: String| {
        format!(
            "the tar-format dump is cut short: {what} (pg_restore would spin on it until the job's timeout)"
        )
    };
    let mut at = 0u64;
    let mut last: Option<String> = None;
    let after = |last: &Option<String>| match last {
        Some(m) => format!("after its member {m}"),
        None => "at its start".into(),
    };
    loop {
        if at >= len {
            return Some(cut(format!(
                "it ends {} without tar's end-of-archive blocks",
                after(&last)
            )));
        }
        let mut block = [0u8; 512];
        f.seek(SeekFrom::Start(at)).ok()?;
        if f.read_exact(&mut block).is_err() {
            return Some(cut(format!(
                "it ends {} inside the next member's header",
                after(&last)
            )));
        }
        if block.iter().all(|b| *b == 0) {
            return None;
        }
        let header = tar::Header::from_byte_slice(&block);
        let size = header.entry_size().ok()?;
        let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
        let data = at + 512;
        if data + size > len {
            return Some(cut(format!(
                "its member {name} holds {size} bytes, and the file ends {} bytes into it",
                len - data
            )));
        }
        at = data + size.div_ceil(512) * 512;
        last = Some(name);
    }
}

/// The script psql runs for a plain dump: the dump itself, or, compressed
/// (`pg_dump | gzip`), its decompressed copy in the sandbox. Refuses what
/// is not one whole database dump: a pg_dumpall cluster dump, and a dump
/// without pg_dump's closing line (cut short).
pub(super) fn plain_script(
    dump: &Path,
    head: &[u8],
    pg: &Path,
    deadline: &Deadline,
) -> Result<PathBuf, DriverError> {
    use crate::driver::compression::{Compression, Decoder};
    let read = |e: std::io::Error| DriverError::Read {
        path: dump.to_path_buf(),
        source: e,
    };
    let compression = Compression::detect(head).map_err(|name| {
        DriverError::Unsupported(format!(
            "{} is compressed with {name}, which restore-verifier does not read; compress dumps with gzip, zstd, xz, bzip2 or lz4, or use pg_dump -Fc",
            dump.display()
        ))
    })?;
    let mut file = File::open(dump).map_err(read)?;
    let (marks, script) = if compression == Compression::Plain {
        use std::io::{Seek, SeekFrom};
        let len = file.metadata().map_err(read)?.len();
        let mut first = Vec::new();
        (&mut file)
            .take(64 << 10)
            .read_to_end(&mut first)
            .map_err(read)?;
        file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))
            .map_err(read)?;
        let mut last = Vec::new();
        file.read_to_end(&mut last).map_err(read)?;
        (pgdump::marks(&first, &last), dump.to_path_buf())
    } else {
        // An archive dump compressed again (`pg_dump -Ft | gzip`) is not a
        // script: pg_restore reads archives as pg_dump wrote them.
        let mut head = [0u8; 512];
        let mut decoded = Decoder::new(
            compression,
            std::io::BufReader::new(File::open(dump).map_err(read)?),
        )
        .map_err(read)?;
        let got = read_up_to(&mut decoded, &mut head);
        if head[..got].starts_with(b"PGDMP") || (got >= 262 && &head[257..262] == b"ustar") {
            return Err(DriverError::Unsupported(format!(
                "{} is a pg_dump archive (custom or tar format) compressed with {}: decompress it for pg_restore, or keep custom-format dumps as pg_dump writes them (they are compressed already)",
                dump.display(),
                compression.name()
            )));
        }
        let out = pg.join("dump.sql");
        let mut w =
            std::io::BufWriter::new(File::create(&out).map_err(|e| DriverError::Sandbox {
                path: out.clone(),
                source: e,
            })?);
        let decoder = Decoder::new(compression, std::io::BufReader::new(file)).map_err(read)?;
        let marks = pgdump::copy_plain(
            Timed {
                inner: decoder,
                deadline,
            },
            Some(&mut w),
        )
        .and_then(|m| {
            std::io::Write::flush(&mut w)
                .map(|()| m)
                .map_err(pgdump::CopyError::Write)
        });
        match marks {
            Ok(m) => (m, out),
            Err(pgdump::CopyError::Write(e)) => {
                return Err(DriverError::Space(format!(
                    "cannot write the decompressed dump to {}: {e}; a {} plain dump is decompressed into the sandbox before psql reads it: free space in sandbox_dir",
                    out.display(),
                    compression.name()
                )));
            }
            Err(pgdump::CopyError::Read(e)) => {
                deadline.check()?;
                return Err(DriverError::Damaged {
                    path: dump.to_path_buf(),
                    detail: format!("cannot decompress its {}: {e}", compression.name()),
                });
            }
        }
    };
    if marks.cluster {
        return Err(DriverError::Unsupported(format!(
            "{} is a pg_dumpall cluster dump (every database and role); restore-verifier restores one database's dump: dump each database with pg_dump (-Fc) and point `path` at it",
            dump.display()
        )));
    }
    if !marks.complete {
        return Err(DriverError::Damaged {
            path: dump.to_path_buf(),
            detail: format!(
                "the plain dump is incomplete: it does not end with pg_dump's closing line `{}` (cut short while written or copied?)",
                pgdump::COMPLETE
            ),
        });
    }
    Ok(script)
}

/// Reads into `buf` until it is full or the stream ends (or fails).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// A reader that stops at the drill's deadline.
struct Timed<'a, R> {
    inner: R,
    deadline: &'a Deadline,
}

impl<R: Read> Read for Timed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Err(stop) = self.deadline.check() {
            return Err(std::io::Error::other(stop.to_string()));
        }
        self.inner.read(buf)
    }
}
