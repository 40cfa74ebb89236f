//! The ledger: an append-only JSON-lines file of records, hash-chained.
//!
//! `hash` is SHA-256 over the record's canonical JSON (keys sorted, no spaces)
//! without `hash` and `signature`; `prev_hash` is the previous record's `hash`.
//! Appends take an exclusive lock, write one line, and fsync before returning.
//! A small head file beside the ledger remembers the last `seq` and `hash`, so
//! removing records from the end is noticed too.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::evidence::record::{FORMAT, KEY_JOB, KeySection, LEDGER_JOB, Record};

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

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct ChainReport {
    pub records: u64,
    /// Records whose signature verified.
    pub signed: u64,
    pub first: Option<Record>,
    pub last: Option<Record>,
    /// `hash` of the last good record (or GENESIS).
    pub head_hash: String,
    /// The first problem; `None` when the chain holds.
    pub problem: Option<ChainProblem>,
    /// Records noting a repair of the ledger (a torn last line set aside):
    /// (seq, what happened).
    pub repairs: Vec<(u64, String)>,
    /// Records that finished well before the record before them: the clock
    /// went backwards (or was set back) between them. (seq, what).
    pub clock_notes: Vec<(u64, String)>,
    /// The ledger in runs of records under one signing state, in order: the
    /// unsigned records before signing began, then one run per key.
    pub ranges: Vec<SignedRange>,
}

impl ChainReport {
    /// The key that signs the record `seq`, when it is signed.
    pub fn key_of(&self, seq: u64) -> Option<&SignedRange> {
        self.ranges
            .iter()
            .find(|r| r.signed && r.from <= seq && seq <= r.to)
    }
}

/// Consecutive records under one signing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRange {
    pub from: u64,
    pub to: u64,
    pub signed: bool,
    /// The fingerprint of the key that signs them ([`crate::evidence::signing::fingerprint`]);
    /// `None` when unsigned, or signed before key records (seq 1 on) with no
    /// public key given to check them.
    pub key: Option<String>,
    /// The seq of the key record that began the run; `None` for records
    /// signed from the ledger's start without one (agents before 0.x).
    pub key_record: Option<u64>,
    /// Whether a public key given to the check is this key, or one linked to
    /// it by key records signed by both.
    pub trusted: bool,
}

/// The signing state a chain is in.
#[derive(Clone)]
enum InForce {
    Unsigned,
    /// Signed, and the key is known: named by a key record, or a given key
    /// that verified the first signed record.
    Key {
        key: Box<ed25519_dalek::VerifyingKey>,
        fingerprint: String,
        since: u64,
    },
    /// Signed from before key records, and no given key verifies it (or none
    /// was given): the signatures cannot be checked.
    Unknown {
        since: u64,
    },
}

/// Checks a chain one record line at a time: canonical form, hash, link to
/// the record before, seq, and signatures. The ledger file and the shared
/// evidence store both feed it their lines in order.
///
/// Signing: records before the first key record (or the first signed record)
/// are unsigned; a key record names the key that signs every record from it
/// on, is signed by that key, and, when a key signed the records before it,
/// by that key too (`signature_previous`). An unsigned record after signing
/// began, a signature that does not verify with the key in force, a key
/// change without the old key's signature: each breaks the chain. With
/// `trusted` keys, one of the keys that signed must be one of them (keys
/// linked by key records vouch for each other).
pub struct ChainChecker<'k> {
    trusted: &'k [ed25519_dalek::VerifyingKey],
    prev: String,
    in_force: InForce,
    pub report: ChainReport,
}

