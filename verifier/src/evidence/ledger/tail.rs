//! The signing tail: what the next append does about signing, read from the
//! ledger's last record and the head file, and the key record that begins
//! signing or changes the key.

use std::fs::File;

use serde_json::Value;

use super::{Ledger, LedgerError, note_like};
use crate::evidence::record::{KEY_JOB, KeySection, Record};

/// What the next append does about signing, read from the ledger's last
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningTail {
    /// Nothing: the last record is signed by this ledger's key, or nothing
    /// is signed and this ledger does not sign.
    Continues,
    /// Signing begins: a key record (signed by the new key) goes first.
    Begins,
    /// The key changes: a key record signed by the new key and the previous
    /// one goes first.
    Rotates,
    /// Refused: the last record (`seq`) is signed by a key that is neither
    /// this ledger's nor its previous one.
    UnknownKey { seq: u64 },
    /// Refused: the last record (`seq`) is signed and this ledger does not
    /// sign; an unsigned record would break the chain.
    NotSigning { seq: u64 },
    /// Refused: the head file says record `seq` was signed by `key`, but
    /// the ledger now ends unsigned: it was replaced, edited or cut back
    /// after it was written. Signing must not begin over it.
    Replaced { seq: u64, key: String },
}

impl SigningTail {
    /// Why an append is refused, with what to do; `None` when it goes ahead.
    pub fn refusal(&self) -> Option<String> {
        match self {
            SigningTail::UnknownKey { seq } => Some(format!(
                "the ledger's last record (seq {seq}) is signed by another key than signing_key_file; \
                 to change keys, set [agent] previous_signing_key_file to the key that signed it, \
                 so the key record that starts the new key is signed by both \
                 (a running agent with the old config: reload it first)"
            )),
            SigningTail::Replaced { seq, key } => Some(format!(
                "the ledger's head file says record {seq} was signed by key {key}, but the ledger now ends with an unsigned record: \
                 it was replaced, edited or cut back after it was written, and a key record must not vouch for it; \
                 `restore-verifier evidence verify` shows what is there; move ledger.jsonl and its head file aside to start a new ledger"
            )),
            SigningTail::NotSigning { seq } => Some(format!(
                "the ledger is signed (its last record, seq {seq}, carries a signature), so an unsigned record would break it; \
                 set [agent] signing_key_file to the signing key again"
            )),
            _ => None,
        }
    }
}

impl Ledger {
    /// What the next append does about signing (see [`SigningTail`]).
    pub fn signing_tail(&self) -> Result<SigningTail, LedgerError> {
        match self.open_shared()? {
            None => Ok(self.tail_of(None, true)),
            Some(f) => {
                // A torn last line is set aside by the next append: the line
                // before it is the one the next record follows.
                let last = match self.last_line(&f) {
                    Err(LedgerError::Corrupt { .. }) => self.last_complete_line(&f)?,
                    other => other?,
                };
                Ok(self.tail_of(last.as_ref(), true))
            }
        }
    }

    /// Appends the key record now when signing begins or the key changes,
    /// so the ledger says from when the key signs. `Ok(false)` when none was
    /// needed.
    pub fn begin_signing(&self, like: &Record) -> Result<bool, LedgerError> {
        if self.signer.is_none() {
            return Ok(false);
        }
        let f = self.open_locked()?;
        // As an append would: what was lost from the end is noted first.
        self.mend_tail(&f, like)?;
        let last = self.last_line(&f)?;
        match self.tail_of(last.as_ref(), false) {
            SigningTail::Continues => Ok(false),
            tail @ (SigningTail::Begins | SigningTail::Rotates) => self
                .append_key_record(&f, last, like, tail == SigningTail::Rotates)
                .map(|()| true),
            refused => Err(LedgerError::Signing(refused.refusal().unwrap_or_default())),
        }
    }

    /// What the next append does about signing after `last`. `ahead`: asked
    /// before the tail is mended, so records the head file says are lost may
    /// still be read back from the tail source (the refusal waits for that).
    pub(super) fn tail_of(&self, last: Option<&(u64, String)>, ahead: bool) -> SigningTail {
        let tail = last.and_then(|(line, text)| {
            let v: Value = serde_json::from_str(text).ok()?;
            let seq = v["seq"].as_u64().unwrap_or(*line);
            Some((seq, v))
        });
        let Some((seq, v)) = tail else {
            return if self.signer.is_some() {
                SigningTail::Begins
            } else {
                SigningTail::Continues
            };
        };
        let hash = v["hash"].as_str().unwrap_or_default();
        let by = |k: &ed25519_dalek::SigningKey| {
            v["signature"]
                .as_str()
                .is_some_and(|s| crate::evidence::signing::verify_hash(&k.verifying_key(), hash, s))
        };
        // The head file names the key of the record it records: a ledger
        // that ends unsigned after a signed record was written was replaced
        // or cut back (a ledger put back from an older, unsigned copy too);
        // no key record may vouch for it.
        let replaced = || {
            self.read_head_signed().and_then(|(head_seq, _, fp)| {
                if ahead && head_seq > seq && self.tail_source.is_some() {
                    return None;
                }
                fp.map(|key| SigningTail::Replaced { seq: head_seq, key })
            })
        };
        match (&self.signer, v["signature"].is_string()) {
            (None, false) => replaced().unwrap_or(SigningTail::Continues),
            (None, true) => SigningTail::NotSigning { seq },
            (Some(_), false) => replaced().unwrap_or(SigningTail::Begins),
            (Some(k), true) if by(k) => SigningTail::Continues,
            (Some(_), true) if self.previous.as_ref().is_some_and(by) => SigningTail::Rotates,
            (Some(_), true) => SigningTail::UnknownKey { seq },
        }
    }

    /// Appends the key record that starts this ledger's key, with the host,
    /// version and zone of `like`.
    pub(super) fn append_key_record(
        &self,
        f: &File,
        last: Option<(u64, String)>,
        like: &Record,
        rotates: bool,
    ) -> Result<(), LedgerError> {
        let Some(key) = &self.signer else {
            return Ok(());
        };
        let public = key.verifying_key();
        let fingerprint = crate::evidence::signing::fingerprint(&public);
        let previous = rotates
            .then_some(self.previous.as_ref())
            .flatten()
            .map(|k| crate::evidence::signing::fingerprint(&k.verifying_key()));
        let reason = match &previous {
            None => format!("signing begins: records from here on are signed by key {fingerprint}"),
            Some(p) => format!(
                "the signing key changes from {p} to {fingerprint}: this record is signed by both, and records from here on by the new key"
            ),
        };
        let mut note = note_like(like, KEY_JOB, crate::evidence::record::Verdict::Key, reason);
        note.key = Some(KeySection {
            public_key: crate::evidence::signing::public_pem(&public),
            fingerprint,
            previous,
        });
        self.write_after(f, last, &mut note, rotates)?;
        tracing::info!(ledger = %self.path.display(), seq = note.seq, "{}", note.reasons[0]);
        Ok(())
    }
}
