//! Checking a chain of records, one line at a time: form, hash, link, seq
//! and the signing rules. Its own file because the ledger file and the shared
//! evidence store both feed it, and the rules are long enough to read alone.

use serde_json::Value;

use super::{GENESIS, canonical, record_hash};
use crate::evidence::record::{FORMAT, KEY_JOB, LEDGER_JOB, Record};

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

#[derive(Debug, Clone)]
pub struct ChainProblem {
    /// 1-based line number in the ledger file (0 for the file as a whole).
    pub line: u64,
    pub what: String,
}
