//! Mending the ledger's tail before an append: a torn last line is set aside,
//! and records lost from the end are read back from the tail source or noted
//! in a repair record that continues the chain.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::read::{ends_in_newline, newline_before};
use super::{ChainChecker, Ledger, LedgerError, LostRecords, note_like};
use crate::evidence::record::{LEDGER_JOB, Record};

/// A torn last line that an append set aside.
#[derive(Debug, Clone)]
struct TornTail {
    line: u64,
    bytes: u64,
    kept: PathBuf,
}

impl Ledger {
    /// Under the lock, before anything is appended: a torn last line is set
    /// aside, and records lost from the end are read back or noted in a
    /// repair record (with the host, version and zone of `like`).
    pub(super) fn mend_tail(&self, f: &File, like: &Record) -> Result<(), LedgerError> {
        let torn = self.set_aside_torn_tail(f)?;
        // Records the head file says were written that the file no longer
        // holds: damage after the fact (torn bytes or whole lines), or a
        // ledger put back from an older copy.
        let (last_seq, first_hash) = self.ends(f)?;
        let lost = self
            .read_head()
            .filter(|(head_seq, _)| *head_seq > last_seq)
            .map(|(to, head_hash)| LostRecords {
                chain: first_hash,
                from: last_seq + 1,
                to,
                head_hash,
            });
        match (lost, torn) {
            (Some(lost), torn) => match self.recover(f, &lost)? {
                Some(n) => {
                    tracing::warn!(ledger = %self.path.display(), records = n, from_seq = lost.from, "Records lost from the end of the ledger after they were written were read back from the evidence store, where they continue the chain and end at the head file's hash.{}", torn.as_ref().map(|t| format!(" The damaged bytes were kept in {}.", t.kept.display())).unwrap_or_default());
                }
                None => {
                    let mut note = repair_record(like, &Loss::AfterWrite(lost, torn));
                    self.append_locked(f, &mut note)?;
                    tracing::warn!(ledger = %self.path.display(), "Records were lost from the end of the ledger after they were written; an error record notes it.");
                }
            },
            (None, Some(torn)) => {
                let mut note = repair_record(like, &Loss::Torn(torn.clone()));
                self.append_locked(f, &mut note)?;
                tracing::warn!(ledger = %self.path.display(), kept = %torn.kept.display(), "The ledger's last line was torn by an interrupted write; its bytes were kept aside and an error record notes it.");
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The seq of the file's last complete record (0 when there is none) and
    /// the hash of its first.
    fn ends(&self, f: &File) -> Result<(u64, Option<String>), LedgerError> {
        let Some((line, text)) = self.last_line(f)? else {
            return Ok((0, None));
        };
        let seq = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or(line);
        let mut first = String::new();
        let held = f.try_clone().map_err(|e| LedgerError::Read {
            path: self.path.clone(),
            source: e,
        })?;
        let mut r = BufReader::new(held);
        r.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| r.read_line(&mut first))
            .map_err(|e| LedgerError::Read {
                path: self.path.clone(),
                source: e,
            })?;
        let hash = serde_json::from_str::<Value>(first.trim_end())
            .ok()
            .and_then(|v| v["hash"].as_str().map(String::from));
        Ok((seq, hash))
    }

    /// Puts back records the ledger lost from its end, from the tail source:
    /// only when they continue the chain of the records the file holds, carry
    /// this ledger's signatures (when it signs), and the last has the head
    /// file's hash. The number of records put back, or `None` when nothing
    /// that passes can be had.
    fn recover(&self, f: &File, lost: &LostRecords) -> Result<Option<u64>, LedgerError> {
        let Some(source) = &self.tail_source else {
            return Ok(None);
        };
        let lines = source(lost);
        if lines.len() as u64 != lost.to - lost.from + 1 {
            return Ok(None);
        }
        let rerr = |e| LedgerError::Read {
            path: self.path.clone(),
            source: e,
        };
        // The records held and those offered are checked as one chain, with
        // this ledger's keys: once signing began, every record must be signed
        // (unsigned ones before it come back as they were, which the head
        // file's hash pins).
        let keys: Vec<ed25519_dalek::VerifyingKey> = self
            .signer
            .iter()
            .chain(self.previous.iter())
            .map(|k| k.verifying_key())
            .collect();
        let mut check = ChainChecker::new(&keys);
        let mut held = BufReader::new(f.try_clone().map_err(rerr)?);
        held.seek(std::io::SeekFrom::Start(0)).map_err(rerr)?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if held.read_until(b'\n', &mut line).map_err(rerr)? == 0 {
                break;
            }
            if !check.push(line.strip_suffix(b"\n").unwrap_or(&line)) {
                return Ok(None);
            }
        }
        for l in &lines {
            if !check.push(l.as_bytes()) {
                return Ok(None);
            }
        }
        let report = check.finish();
        if report.problem.is_some()
            || report.records != lost.to
            || report.head_hash != lost.head_hash
        {
            return Ok(None);
        }
        let mut text = lines.join("\n");
        text.push('\n');
        let werr = |e| LedgerError::Write {
            path: self.path.clone(),
            source: e,
        };
        (&*f).write_all(text.as_bytes()).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        Ok(Some(lines.len() as u64))
    }

    /// When the file does not end in a newline (a write was interrupted), moves
    /// the incomplete line's bytes to `<ledger>.torn-line<N>` (durably) and cuts
    /// the ledger back to its last complete line.
    fn set_aside_torn_tail(&self, f: &File) -> Result<Option<TornTail>, LedgerError> {
        let rerr = |e| LedgerError::Read {
            path: self.path.clone(),
            source: e,
        };
        let werr = |e| LedgerError::Write {
            path: self.path.clone(),
            source: e,
        };
        let len = f.metadata().map_err(rerr)?.len();
        if len == 0 || ends_in_newline(f, len).map_err(rerr)? {
            return Ok(None);
        }
        // The start of the torn line: just after the last newline, if any.
        let keep = newline_before(f, len).map_err(rerr)?.map_or(0, |i| i + 1);
        let mut torn = vec![0u8; (len - keep) as usize];
        f.read_exact_at(&mut torn, keep).map_err(rerr)?;
        let line = self.count_lines(f)? + 1;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ledger".into());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut kept = dir.join(format!("{name}.torn-line{line}"));
        let mut n = 1;
        let mut out = loop {
            match OpenOptions::new().write(true).create_new(true).open(&kept) {
                Ok(o) => break o,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    n += 1;
                    kept = dir.join(format!("{name}.torn-line{line}-{n}"));
                }
                Err(e) => return Err(werr(e)),
            }
        };
        out.write_all(&torn).map_err(werr)?;
        out.sync_all().map_err(werr)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
        f.set_len(keep).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        Ok(Some(TornTail {
            line,
            bytes: len - keep,
            kept,
        }))
    }
}