impl<'k> ChainChecker<'k> {
    pub fn new(trusted: &'k [ed25519_dalek::VerifyingKey]) -> ChainChecker<'k> {
        ChainChecker {
            trusted,
            prev: GENESIS.to_string(),
            in_force: InForce::Unsigned,
            report: ChainReport {
                head_hash: GENESIS.to_string(),
                ..ChainReport::default()
            },
        }
    }

    /// Checks the next record, `line` without its newline. False (and the
    /// report's problem set) when the chain breaks here; later lines are then
    /// not checked.
    pub fn push(&mut self, line: &[u8]) -> bool {
        let line_no = self.report.records + 1;
        match self.check(line, line_no) {
            Ok(()) => true,
            Err(what) => {
                self.report.problem = Some(ChainProblem {
                    line: line_no,
                    what,
                });
                false
            }
        }
    }

    /// The report, after the last line: with trusted keys, the signed records
    /// must be signed by one of them (or a key linked to one).
    pub fn finish(mut self) -> ChainReport {
        let trusted: Vec<String> = self
            .trusted
            .iter()
            .map(crate::evidence::signing::fingerprint)
            .collect();
        let any = self
            .report
            .ranges
            .iter()
            .any(|r| r.key.as_ref().is_some_and(|k| trusted.contains(k)));
        for r in &mut self.report.ranges {
            r.trusted = r.signed && any;
        }
        if !trusted.is_empty()
            && !any
            && self.report.problem.is_none()
            && let Some(r) = self.report.ranges.iter().find(|r| r.signed)
        {
            self.report.problem = Some(ChainProblem {
                line: r.from,
                what: match &r.key {
                    Some(k) => format!(
                        "records {} to {} are signed by key {k}, which is none of the given public keys, and no key record links it to one (a swapped key)",
                        r.from, r.to
                    ),
                    None => format!(
                        "signature does not verify with the given public key (records {} to {}: changed, or signed by another key)",
                        r.from, r.to
                    ),
                },
            });
        }
        self.report
    }

    fn check(&mut self, line: &[u8], line_no: u64) -> Result<(), String> {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("not a JSON record: {e}"))?;
        if v["format"] != FORMAT {
            return Err(format!("unknown format {}", v["format"]));
        }
        if canonical(&v) != String::from_utf8_lossy(line) {
            return Err("record is not in canonical form (edited by hand: spacing, key order or a duplicate key)".into());
        }
        let stored = v["hash"].as_str().unwrap_or_default().to_string();
        if record_hash(&v) != stored {
            return Err(
                "record was changed after it was written (its hash does not match its content)"
                    .into(),
            );
        }
        if v["prev_hash"].as_str() != Some(self.prev.as_str()) {
            return Err(format!(
                "prev_hash does not match the hash of {}: a record before this one was removed, inserted or reordered",
                if line_no == 1 {
                    "the chain start".to_string()
                } else {
                    format!("line {}", line_no - 1)
                }
            ));
        }
        if v["seq"].as_u64() != Some(line_no) {
            return Err(format!("seq is {}, expected {line_no}", v["seq"]));
        }
        self.check_signing(&v, &stored, line_no)?;
        let rec: Record =
            serde_json::from_value(v).map_err(|e| format!("record fields are invalid: {e}"))?;
        let report = &mut self.report;
        if let Some(before) = &report.last {
            let back = before.finished_at - rec.finished_at;
            if back.num_seconds() > CLOCK_BACK_TOLERANCE_SECS {
                report.clock_notes.push((
                    rec.seq,
                    format!(
                        "finished at {}, {} before seq {} finished ({}): the clock went backwards or was set back between them",
                        rec.finished_at.to_rfc3339(),
                        crate::units::humanize(back.to_std().unwrap_or_default()),
                        before.seq,
                        before.finished_at.to_rfc3339()
                    ),
                ));
            }
        }
        if rec.job == LEDGER_JOB {
            report
                .repairs
                .push((rec.seq, rec.reasons.first().cloned().unwrap_or_default()));
        }
        self.prev = stored;
        report.records += 1;
        report.head_hash = self.prev.clone();
        if report.first.is_none() {
            report.first = Some(rec.clone());
        }
        report.last = Some(rec);
        Ok(())
    }

