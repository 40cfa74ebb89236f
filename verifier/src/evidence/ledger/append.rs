//! Appending: the exclusive lock, the one line written and fsynced, and the
//! record's `seq`, `prev_hash`, `hash` and signatures.

use std::fs::{File, OpenOptions};
use std::io::Write;

use serde_json::Value;

use super::{GENESIS, Ledger, LedgerError, SigningTail, canonical, record_hash};
use crate::evidence::record::Record;

impl Ledger {
    /// Appends `rec`, setting its `seq`, `prev_hash` and `hash`. Safe against
    /// concurrent appenders (in other processes too) and durable on return.
    pub fn append(&self, rec: &mut Record) -> Result<(), LedgerError> {
        let f = self.open_locked()?;
        self.mend_tail(&f, rec)?;
        self.append_locked(&f, rec)
    }

    /// The ledger file opened for appending, created when missing, under the
    /// exclusive lock.
    pub(super) fn open_locked(&self) -> Result<File, LedgerError> {
        let werr = |e| LedgerError::Write {
            path: self.path.clone(),
            source: e,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        let created = !self.path.exists();
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| LedgerError::Open {
                path: self.path.clone(),
                source: e,
            })?;
        f.lock().map_err(werr)?;
        if created && let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
        }
        Ok(f)
    }

    /// Appends under the lock the caller holds.
    /// Appends under the lock the caller holds: first the key record when
    /// signing begins or the key changes here.
    pub(super) fn append_locked(&self, f: &File, rec: &mut Record) -> Result<(), LedgerError> {
        let last = self.last_line(f)?;
        match self.tail_of(last.as_ref(), false) {
            SigningTail::Continues => self.write_after(f, last, rec, false),
            tail @ (SigningTail::Begins | SigningTail::Rotates) => {
                let rotates = tail == SigningTail::Rotates;
                self.append_key_record(f, last, rec, rotates)?;
                let last = self.last_line(f)?;
                self.write_after(f, last, rec, false)
            }
            refused => Err(LedgerError::Signing(refused.refusal().unwrap_or_default())),
        }
    }

    /// Writes `rec` after `last` (the file's last line, read under the
    /// lock), signing it with this ledger's key and, for a key change, the
    /// previous one.
    pub(super) fn write_after(
        &self,
        f: &File,
        last: Option<(u64, String)>,
        rec: &mut Record,
        signed_by_previous: bool,
    ) -> Result<(), LedgerError> {
        let werr = |e| LedgerError::Write {
            path: self.path.clone(),
            source: e,
        };
        let (seq, prev) = match last {
            None => (1, GENESIS.to_string()),
            Some((line, text)) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt {
                    path: self.path.clone(),
                    line,
                    detail: e.to_string(),
                })?;
                let seq = v["seq"].as_u64().unwrap_or(line);
                let next = seq.checked_add(1).ok_or_else(|| LedgerError::Corrupt {
                    path: self.path.clone(),
                    line,
                    detail: format!("seq {seq} cannot be followed; the ledger was not written by restore-verifier"),
                })?;
                let hash = v["hash"].as_str().unwrap_or_default().to_string();
                (next, hash)
            }
        };
        rec.seq = seq;
        rec.prev_hash = prev;
        rec.hash = String::new();
        rec.signature = None;
        rec.signature_previous = None;
        let mut v = serde_json::to_value(&*rec).expect("records serialize");
        let hash = record_hash(&v);
        v["hash"] = Value::String(hash.clone());
        if let Some(key) = &self.signer {
            let sig = crate::evidence::signing::sign_hash(key, &hash);
            v["signature"] = Value::String(sig.clone());
            rec.signature = Some(sig);
        }
        if signed_by_previous && let Some(key) = &self.previous {
            let sig = crate::evidence::signing::sign_hash(key, &hash);
            v["signature_previous"] = Value::String(sig.clone());
            rec.signature_previous = Some(sig);
        }
        let mut line = canonical(&v);
        line.push('\n');
        let mut w = f;
        w.write_all(line.as_bytes()).map_err(werr)?;
        f.sync_data().map_err(werr)?;
        // The record is durable in the ledger now; a stale head file only
        // weakens the tail check, so it must not turn success into failure.
        let signer = self
            .signer
            .as_ref()
            .map(|k| crate::evidence::signing::fingerprint(&k.verifying_key()));
        if let Err(e) = self.write_head(seq, &hash, signer.as_deref()) {
            tracing::warn!(ledger = %self.path.display(), error = %e, "Could not update the ledger head file.");
        }
        rec.hash = hash;
        Ok(())
    }
}