/// What a repair record notes.
enum Loss {
    /// A last line torn by an interrupted write.
    Torn(TornTail),
    /// Records the head file says were written, gone from the end of the file
    /// (with the bytes of a cut line, when one was left).
    AfterWrite(LostRecords, Option<TornTail>),
}

/// The `error` record that continues the chain after a loss.
fn repair_record(next: &Record, loss: &Loss) -> Record {
    let reason = match loss {
        Loss::AfterWrite(lost, Some(torn)) if lost.from == lost.to => format!(
            "the ledger's line {} ({} bytes left) had been written completely (the head file records it) \
             but was found cut short: the end of the ledger was damaged after it was written; \
             its bytes were kept in {} and the chain continues from the record before it",
            torn.line,
            torn.bytes,
            torn.kept.display()
        ),
        Loss::AfterWrite(lost, torn) => format!(
            "records {} to {}, which the head file says were written, are missing from the end of the ledger: \
             it was damaged, cut or replaced by an older copy after they were written; \
             {}the chain continues from seq {}",
            lost.from,
            lost.to,
            torn.as_ref()
                .map(|t| format!(
                    "the bytes left of line {} were kept in {}; ",
                    t.line,
                    t.kept.display()
                ))
                .unwrap_or_default(),
            lost.from - 1
        ),
        Loss::Torn(torn) => format!(
            "the ledger's line {} ({} bytes) was torn by an interrupted write (a crash or a full disk); \
             its bytes were kept in {} and the chain continues from the record before it; \
             a drill whose record was lost this way is recorded again by crash recovery when its in-progress marker remains",
            torn.line,
            torn.bytes,
            torn.kept.display()
        ),
    };
    note_like(
        next,
        LEDGER_JOB,
        crate::evidence::record::Verdict::Error,
        reason,
    )
}