    /// The signing rules for one record (see the type's documentation), and
    /// the ranges they make.
    fn check_signing(&mut self, v: &Value, hash: &str, seq: u64) -> Result<(), String> {
        use crate::evidence::signing::{fingerprint, public_from_pem, verify_hash};
        let sig = v["signature"].as_str();
        let key_section = v.get("key").filter(|k| !k.is_null());
        if key_section.is_none() && v.get("signature_previous").is_some() {
            return Err(
                "a record that is not a key record carries signature_previous; only key records may".into(),
            );
        }
        if let Some(k) = key_section {
            if v["job"] != KEY_JOB {
                return Err(format!(
                    "a record of job {} carries a key section; only key records may",
                    v["job"]
                ));
            }
            let key = k["public_key"]
                .as_str()
                .and_then(public_from_pem)
                .ok_or("the key record names no valid ed25519 public key")?;
            let fp = fingerprint(&key);
            if k["fingerprint"].as_str() != Some(fp.as_str()) {
                return Err(format!(
                    "the key record's fingerprint {} is not that of the public key it names ({fp})",
                    k["fingerprint"]
                ));
            }
            if !sig.is_some_and(|s| verify_hash(&key, hash, s)) {
                return Err(format!(
                    "the key record is not signed by the key it names ({fp})"
                ));
            }
            let previous = k["previous"].as_str();
            let sig_prev = v["signature_previous"].as_str();
            match &self.in_force {
                InForce::Unsigned => {
                    if previous.is_some() || sig_prev.is_some() {
                        return Err(format!(
                            "the key record names a previous key, but no record before seq {seq} is signed"
                        ));
                    }
                }
                InForce::Key {
                    key: old,
                    fingerprint: old_fp,
                    since,
                } => {
                    if previous != Some(old_fp.as_str()) {
                        return Err(format!(
                            "the key record names previous key {}, but the records since seq {since} are signed by {old_fp}",
                            previous.unwrap_or("(none)")
                        ));
                    }
                    if !sig_prev.is_some_and(|s| verify_hash(old, hash, s)) {
                        return Err(format!(
                            "the key changes here to {fp} without the previous key's signature: the records since seq {since} are signed by {old_fp}, which must sign the key record too (signature_previous)"
                        ));
                    }
                }
                InForce::Unknown { since } => {
                    if previous.is_none() || sig_prev.is_none() {
                        return Err(format!(
                            "the key changes here to {fp} without the previous key's signature: the records since seq {since} are signed"
                        ));
                    }
                }
            }
            self.in_force = InForce::Key {
                key: Box::new(key),
                fingerprint: fp.clone(),
                since: seq,
            };
            self.report.signed += 1;
            self.open_range(seq, true, Some(fp), Some(seq));
            return Ok(());
        }
        match (&self.in_force, sig) {
            (InForce::Unsigned, None) => {
                self.extend_or_open(seq, false, None);
            }
            (InForce::Unsigned, Some(sig)) => {
                // Signed from before key records: by a given key, or unknown.
                // When no given key verifies them, a later key record signed
                // by a given key may still vouch for them (its hash covers
                // them); `finish` says BROKEN otherwise.
                match self.trusted.iter().find(|k| verify_hash(k, hash, sig)) {
                    Some(k) => {
                        let fp = fingerprint(k);
                        self.in_force = InForce::Key {
                            key: Box::new(*k),
                            fingerprint: fp.clone(),
                            since: seq,
                        };
                        self.report.signed += 1;
                        self.open_range(seq, true, Some(fp), None);
                    }
                    None => {
                        self.in_force = InForce::Unknown { since: seq };
                        self.open_range(seq, true, None, None);
                    }
                }
            }
            (
                InForce::Key {
                    fingerprint, since, ..
                },
                None,
            ) => {
                return Err(format!(
                    "record is not signed, but signing began at seq {since} (key {fingerprint})"
                ));
            }
            (
                InForce::Key {
                    key,
                    fingerprint,
                    since,
                },
                Some(sig),
            ) => {
                if !verify_hash(key, hash, sig) {
                    return Err(format!(
                        "signature does not verify with key {fingerprint}, in force since seq {since} (the record was changed, or signed by another key without a key record)"
                    ));
                }
                self.report.signed += 1;
                if let Some(r) = self.report.ranges.last_mut() {
                    r.to = seq;
                }
            }
            (InForce::Unknown { since }, None) => {
                return Err(format!(
                    "record is not signed, but the records since seq {since} are"
                ));
            }
            (InForce::Unknown { .. }, Some(_)) => {
                if let Some(r) = self.report.ranges.last_mut() {
                    r.to = seq;
                }
            }
        }
        Ok(())
    }

