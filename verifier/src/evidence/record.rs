//! The evidence record of one drill (DESIGN.md "Evidence record").

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "restore-verifier/record/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Error,
    /// A due drill that did not run (the job's previous drill was still running,
    /// or the agent shut down first). Never a restore test.
    Skipped,
    /// A key record: signing began, or the signing key changed, here. Never a
    /// restore test.
    Key,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::Skipped => "skipped",
            Verdict::Key => "key",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Schedule,
    Manual,
    Change,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub reason: Option<String>,
    /// For scheduled drills: the schedule time this drill is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub location: Option<String>,
    pub sha256: Option<String>,
    pub created_at: Option<DateTime<FixedOffset>>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreSection {
    pub duration_seconds: f64,
    pub files: u64,
    pub bytes: u64,
    pub exit_code: Option<i32>,
    /// The restore tool and its version, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Commands run by the restore (tool invocations, runbook steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Where in the restore the data compared with the source is, when not
    /// at its top (`srv/share` of an archive of `/srv/share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// How the restore kept the backup from being written (a repository
    /// mounted read-only for the tool), or why it could not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One command a drill ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub duration_seconds: f64,
    /// The end of its output (stderr, else stdout), bounded.
    pub output_tail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotateSlice {
    pub slice: u64,
    pub over: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifySection {
    pub duration_seconds: f64,
    /// "source" (live data), or "none" (restored tree read, nothing to compare with).
    pub against: String,
    /// The source directory or manifest file compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// all | sample | rotate | none
    pub content: String,
    pub files_compared: u64,
    pub dirs_compared: u64,
    pub content_checked: u64,
    pub bytes_checked: u64,
    pub sample_seed: Option<u64>,
    pub rotate: Option<RotateSlice>,
    pub missing: Findings,
    pub mismatched: Findings,
    pub extra: Findings,
    pub changed_since_backup: Findings,
    pub new_since_backup: Findings,
    pub unreadable: Findings,
    pub source_unreadable: Findings,
    /// What was compared beyond type, size, link target and content: any of
    /// mode, owner, acl, xattr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<String>,
    /// Metadata the job asked for and the drill could not compare, each with
    /// why ("acl: the backup holds no ACLs").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata_not_compared: Vec<String>,
    /// Sockets (no archiver stores one) and device nodes (never made in a
    /// sandbox), on either side: left out of the compare, counted here.
    #[serde(default, skip_serializing_if = "Findings::is_empty")]
    pub skipped_special: Findings,
    pub expect: Vec<ExpectResult>,
    pub manifest_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Objectives {
    pub rto_seconds: Option<u64>,
    pub rto_met: Option<bool>,
    pub rpo_seconds: Option<u64>,
    pub rpo_met: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxSection {
    pub path: String,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: String,
    pub id: String,
    /// Position in the ledger, from 1; set when appended.
    pub seq: u64,
    pub job: String,
    pub system: Option<String>,
    pub host: String,
    pub agent_version: String,
    pub trigger: Trigger,
    pub started_at: DateTime<FixedOffset>,
    pub finished_at: DateTime<FixedOffset>,
    pub result: Verdict,
    pub reasons: Vec<String>,
    pub backup: BackupSection,
    pub restore: RestoreSection,
    pub verify: VerifySection,
    pub objectives: Objectives,
    /// Post-restore checks, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRecord>,
    pub sandbox: SandboxSection,
    /// Where this drill's artifacts (manifest of checked files) are, relative to
    /// the state directory.
    pub artifacts: Option<String>,
    /// On a key record: the key that signs from this record on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySection>,
    pub prev_hash: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// On a key record that changes the key: the previous key's signature of
    /// `hash`, so the old key vouches for the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_previous: Option<String>,
}

/// `job` of the `error` record that notes a repair of the ledger itself (job
/// names in a config cannot contain parentheses).
pub const LEDGER_JOB: &str = "(ledger)";

/// `job` of a key record (job names in a config cannot contain parentheses).
pub const KEY_JOB: &str = "(key)";

/// Whether a record is the ledger's own (a repair note or a key record), not
/// a job's.
pub fn is_ledger_note(job: &str) -> bool {
    job == LEDGER_JOB || job == KEY_JOB
}

/// What a key record says: the public key in force from it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySection {
    /// SPKI PEM, as in `FILE.pub`.
    pub public_key: String,
    /// SHA-256 of the key's SPKI DER, hex (as `evidence::signing::fingerprint` computes it).
    pub fingerprint: String,
    /// The fingerprint of the key it replaces; none when signing begins.
    pub previous: Option<String>,
}

/// Who and when, for a record of something that was not a restore.
#[derive(Debug, Clone)]
pub struct NoteHead {
    pub id: String,
    pub job: String,
    pub system: Option<String>,
    pub host: String,
    pub agent_version: String,
    pub trigger: Trigger,
    pub started_at: DateTime<FixedOffset>,
    pub finished_at: DateTime<FixedOffset>,
}

impl Record {
    /// A record of something that was not a restore: a skipped run, a drill
    /// that could not start or was interrupted, a ledger repair. Every drill
    /// section is empty and no sandbox is left.
    pub fn note(head: NoteHead, result: Verdict, reasons: Vec<String>) -> Record {
        Record {
            format: FORMAT.to_string(),
            id: head.id,
            seq: 0,
            job: head.job,
            system: head.system,
            host: head.host,
            agent_version: head.agent_version,
            trigger: head.trigger,
            started_at: head.started_at,
            finished_at: head.finished_at,
            result,
            reasons,
            backup: BackupSection::default(),
            restore: RestoreSection::default(),
            verify: VerifySection::default(),
            objectives: Objectives::default(),
            checks: Vec::new(),
            sandbox: SandboxSection {
                path: String::new(),
                removed: true,
            },
            artifacts: None,
            key: None,
            prev_hash: String::new(),
            hash: String::new(),
            signature: None,
            signature_previous: None,
        }
    }
}

/// A new record id: a UUID v7, so ids sort by time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// What a record holds of a compare, a canary and a check.

/// How many items of each finding list a record keeps; counts stay exact.
pub const LIST_CAP: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub path: String,
    /// What is wrong or different, e.g. "content differs at byte 1234".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Findings {
    /// Exact number of paths in this category.
    pub count: u64,
    /// The first `LIST_CAP` of them, in tree order.
    pub items: Vec<Finding>,
}

impl Findings {
    pub fn push(&mut self, path: String, what: String) {
        self.count += 1;
        if self.items.len() < LIST_CAP {
            self.items.push(Finding { path, what });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn contains(&self, path: &str) -> bool {
        self.items.iter().any(|f| f.path == path)
    }
}

/// The outcome of one canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectStatus {
    Matched,
    Missing,
    Mismatched,
    ChangedSinceBackup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectResult {
    pub path: String,
    pub status: ExpectStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub duration_seconds: f64,
    pub passed: bool,
    /// Why it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub output_tail: String,
}
