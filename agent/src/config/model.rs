//! The typed configuration every command works from: what `parse` returns
//! once every value has been checked.

use super::*;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub sandbox_dir: PathBuf,
    pub max_concurrent_drills: u32,
    pub timezone: chrono_tz::Tz,
    pub listen: Option<SocketAddr>,
    pub api_token_file: Option<PathBuf>,
    pub signing_key_file: Option<PathBuf>,
    /// The key that signed before `signing_key_file`: when the ledger's last
    /// record is signed by it, the next record is a key record signed by both.
    pub previous_signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    All,
    Sample,
    Rotate,
    None,
}

#[derive(Debug, Clone)]
pub struct Verify {
    pub content: Content,
    pub sample_files: u64,
    pub rotate_over: u64,
    pub seed: Option<u64>,
    pub exclude: Vec<String>,
    pub min_files: u64,
    pub expect: Vec<PathBuf>,
    /// Verify against this manifest instead of the source.
    pub manifest: Option<PathBuf>,
    /// `metadata = ["mode", "owner", "acl", "xattr"]`; unset: the default.
    pub metadata: Option<verifier::tree::metadata::MetadataSet>,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            content: Content::All,
            sample_files: 200,
            rotate_over: 12,
            seed: None,
            exclude: Vec::new(),
            min_files: 1,
            expect: Vec::new(),
            manifest: None,
            metadata: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub system: Option<String>,
    /// The expression as written, and as the cron crate reads it.
    pub schedule: Option<(String, cron::Schedule)>,
    pub timeout: Duration,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    pub max_interval: Option<Duration>,
    pub catch_up: bool,
    pub jitter: Option<Duration>,
    /// Refuse a restore larger than this many bytes.
    pub max_restore_bytes: Option<u64>,
    /// Who runs the runbook's restore steps and the checks, and with what network.
    pub isolation: verifier::drill::process::Isolation,
    pub source: Option<PathBuf>,
    pub backup: Backup,
    pub verify: Verify,
    pub checks: Vec<verifier::CheckSpec>,
}

/// Where evidence records go besides the local ledger (`[evidence] store`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Store {
    /// Only the local ledger, `state_dir/ledger.jsonl`.
    #[default]
    File,
    /// Also a shared PostgreSQL database (a URL or a libpq `key=value` string,
    /// never with a password in it).
    Postgres {
        conninfo: String,
        password_file: Option<PathBuf>,
        /// PEM certificates (a private CA) trusted for the server's TLS
        /// certificate, besides the public roots.
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub agent: AgentConfig,
    pub store: Store,
    pub jobs: Vec<Job>,
    pub alerts: Vec<AlertSink>,
    /// Declared systems (`[[system]]`); a system no job covers is reported.
    pub systems: Vec<SystemDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDecl {
    pub name: String,
    pub owner: Option<String>,
    pub criticality: Option<String>,
}

/// When alerts are sent.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Fail,
    Error,
    Overdue,
    Recovered,
    /// `alert test`: sent to every sink, whatever its `on`; never in `on`.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Fail => "fail",
            Event::Error => "error",
            Event::Overdue => "overdue",
            Event::Recovered => "recovered",
            Event::Test => "test",
        }
    }
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    /// Generic JSON POST.
    Webhook { url: String },
    /// Slack (or compatible) incoming webhook: `{"text": …}`.
    Slack { url: String },
    /// Prometheus Alertmanager: POST /api/v2/alerts.
    Alertmanager { url: String },
    /// A program; the alert JSON on stdin.
    Command { run: Vec<String> },
    /// Mail through an SMTP server.
    Email(EmailSink),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone)]
pub struct EmailSink {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// "user:password" (or user and password on two lines); read at send time.
    pub credentials_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

/// One `[[alert]]`.
#[derive(Debug, Clone)]
pub struct AlertSink {
    pub name: String,
    pub kind: SinkKind,
    pub on: Vec<Event>,
    /// Only these jobs (all when empty).
    pub jobs: Vec<String>,
    /// Reminders while a job stays failing or overdue; none when unset.
    pub repeat_interval: Option<Duration>,
}
