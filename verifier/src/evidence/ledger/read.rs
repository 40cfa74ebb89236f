//! Reading the ledger file: its last lines (read backwards from the end),
//! its line count, the shared lock, and the stream of its records.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{Ledger, LedgerError};
use crate::evidence::record::Record;

impl Ledger {
    /// The last complete line (1-based number, text), reading backwards from the end.
    pub(super) fn last_line(&self, f: &File) -> Result<Option<(u64, String)>, LedgerError> {
        let rerr = |e| LedgerError::Read {
            path: self.path.clone(),
            source: e,
        };
        let len = f.metadata().map_err(rerr)?.len();
        if len == 0 {
            return Ok(None);
        }
        if !ends_in_newline(f, len).map_err(rerr)? {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                line: self.count_lines(f)? + 1,
                detail: "the last line is incomplete (a write was interrupted)".into(),
            });
        }
        let end = len - 1;
        let start = newline_before(f, end).map_err(rerr)?.map_or(0, |i| i + 1);
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start).map_err(rerr)?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        Ok(Some((self.count_lines(f)?, text)))
    }

    /// The last line that ends in a newline (number, text), skipping an
    /// incomplete one after it.
    pub(super) fn last_complete_line(
        &self,
        f: &File,
    ) -> Result<Option<(u64, String)>, LedgerError> {
        let rerr = |e| LedgerError::Read {
            path: self.path.clone(),
            source: e,
        };
        let len = f.metadata().map_err(rerr)?.len();
        let Some(end) = newline_before(f, len).map_err(rerr)? else {
            return Ok(None);
        };
        let start = newline_before(f, end).map_err(rerr)?.map_or(0, |i| i + 1);
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start).map_err(rerr)?;
        let lines = self.count_lines(f)?;
        Ok(Some((lines, String::from_utf8_lossy(&buf).into_owned())))
    }

    pub(super) fn count_lines(&self, f: &File) -> Result<u64, LedgerError> {
        let mut n = 0u64;
        let mut off = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = f.read_at(&mut buf, off).map_err(|e| LedgerError::Read {
                path: self.path.clone(),
                source: e,
            })?;
            if k == 0 {
                return Ok(n);
            }
            n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
            off += k as u64;
        }
    }

    pub(super) fn open_shared(&self) -> Result<Option<File>, LedgerError> {
        match File::open(&self.path) {
            Ok(f) => {
                f.lock_shared().map_err(|e| LedgerError::Read {
                    path: self.path.clone(),
                    source: e,
                })?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::Open {
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    /// Streams the records in ledger order. A missing ledger has none.
    pub fn records(&self) -> Result<Records, LedgerError> {
        Ok(Records {
            path: self.path.clone(),
            lines: self
                .open_shared()?
                .map(|f| BufReader::with_capacity(256 * 1024, f).lines()),
            line: 0,
        })
    }
}

/// Whether the file's byte before `len` is a newline.
pub(super) fn ends_in_newline(f: &File, len: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The offset of the last newline before `end`, reading backwards in chunks.
pub(super) fn newline_before(f: &File, end: u64) -> io::Result<Option<u64>> {
    let mut end = end;
    let mut chunk = 64 * 1024u64;
    while end > 0 {
        let start = end.saturating_sub(chunk);
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
        chunk = chunk.saturating_mul(4);
    }
    Ok(None)
}

/// Iterator over the records of a ledger.
pub struct Records {
    path: PathBuf,
    lines: Option<std::io::Lines<BufReader<File>>>,
    line: u64,
}

impl Iterator for Records {
    type Item = Result<Record, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.lines.as_mut()?.next()?;
        self.line += 1;
        Some(match line {
            Err(e) => Err(LedgerError::Read {
                path: self.path.clone(),
                source: e,
            }),
            Ok(text) => serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt {
                path: self.path.clone(),
                line: self.line,
                detail: e.to_string(),
            }),
        })
    }
}