    fn open_range(&mut self, seq: u64, signed: bool, key: Option<String>, key_record: Option<u64>) {
        self.report.ranges.push(SignedRange {
            from: seq,
            to: seq,
            signed,
            key,
            key_record,
            trusted: false,
        });
    }

    fn extend_or_open(&mut self, seq: u64, signed: bool, key: Option<String>) {
        match self.report.ranges.last_mut() {
            Some(r) if r.signed == signed && r.key == key => r.to = seq,
            _ => self.open_range(seq, signed, key, None),
        }
    }
}

/// Records are appended as drills finish, so `finished_at` only goes back by
/// the few moments two drills take to append; more is the clock going back.
const CLOCK_BACK_TOLERANCE_SECS: i64 = 60;

/// A torn last line that an append set aside.
#[derive(Debug, Clone)]
struct TornTail {
    line: u64,
    bytes: u64,
    kept: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ChainProblem {
    /// 1-based line number in the ledger file (0 for the file as a whole).
    pub line: u64,
    pub what: String,
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
    fn tail_of(&self, last: Option<&(u64, String)>, ahead: bool) -> SigningTail {
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn head_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".head");
        PathBuf::from(p)
    }

    /// Appends `rec`, setting its `seq`, `prev_hash` and `hash`. Safe against
    /// concurrent appenders (in other processes too) and durable on return.
    pub fn append(&self, rec: &mut Record) -> Result<(), LedgerError> {
        let f = self.open_locked()?;
        self.mend_tail(&f, rec)?;
        self.append_locked(&f, rec)
    }

