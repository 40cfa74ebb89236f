//! The ledger: an append-only JSON-lines file of records, hash-chained.
//!
//! `hash` is SHA-256 over the record's canonical JSON (keys sorted, no spaces)
//! without `hash` and `signature`; `prev_hash` is the previous record's `hash`.
//! Appends take an exclusive lock, write one line, and fsync before returning.
//! A small head file beside the ledger remembers the last `seq` and `hash`, so
//! removing records from the end is noticed too.
//!
//! The parts: `chain.rs` checks a chain one record line at a time;
//! `verify.rs` feeds it the ledger file; `append.rs` writes records under the
//! lock, after `mend.rs` has dealt with a torn or lost tail and `tail.rs` with
//! signing (a key record first when signing begins or the key changes);
//! `read.rs` reads lines and records back; `head.rs` is the head file beside
//! the ledger.

mod append;
mod chain;
mod head;
mod mend;
mod read;
mod tail;
mod verify;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::evidence::record::Record;

pub use chain::{ChainChecker, ChainProblem, ChainReport, SignedRange};
pub use read::Records;
pub use tail::SigningTail;

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write ledger {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read ledger {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{source}; the record was kept in {saved} instead")]
    NotAppended {
        saved: PathBuf,
        #[source]
        source: Box<LedgerError>,
    },
    #[error("cannot sign the ledger's next record: {0}")]
    Signing(String),
    #[error(
        "ledger {path} line {line} is not a valid record ({detail}); run `restore-verifier evidence verify` for details"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        detail: String,
    },
}

#[derive(Clone)]
pub struct Ledger {
    path: PathBuf,
    signer: Option<ed25519_dalek::SigningKey>,
    /// The key that signed before `signer`, to sign the key record of a
    /// key change.
    previous: Option<ed25519_dalek::SigningKey>,
    tail_source: Option<TailSource>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("signed", &self.signer.is_some())
            .field("previous_key", &self.previous.is_some())
            .field("tail_source", &self.tail_source.is_some())
            .finish()
    }
}

/// Where records lost from the end of a damaged ledger can be read again (the
/// shared evidence store keeps every published line): the lines as they were
/// written, or nothing when it does not have them all.
pub type TailSource = std::sync::Arc<dyn Fn(&LostRecords) -> Vec<String> + Send + Sync>;

/// Which records a ledger lost from its end.
#[derive(Debug, Clone, PartialEq)]
pub struct LostRecords {
    /// The hash of the ledger's first record (which names its chain in the
    /// evidence store), when the file still has it.
    pub chain: Option<String>,
    /// The first and the last seq lost.
    pub from: u64,
    pub to: u64,
    /// The hash the head file records for seq `to`.
    pub head_hash: String,
}

/// The canonical JSON text of a value: object keys sorted, no whitespace.
pub fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// The `hash` a record value must carry.
pub fn record_hash(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("hash");
        m.remove("signature");
        m.remove("signature_previous");
    }
    hex::encode(Sha256::digest(canonical(&v).as_bytes()))
}

impl Ledger {
    pub fn new(path: impl Into<PathBuf>) -> Ledger {
        Ledger {
            path: path.into(),
            signer: None,
            previous: None,
            tail_source: None,
        }
    }

    /// Where an append finds records that were written completely but lost
    /// from the end of the file later (see [`TailSource`]). They are put back
    /// when they continue the chain and end at the head file's hash.
    pub fn recovering_from(mut self, source: TailSource) -> Ledger {
        self.tail_source = Some(source);
        self
    }

    /// Signs every record this ledger appends. When the ledger's last
    /// record is unsigned (or there is none), a key record goes first.
    pub fn signed_by(mut self, key: ed25519_dalek::SigningKey) -> Ledger {
        self.signer = Some(key);
        self
    }

    /// The key that signed before [`Ledger::signed_by`]'s: when the last
    /// record is signed by it, the next append starts with a key record
    /// signed by both.
    pub fn previously_signed_by(mut self, key: ed25519_dalek::SigningKey) -> Ledger {
        self.previous = Some(key);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A record of the ledger's own (`job`), now, with the host, version and
/// zone of `like`.
fn note_like(
    like: &Record,
    job: &str,
    result: crate::evidence::record::Verdict,
    reason: String,
) -> Record {
    let now = chrono::Utc::now().with_timezone(like.finished_at.offset());
    Record::note(
        crate::evidence::record::NoteHead {
            id: crate::evidence::record::new_id(),
            job: job.to_string(),
            system: None,
            host: like.host.clone(),
            agent_version: like.agent_version.clone(),
            trigger: crate::evidence::record::Trigger {
                kind: like.trigger.kind,
                reason: None,
                scheduled_for: None,
            },
            started_at: now,
            finished_at: now,
        },
        result,
        vec![reason],
    )
}