    /// Under the lock, before anything is appended: a torn last line is set
    /// aside, and records lost from the end are read back or noted in a
    /// repair record (with the host, version and zone of `like`).
    fn mend_tail(&self, f: &File, like: &Record) -> Result<(), LedgerError> {
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

    /// The ledger file opened for appending, created when missing, under the
    /// exclusive lock.
    fn open_locked(&self) -> Result<File, LedgerError> {
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

    /// The head file: the seq and hash of the last record written.
    fn read_head(&self) -> Option<(u64, String)> {
        self.read_head_signed().map(|(seq, hash, _)| (seq, hash))
    }

    /// The head file in full: seq, hash and the fingerprint of the key that
    /// signed that record (none when unsigned, or written before the head
    /// file said).
    fn read_head_signed(&self) -> Option<(u64, String, Option<String>)> {
        let h = std::fs::read_to_string(self.head_path()).ok()?;
        let mut it = h.split_whitespace();
        let seq = it.next()?.parse::<u64>().ok()?;
        let hash = it.next()?.to_string();
        Some((seq, hash, it.next().map(String::from)))
    }

    /// Appends under the lock the caller holds.
    /// Appends under the lock the caller holds: first the key record when
    /// signing begins or the key changes here.
    fn append_locked(&self, f: &File, rec: &mut Record) -> Result<(), LedgerError> {
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

    /// Appends the key record that starts this ledger's key, with the host,
    /// version and zone of `like`.
    fn append_key_record(
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

    /// Writes `rec` after `last` (the file's last line, read under the
    /// lock), signing it with this ledger's key and, for a key change, the
    /// previous one.
    fn write_after(
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

    fn write_head(&self, seq: u64, hash: &str, signer: Option<&str>) -> io::Result<()> {
        let head = self.head_path();
        let tmp = head.with_extension("head.tmp");
        let mut f = File::create(&tmp)?;
        match signer {
            Some(fp) => writeln!(f, "{seq} {hash} {fp}")?,
            None => writeln!(f, "{seq} {hash}")?,
        }
        f.sync_data()?;
        std::fs::rename(&tmp, &head)
    }

    /// The last complete line (1-based number, text), reading backwards from the end.
    fn last_line(&self, f: &File) -> Result<Option<(u64, String)>, LedgerError> {
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
    fn last_complete_line(&self, f: &File) -> Result<Option<(u64, String)>, LedgerError> {
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

    fn count_lines(&self, f: &File) -> Result<u64, LedgerError> {
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

    fn open_shared(&self) -> Result<Option<File>, LedgerError> {
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

    /// Checks the whole chain and stops at the first bad line.
    pub fn verify(&self) -> Result<ChainReport, LedgerError> {
        self.verify_with(&[])
    }

    /// Checks the chain and every signature (see [`ChainChecker`]); with
    /// public keys, the records signed must be signed by one of them.
    pub fn verify_with(
        &self,
        keys: &[ed25519_dalek::VerifyingKey],
    ) -> Result<ChainReport, LedgerError> {
        let Some(f) = self.open_shared()? else {
            return Err(LedgerError::Open {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
            });
        };
        let mut reader = BufReader::with_capacity(256 * 1024, f);
        let mut chain = ChainChecker::new(keys);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| LedgerError::Read {
                    path: self.path.clone(),
                    source: e,
                })?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                let line_no = chain.report.records + 1;
                chain.report.problem = Some(ChainProblem {
                    line: line_no,
                    what: format!(
                        "incomplete last line ({} bytes; a write was interrupted). The records before it are not affected; the next append keeps these bytes aside in {}.torn-line{line_no} and records an error saying so",
                        buf.len(),
                        self.path.display()
                    ),
                });
                return Ok(chain.finish());
            }
            if !chain.push(&buf[..buf.len() - 1]) {
                return Ok(chain.finish());
            }
        }
        let mut report = chain.finish();
        if report.problem.is_none()
            && let Ok(head) = std::fs::read_to_string(self.head_path())
        {
            let mut it = head.split_whitespace();
            let seq: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let hash = it.next().unwrap_or_default();
            if seq > report.records {
                report.problem = Some(ChainProblem {
                    line: report.records + 1,
                    what: format!(
                        "the ledger ends at seq {} but its head file records seq {seq}: records were removed from the end",
                        report.records
                    ),
                });
            } else if seq == report.records && hash != report.head_hash {
                report.problem = Some(ChainProblem {
                    line: report.records,
                    what: "the last record's hash differs from the one in the head file: the end of the ledger was replaced".into(),
                });
            } else if seq == report.records
                && report.problem.is_none()
                && let Some(fp) = it.next()
                && let Some(last) = report.ranges.last()
            {
                // The head file names the key that signed the last record.
                let what = match &last.key {
                    _ if !last.signed => Some(format!(
                        "the head file says the last record was signed by key {fp}, but it carries no signature: signatures were removed"
                    )),
                    Some(k) if k != fp => Some(format!(
                        "the head file says the last record was signed by key {fp}, but it is signed by key {k}"
                    )),
                    _ => None,
                };
                if let Some(what) = what {
                    report.problem = Some(ChainProblem {
                        line: report.records,
                        what,
                    });
                }
            }
        }
        Ok(report)
    }
}

/// Whether the file's byte before `len` is a newline.
fn ends_in_newline(f: &File, len: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The offset of the last newline before `end`, reading backwards in chunks.
fn newline_before(f: &File, end: u64) -> io::Result<Option<u64>> {
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
