//! The configuration file (DESIGN.md "Configuration"): parsing with positions,
//! validation that reports every problem it can find, and conversion into the
//! library's drill specs.
//!
//! Each section (`[agent]`, every `[[job]]`) is deserialized on its own so that
//! one mistake does not hide the next; values that need more than a type check
//! (durations, cron, time zone, names, paths) keep their spans and are validated
//! afterwards, all of them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub const DEFAULT_CONFIG: &str = "/etc/restore-verifier/config.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/restore-verifier";
pub const DEFAULT_SANDBOX_DIR: &str = "/var/tmp/restore-verifier";
/// A drill's `timeout` when the job sets none: room for a restore and a full
/// compare of a few hundred GiB at disk speed, and short enough that a hung
/// tool (pg_restore spinning on a cut dump, a repository that never answers)
/// is killed and reported the same night, before a daily job's next run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// One problem in a config file, with its position and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            if self.key.is_empty() {
                "(file)"
            } else {
                &self.key
            },
            self.message
        )
    }
}

/// All problems found in a config file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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

#[derive(Debug, Clone)]
pub enum Backup {
    Dir {
        path: PathBuf,
        backup_time: Option<SystemTime>,
        /// Where in the copy the source's data is; found when unset.
        root: Option<PathBuf>,
    },
    Tar {
        path: String,
        backup_time: Option<SystemTime>,
        /// Where in the archive the source's data is; found when unset.
        root: Option<PathBuf>,
    },
    Restic {
        repository: String,
        password_file: PathBuf,
        snapshot: String,
        host: Option<String>,
        tags: Vec<String>,
        path: Option<String>,
    },
    Borg {
        repository: String,
        passphrase_file: Option<PathBuf>,
        /// The key of a keyfile repository, handed to borg as BORG_KEY_FILE.
        key_file: Option<PathBuf>,
        archive: String,
        path: Option<String>,
    },
    Postgres {
        /// A dump file or directory (glob; newest wins).
        path: String,
        backup_time: Option<SystemTime>,
        /// Tables that must exist after the restore.
        tables: Vec<String>,
        /// libpq connection string of the live database (read-only compare).
        live: Option<String>,
        /// Percent of a table's live rows the restore may lack as drift.
        live_tolerance: f64,
    },
    Command {
        steps: Vec<Vec<String>>,
        /// For `{backup}`: a file or directory (glob; newest wins).
        path: Option<String>,
        backup_time: Option<SystemTime>,
    },
}

impl Backup {
    pub fn describe(&self) -> String {
        match self {
            Backup::Dir { path, .. } => format!("dir {}", path.display()),
            Backup::Tar { path, .. } => format!("tar {path}"),
            Backup::Restic {
                repository,
                snapshot,
                ..
            } => format!("restic {repository} snapshot {snapshot}"),
            Backup::Borg {
                repository,
                archive,
                ..
            } => format!("borg {repository} archive {archive}"),
            Backup::Command { steps, .. } => format!("command, {} step(s)", steps.len()),
            Backup::Postgres { path, .. } => format!("postgres dump {path}"),
        }
    }
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    store: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    run: Option<Spanned<Vec<String>>>,
    on: Option<Vec<Spanned<String>>>,
    jobs: Option<Vec<Spanned<String>>>,
    repeat_interval: Option<Spanned<String>>,
    smtp: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<Vec<String>>>,
}

// ---- raw, as written -------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    state_dir: Option<Spanned<String>>,
    sandbox_dir: Option<Spanned<String>>,
    max_concurrent_drills: Option<Spanned<i64>>,
    timezone: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    api_token_file: Option<Spanned<String>>,
    signing_key_file: Option<Spanned<String>>,
    previous_signing_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    system: Option<String>,
    schedule: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rto: Option<Spanned<String>>,
    rpo: Option<Spanned<String>>,
    max_interval: Option<Spanned<String>>,
    catch_up: Option<bool>,
    jitter: Option<Spanned<String>>,
    max_restore_bytes: Option<Spanned<String>>,
    run_as: Option<Spanned<String>>,
    network: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    backup: Spanned<RawBackup>,
    verify: Option<RawVerify>,
    check: Option<Vec<RawCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    backup_time: Option<Spanned<String>>,
    repository: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    passphrase_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    snapshot: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
    archive: Option<Spanned<String>>,
    restore: Option<Spanned<Steps>>,
    tables: Option<Spanned<Vec<String>>>,
    live: Option<Spanned<String>>,
    live_tolerance: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
}

/// `restore = ["tool", "{sandbox}"]` (one step) or `[["a"], ["b"]]` (several).
#[derive(Deserialize)]
#[serde(untagged)]
enum Steps {
    One(Vec<String>),
    Many(Vec<Vec<String>>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    content: Option<Spanned<String>>,
    sample_files: Option<Spanned<i64>>,
    rotate_over: Option<Spanned<i64>>,
    seed: Option<Spanned<i64>>,
    exclude: Option<Vec<Spanned<String>>>,
    min_files: Option<Spanned<i64>>,
    expect: Option<Vec<Spanned<String>>>,
    manifest: Option<Spanned<String>>,
    metadata: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    run: Spanned<Vec<String>>,
    expect_exit: Option<i32>,
    expect_stdout: Option<Spanned<RawExpect>>,
    timeout: Option<Spanned<String>>,
}

/// `expect_stdout = "ok"` (exact) or `expect_stdout = { regex = "^ok$" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawExpect {
    Exact(String),
    Regex { regex: String },
}

// ---- parsing ---------------------------------------------------------------

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        });
    }

    fn de<T: for<'de> Deserialize<'de>>(
        &mut self,
        v: Spanned<DeValue<'_>>,
        prefix: &str,
    ) -> Option<T> {
        let outer = v.span();
        match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                // serde_spanned's wrapper shows up in paths; people never wrote it.
                let path = e
                    .path()
                    .to_string()
                    .replace(".$__serde_spanned_private_value", "")
                    .replace("$__serde_spanned_private_value", "");
                let key = match path.as_str() {
                    "." | "" => prefix.to_string(),
                    p => format!("{prefix}.{p}"),
                };
                let inner = e.into_inner();
                let span = inner.span().unwrap_or(outer);
                self.at(span, key, inner.message().to_string());
                None
            }
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Parses a duration such as "90s", "2h", "7d" or "1h 30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. \"90s\", \"2h\", \"7d\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// Reads a 5-field crontab line (or 6-7 fields with seconds) with crontab's
/// day-of-week numbers (0 and 7 are Sunday), which the cron crate numbers 1-7
/// from Sunday; numbers are rewritten to names before parsing.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut full: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(String::from)
            .collect(),
        6 | 7 => fields.iter().map(|s| s.to_string()).collect(),
        n => {
            return Err(format!(
                "cron expression {expr:?} has {n} fields; use 5 (minute hour day month weekday) or 6-7 with seconds"
            ));
        }
    };
    full[5] = crontab_weekdays(&full[5])?;
    cron::Schedule::from_str(&full.join(" ")).map_err(|e| {
        // The crate's message quotes the rewritten expression and points at it;
        // its last line is the part that makes sense for what the user wrote.
        let msg = e.to_string();
        let last = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        format!("invalid cron expression {expr:?}: {last}")
    })
}

fn crontab_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |s: &str| -> Result<String, String> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(NAMES[n].to_string()),
            Ok(n) => Err(format!("day of week {n} is out of range 0-7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let mapped = match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (name(a)?, name(b)?);
                // "5-7" is Friday to Sunday; the cron crate wants ranges that do
                // not wrap past Saturday.
                if b == "SUN" && a != "SUN" && range.ends_with('7') {
                    out.push("SUN".to_string());
                    format!("{a}-SAT")
                } else {
                    format!("{a}-{b}")
                }
            }
            None => name(range)?,
        };
        out.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(out.join(","))
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(SystemTime::from)
        .map_err(|e| {
            format!("invalid time {s:?} ({e}); use RFC 3339, e.g. \"2026-11-01T02:30:00+09:00\"")
        })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// How much `load` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Structure and values: what every command needs.
    Values,
    /// Also that backups and sources exist now (`config check`). A drill does not
    /// need this: a missing backup is a failed drill, with a record.
    Paths,
}

/// Reads and validates a config file.
pub fn load(path: &Path, check: Check) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: format!(
                "cannot read the config file: {e}; pass -c FILE or set RESTORE_VERIFIER_CONFIG"
            ),
        }])
    })?;
    parse(path, &text, check)
}

/// Parses and validates config text; `path` is used in messages and to resolve
/// relative paths (against the config file's directory).
pub fn parse(path: &Path, text: &str, check: Check) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        file: path,
        text,
        diags: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        cx.at(span, "", e.message().to_string());
    }
    if !cx.diags.is_empty() {
        return Err(ConfigErrors(cx.diags));
    }
    // Absolute, so a path still names the same file for a tool that runs in
    // another directory (`-c rv.toml` has the parent "").
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::path::absolute(p).unwrap_or(p.to_path_buf()),
        _ => std::env::current_dir().unwrap_or_default(),
    };
    let mut raw_agent = RawAgent::default();
    let mut raw_jobs: Vec<(usize, RawJob)> = Vec::new();
    let mut raw_alerts: Vec<(usize, RawAlert)> = Vec::new();
    let mut systems: Vec<SystemDecl> = Vec::new();
    let mut raw_evidence = RawEvidence::default();
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "agent" => {
                if let Some(a) = cx.de::<RawAgent>(v.clone(), "agent") {
                    raw_agent = a;
                }
            }
            "job" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(j) = cx.de::<RawJob>(item.clone(), &format!("job[{i}]")) {
                            raw_jobs.push((i, j));
                        }
                    }
                }
                _ => cx.at(v.span(), "job", "must be an array of tables: write [[job]]"),
            },
            "alert" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(a) = cx.de::<RawAlert>(item.clone(), &format!("alert[{i}]")) {
                            raw_alerts.push((i, a));
                        }
                    }
                }
                _ => cx.at(
                    v.span(),
                    "alert",
                    "must be an array of tables: write [[alert]]",
                ),
            },
            "system" => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(s) = cx.de::<SystemDecl>(item.clone(), &format!("system[{i}]"))
                        {
                            systems.push(s);
                        }
                    }
                }
                _ => cx.at(
                    v.span(),
                    "system",
                    "must be an array of tables: write [[system]]",
                ),
            },
            "evidence" => {
                if let Some(e) = cx.de::<RawEvidence>(v.clone(), "evidence") {
                    raw_evidence = e;
                }
            }
            other => cx.at(
                k.span(),
                other,
                format!(
                    "unknown key `{other}`, expected `agent`, `job`, `alert`, `system` or `evidence`"
                ),
            ),
        }
    }
    let agent = agent_config(&mut cx, raw_agent, &base);
    let store = store_config(&mut cx, raw_evidence, &base);
    let mut jobs = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, rj) in raw_jobs {
        let name = rj.name.get_ref().clone();
        if !valid_name(&name) {
            cx.at(
                rj.name.span(),
                format!("job[{i}].name"),
                format!("job name {name:?} must match [a-z0-9_-]+"),
            );
        }
        if let Some(first) = names.insert(name.clone(), i) {
            cx.at(
                rj.name.span(),
                format!("job[{i}].name"),
                format!("duplicate job name {name:?} (also job[{first}])"),
            );
        }
        if let Some(j) = job(&mut cx, i, rj, &base, check, &agent) {
            jobs.push(j);
        }
    }
    let mut alerts = Vec::new();
    for (i, a) in raw_alerts {
        let named = a.name.is_some();
        if let Some(mut s) = alert_config(&mut cx, i, a, &jobs, &base) {
            // Unnamed sinks to one target (other `jobs` or `on`): numbered.
            if !named {
                let base_name = s.name.clone();
                let mut n = 1;
                while alerts.iter().any(|o: &AlertSink| o.name == s.name) {
                    n += 1;
                    s.name = format!("{base_name}-{n}");
                }
            }
            if alerts.iter().any(|o: &AlertSink| o.name == s.name) {
                cx.at(
                    0..0,
                    format!("alert[{i}].name"),
                    format!("duplicate alert name {:?}", s.name),
                );
            }
            alerts.push(s);
        }
    }
    if cx.diags.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            agent,
            store,
            jobs,
            alerts,
            systems,
        })
    } else {
        Err(ConfigErrors(cx.diags))
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn store_config(cx: &mut Ctx, e: RawEvidence, base: &Path) -> Store {
    let password_file = e.password_file.map(|p| resolve(base, p.get_ref()));
    let ca_file = e.ca_file.map(|p| resolve(base, p.get_ref()));
    let Some(s) = e.store else {
        return Store::File;
    };
    let text = s.get_ref().trim();
    if text == "file" {
        return Store::File;
    }
    let is_pg = text.starts_with("postgres://")
        || text.starts_with("postgresql://")
        || (text.contains('=') && !text.contains("://"));
    if !is_pg {
        cx.at(
            s.span(),
            "evidence.store",
            format!("unknown store {text:?}; use \"file\" or a PostgreSQL connection string (\"postgres://user@host/db\" or \"host=/run/postgresql dbname=evidence\")"),
        );
        return Store::File;
    }
    if has_password(text) {
        cx.at(
            s.span(),
            "evidence.store",
            "the connection string holds a password; put it in a file named by evidence.password_file instead",
        );
        return Store::File;
    }
    if let Err(err) = text.parse::<postgres::Config>() {
        cx.at(
            s.span(),
            "evidence.store",
            format!("not a PostgreSQL connection string: {err}"),
        );
        return Store::File;
    }
    Store::Postgres {
        conninfo: text.to_string(),
        password_file,
        ca_file,
    }
}

fn agent_config(cx: &mut Ctx, a: RawAgent, base: &Path) -> AgentConfig {
    let path = |v: Option<Spanned<String>>| v.map(|s| resolve(base, s.get_ref()));
    if a.signing_key_file.is_none()
        && let Some(p) = &a.previous_signing_key_file
    {
        cx.at(
            p.span(),
            "agent.previous_signing_key_file",
            "is set without signing_key_file; it names the key that signed before signing_key_file, for a key change",
        );
    }
    let max = match a.max_concurrent_drills {
        Some(m) if *m.get_ref() < 1 || *m.get_ref() > 1024 => {
            cx.at(
                m.span(),
                "agent.max_concurrent_drills",
                "must be between 1 and 1024",
            );
            1
        }
        Some(m) => *m.get_ref() as u32,
        None => 1,
    };
    let timezone = match a.timezone {
        Some(tz) => match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(z) => z,
            Err(_) => {
                cx.at(
                    tz.span(),
                    "agent.timezone",
                    format!("unknown time zone {:?}; use an IANA name such as \"Asia/Tokyo\" or \"UTC\"", tz.get_ref()),
                );
                chrono_tz::UTC
            }
        },
        None => chrono_tz::UTC,
    };
    let listen = a
        .listen
        .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
            Ok(s) => Some(s),
            Err(_) => {
                cx.at(
                    l.span(),
                    "agent.listen",
                    format!(
                        "{:?} is not an address:port such as \"127.0.0.1:9750\"",
                        l.get_ref()
                    ),
                );
                None
            }
        });
    AgentConfig {
        state_dir: path(a.state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        sandbox_dir: path(a.sandbox_dir).unwrap_or_else(|| DEFAULT_SANDBOX_DIR.into()),
        max_concurrent_drills: max,
        timezone,
        listen,
        api_token_file: path(a.api_token_file),
        signing_key_file: path(a.signing_key_file),
        previous_signing_key_file: path(a.previous_signing_key_file),
    }
}

fn duration(cx: &mut Ctx, v: Option<Spanned<String>>, key: String) -> Option<Duration> {
    let v = v?;
    match parse_duration(v.get_ref()) {
        Ok(d) => Some(d),
        Err(m) => {
            cx.at(v.span(), key, m);
            None
        }
    }
}

/// A share such as `10%` (0 to 100).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not a percentage; write it like \"10%\" (0% to 100%)");
    let n: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if (0.0..=100.0).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// A size such as `500MiB`, `20GB` or `1048576` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. \"500MiB\" or \"20GB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{s:?} must be more than 0 and less than 16 EiB"))
}

fn bytes_key(cx: &mut Ctx, v: Option<Spanned<String>>, key: String) -> Option<u64> {
    let v = v?;
    match parse_bytes(v.get_ref()) {
        Ok(n) => Some(n),
        Err(m) => {
            cx.at(v.span(), key, m);
            None
        }
    }
}

fn count(cx: &mut Ctx, v: Option<Spanned<i64>>, key: String, min: i64, default: u64) -> u64 {
    match v {
        Some(n) if *n.get_ref() < min => {
            cx.at(n.span(), key, format!("must be at least {min}"));
            default
        }
        Some(n) => *n.get_ref() as u64,
        None => default,
    }
}

fn job(
    cx: &mut Ctx,
    i: usize,
    j: RawJob,
    base: &Path,
    check: Check,
    agent: &AgentConfig,
) -> Option<Job> {
    let k = |key: &str| format!("job[{i}].{key}");
    let schedule = j.schedule.and_then(|s| match parse_cron(s.get_ref()) {
        Ok(sch) => Some((s.get_ref().clone(), sch)),
        Err(m) => {
            cx.at(s.span(), k("schedule"), m);
            None
        }
    });
    let timeout = duration(cx, j.timeout, k("timeout")).unwrap_or(DEFAULT_TIMEOUT);
    let rto = duration(cx, j.rto, k("rto"));
    let max_restore_bytes = bytes_key(cx, j.max_restore_bytes, k("max_restore_bytes"));
    let mut isolation = verifier::drill::process::Isolation::default();
    if let Some(r) = j.run_as {
        match verifier::drill::process::RunAs::lookup(r.get_ref()) {
            Ok(who) => isolation.run_as = Some(who),
            Err(e) => cx.at(r.span(), k("run_as"), e),
        }
    }
    if let Some(n) = j.network {
        match n.get_ref().as_str() {
            "host" => {}
            "none" => isolation.no_network = true,
            other => cx.at(
                n.span(),
                k("network"),
                format!("unknown network `{other}`; use \"none\" (no network) or \"host\""),
            ),
        }
    }
    let rpo = duration(cx, j.rpo, k("rpo"));
    let max_interval = duration(cx, j.max_interval, k("max_interval"));
    let jitter = duration(cx, j.jitter, k("jitter"));
    let source = j.source.map(|s| {
        let p = resolve(base, s.get_ref());
        if check == Check::Paths && !p.is_dir() {
            cx.at(
                s.span(),
                k("source"),
                format!(
                    "source directory {} does not exist or is not a directory",
                    p.display()
                ),
            );
        }
        for (key, dir) in [("sandbox_dir", &agent.sandbox_dir), ("state_dir", &agent.state_dir)] {
            if verifier::overlaps(&p, dir) {
                cx.at(
                    s.span(),
                    k("source"),
                    format!(
                        "{key} {} and this source overlap: restore-verifier never writes into a source; move {key} elsewhere",
                        dir.display()
                    ),
                );
            }
        }
        p
    });

    let backup_span = j.backup.span();
    let backup = backup_config(cx, i, j.backup.into_inner(), base, check, agent);
    // The throw-away PostgreSQL server: what no drill of this job could get
    // past (its account cannot reach sandbox_dir; no room for its socket).
    if check == Check::Paths && matches!(backup, Some(Backup::Postgres { .. })) {
        let sandbox =
            verifier::sandbox_path(&agent.sandbox_dir, j.name.get_ref(), &verifier::new_id());
        for why in verifier::driver::postgres_setup_problems(&agent.sandbox_dir, &sandbox) {
            cx.at(backup_span.clone(), k("backup"), why);
        }
    }

    let rv = j.verify.unwrap_or_default();
    let mut verify = Verify::default();
    if let Some(c) = rv.content {
        verify.content = match c.get_ref().as_str() {
            "all" => Content::All,
            "sample" => Content::Sample,
            "rotate" => Content::Rotate,
            "none" => Content::None,
            other => {
                cx.at(c.span(), k("verify.content"), format!("unknown content mode {other:?}; expected \"all\", \"sample\", \"rotate\" or \"none\""));
                Content::All
            }
        };
    }
    verify.sample_files = count(
        cx,
        rv.sample_files,
        k("verify.sample_files"),
        1,
        verify.sample_files,
    );
    verify.rotate_over = count(
        cx,
        rv.rotate_over,
        k("verify.rotate_over"),
        1,
        verify.rotate_over,
    );
    verify.min_files = count(cx, rv.min_files, k("verify.min_files"), 0, verify.min_files);
    verify.metadata =
        rv.metadata.and_then(
            |m| match verifier::tree::metadata::MetadataSet::parse(m.get_ref()) {
                Ok(set) => Some(set),
                Err(why) => {
                    cx.at(m.span(), k("verify.metadata"), why);
                    None
                }
            },
        );
    verify.seed = rv.seed.and_then(|s| match u64::try_from(*s.get_ref()) {
        Ok(v) => Some(v),
        Err(_) => {
            cx.at(s.span(), k("verify.seed"), "must be 0 or more");
            None
        }
    });
    for p in rv.exclude.unwrap_or_default() {
        match verifier::exclude_set(std::slice::from_ref(p.get_ref())) {
            Ok(_) => verify.exclude.push(p.into_inner()),
            Err(e) => cx.at(p.span(), k("verify.exclude"), e.to_string()),
        }
    }
    let excludes = verifier::exclude_set(&verify.exclude).ok().flatten();
    for p in rv.expect.unwrap_or_default() {
        let raw = Path::new(p.get_ref());
        if raw.is_absolute()
            || raw
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            cx.at(
                p.span(),
                k("verify.expect"),
                "canaries are paths relative to the backup root, without `..`",
            );
            continue;
        }
        // "./a//b" is the walked path "a/b".
        let rel: PathBuf = raw
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        if rel.as_os_str().is_empty() {
            cx.at(p.span(), k("verify.expect"), "a canary must name a file");
        } else if excludes.as_ref().is_some_and(|g| g.is_match(&rel)) {
            cx.at(
                p.span(),
                k("verify.expect"),
                format!(
                    "canary {} is excluded by verify.exclude, so it could never be checked",
                    rel.display()
                ),
            );
        } else {
            verify.expect.push(rel);
        }
    }

    if let Some(m) = rv.manifest {
        let path = resolve(base, m.get_ref());
        if source.is_some() {
            cx.at(
                m.span(),
                k("verify.manifest"),
                "set either `source` or `verify.manifest`: a drill compares with one of them",
            );
        }
        if check == Check::Paths
            && let Err(e) = verifier::tree::manifest::verify_checksum(&path)
        {
            cx.at(m.span(), k("verify.manifest"), e.to_string());
        }
        verify.manifest = Some(path);
    }
    let mut checks = Vec::new();
    for (n, c) in j.check.unwrap_or_default().into_iter().enumerate() {
        let key = |s: &str| format!("job[{i}].check[{n}].{s}");
        if c.run.get_ref().is_empty() {
            cx.at(c.run.span(), key("run"), "needs at least a program name");
        }
        let expect_stdout = c.expect_stdout.and_then(|e| {
            let span = e.span();
            match e.into_inner() {
                RawExpect::Exact(s) => Some(verifier::ExpectOutput::Exact(s)),
                RawExpect::Regex { regex } => match regex::Regex::new(&regex) {
                    Ok(r) => Some(verifier::ExpectOutput::Regex(r)),
                    Err(err) => {
                        cx.at(span, key("expect_stdout"), format!("invalid regex: {err}"));
                        None
                    }
                },
            }
        });
        checks.push(verifier::CheckSpec {
            run: c.run.into_inner(),
            expect_exit: c.expect_exit.unwrap_or(0),
            expect_stdout,
            timeout: duration(cx, c.timeout, key("timeout")),
        });
    }

    Some(Job {
        name: j.name.into_inner(),
        system: j.system,
        schedule,
        timeout,
        rto,
        rpo,
        max_interval,
        catch_up: j.catch_up.unwrap_or(false),
        jitter,
        max_restore_bytes,
        isolation,
        source,
        backup: backup?,
        verify,
        checks,
    })
}

/// What `config check` prints on success: the effective settings, in words.
pub fn describe(cfg: &Config, now: chrono::DateTime<chrono::Utc>) -> String {
    use std::fmt::Write;
    let a = &cfg.agent;
    let h = |d: Option<Duration>| d.map(verifier::humanize).unwrap_or_else(|| "-".into());
    let mut s = format!("{}: OK, {} job(s)\n", cfg.path.display(), cfg.jobs.len());
    let _ = writeln!(
        s,
        "  state_dir {}  sandbox_dir {}  timezone {}",
        a.state_dir.display(),
        a.sandbox_dir.display(),
        a.timezone
    );
    let _ = writeln!(
        s,
        "  max_concurrent_drills {}  listen {}  api_token_file {}  signing_key_file {}",
        a.max_concurrent_drills,
        a.listen
            .map(|l| l.to_string())
            .unwrap_or_else(|| "off".into()),
        a.api_token_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
        a.signing_key_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
    );
    for j in &cfg.jobs {
        let what = j.backup.describe();
        let when = match &j.schedule {
            Some((expr, sch)) => {
                let next = sch
                    .after(&now.with_timezone(&a.timezone))
                    .next()
                    .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
                    .unwrap_or_else(|| "never".into());
                format!("schedule {expr:?} (next {next})")
            }
            None => "manual/trigger only".into(),
        };
        let _ = writeln!(
            s,
            "  job {}: {what}; {when}; timeout {}{}, rto {}, rpo {}, overdue after {}, jitter {}, catch_up {}",
            j.name,
            verifier::humanize(j.timeout),
            if j.timeout == DEFAULT_TIMEOUT {
                " (default)"
            } else {
                ""
            },
            h(j.rto),
            h(j.rpo),
            // When it goes overdue, and why.
            crate::due::describe(j),
            h(j.jitter),
            j.catch_up
        );
        if !j.isolation.is_none() {
            let _ = writeln!(
                s,
                "    runbook steps and checks run {}",
                j.isolation.describe()
            );
        }
    }
    s
}

/// A local repository path is resolved against the config's directory; a URL
/// (`sftp:…`, `s3:…`, `ssh://…`, `user@host:…`) is kept as written.
fn repository(base: &Path, r: &str) -> String {
    let is_remote = r
        .find(':')
        .is_some_and(|c| r.find('/').is_none_or(|s| c < s));
    if is_remote {
        r.to_string()
    } else {
        resolve(base, r).display().to_string()
    }
}

fn backup_config(
    cx: &mut Ctx,
    i: usize,
    b: RawBackup,
    base: &Path,
    check: Check,
    agent: &AgentConfig,
) -> Option<Backup> {
    let k = |key: &str| format!("job[{i}].backup.{key}");
    let kind = b.kind.get_ref().clone();
    let allowed: &[&str] = match kind.as_str() {
        "dir" | "tar" => &["path", "backup_time", "root"],
        "restic" => &[
            "repository",
            "password_file",
            "snapshot",
            "host",
            "tags",
            "path",
        ],
        "borg" => &[
            "repository",
            "passphrase_file",
            "key_file",
            "archive",
            "path",
        ],
        "command" => &["restore", "path", "backup_time"],
        "postgres" => &["path", "backup_time", "tables", "live", "live_tolerance"],
        other => {
            cx.at(
                b.kind.span(),
                k("type"),
                format!(
                    "unknown backup type {other:?}; expected dir, tar, restic, borg, postgres or command"
                ),
            );
            return None;
        }
    };
    let present: [(&str, Option<std::ops::Range<usize>>); 15] = [
        ("live", b.live.as_ref().map(|v| v.span())),
        (
            "live_tolerance",
            b.live_tolerance.as_ref().map(|v| v.span()),
        ),
        ("root", b.root.as_ref().map(|v| v.span())),
        ("tables", b.tables.as_ref().map(|v| v.span())),
        ("path", b.path.as_ref().map(|v| v.span())),
        ("backup_time", b.backup_time.as_ref().map(|v| v.span())),
        ("repository", b.repository.as_ref().map(|v| v.span())),
        ("password_file", b.password_file.as_ref().map(|v| v.span())),
        (
            "passphrase_file",
            b.passphrase_file.as_ref().map(|v| v.span()),
        ),
        ("key_file", b.key_file.as_ref().map(|v| v.span())),
        ("snapshot", b.snapshot.as_ref().map(|v| v.span())),
        ("host", b.host.as_ref().map(|v| v.span())),
        ("tags", b.tags.as_ref().map(|v| v.span())),
        ("archive", b.archive.as_ref().map(|v| v.span())),
        ("restore", b.restore.as_ref().map(|v| v.span())),
    ];
    let mut ok = true;
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            cx.at(
                span,
                k(key),
                format!(
                    "`{key}` does not apply to backup type {kind:?} (it takes {})",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }
    if let Some(r) = &b.repository
        && has_password(r.get_ref())
    {
        cx.at(
            r.span(),
            k("repository"),
            "credentials in the repository URL would show in the process list and in records; keep them out of the URL (use the tool's credential file or environment)",
        );
        ok = false;
    }
    let mut need =
        |cx: &mut Ctx, v: Option<Spanned<String>>, key: &str| -> Option<Spanned<String>> {
            if v.is_none() {
                cx.at(
                    b.kind.span(),
                    k(key),
                    format!("backup type {kind:?} needs `{key}`"),
                );
                ok = false;
            }
            v
        };
    let backup_time = b.backup_time.and_then(|t| match parse_time(t.get_ref()) {
        Ok(t) => Some(t),
        Err(m) => {
            cx.at(t.span(), k("backup_time"), m);
            None
        }
    });
    // A path inside the backup: relative, without `..`.
    let root = b.root.and_then(|r| {
        let p = PathBuf::from(r.get_ref().trim_end_matches('/'));
        let inside = p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if inside && !p.as_os_str().is_empty() {
            Some(p)
        } else {
            cx.at(
                r.span(),
                k("root"),
                "`root` is a path inside the backup, relative and without `..` (e.g. \"srv/share\" for an archive of /srv/share)",
            );
            None
        }
    });
    let file = |cx: &mut Ctx, v: Spanned<String>, key: &str| -> PathBuf {
        let p = resolve(base, v.get_ref());
        if check == Check::Paths && std::fs::File::open(&p).is_err() {
            cx.at(
                v.span(),
                k(key),
                format!("{} is not readable; fix its path or mode", p.display()),
            );
        }
        p
    };
    let backup = match kind.as_str() {
        "dir" => {
            let p = need(cx, b.path, "path")?;
            let path = resolve(base, p.get_ref());
            if check == Check::Paths && !path.is_dir() {
                cx.at(
                    p.span(),
                    k("path"),
                    format!("backup directory {} does not exist", path.display()),
                );
            }
            if verifier::overlaps(&path, &agent.sandbox_dir) {
                cx.at(
                    p.span(),
                    k("path"),
                    format!(
                        "this backup and sandbox_dir {} overlap; move sandbox_dir elsewhere",
                        agent.sandbox_dir.display()
                    ),
                );
            }
            Backup::Dir {
                path,
                backup_time,
                root,
            }
        }
        "tar" => {
            let p = need(cx, b.path, "path")?;
            let pattern = resolve(base, p.get_ref()).display().to_string();
            if let Err(e) = glob::Pattern::new(&pattern) {
                cx.at(p.span(), k("path"), format!("invalid glob pattern: {e}"));
            } else if check == Check::Paths && verifier::driver::newest_match(&pattern).is_err() {
                cx.at(
                    p.span(),
                    k("path"),
                    format!("no backup file matches {pattern}"),
                );
            }
            Backup::Tar {
                path: pattern,
                backup_time,
                root,
            }
        }
        "restic" => {
            let repo = need(cx, b.repository, "repository");
            let pw = need(cx, b.password_file, "password_file");
            let (repo, pw) = (repo?, pw?);
            Backup::Restic {
                repository: repository(base, repo.get_ref()),
                password_file: file(cx, pw, "password_file"),
                snapshot: b
                    .snapshot
                    .map(Spanned::into_inner)
                    .unwrap_or_else(|| "latest".into()),
                host: b.host.map(Spanned::into_inner),
                tags: b.tags.map(Spanned::into_inner).unwrap_or_default(),
                path: b.path.map(Spanned::into_inner),
            }
        }
        "postgres" => {
            let p = need(cx, b.path, "path")?;
            let pattern = resolve(base, p.get_ref()).display().to_string();
            if check == Check::Paths
                && glob::glob(&pattern)
                    .map(|mut g| g.next().is_none())
                    .unwrap_or(true)
            {
                cx.at(p.span(), k("path"), format!("no dump matches {pattern}"));
            }
            let live = b.live.and_then(|l| {
                if crate::config::has_password(l.get_ref()) {
                    cx.at(l.span(), k("live"), "do not put a password in the connection string (it would show in the process list); use a .pgpass file (PGPASSFILE) or peer authentication");
                    None
                } else {
                    Some(l.into_inner())
                }
            });
            let live_tolerance = match b.live_tolerance {
                None => verifier::tree::drift::LIVE_TOLERANCE_PERCENT,
                Some(t) => {
                    if live.is_none() {
                        cx.at(
                            t.span(),
                            k("live_tolerance"),
                            "only means something with `live` (a manifest's counts are exact)",
                        );
                    }
                    match parse_percent(t.get_ref()) {
                        Ok(p) => p,
                        Err(m) => {
                            cx.at(t.span(), k("live_tolerance"), m);
                            verifier::tree::drift::LIVE_TOLERANCE_PERCENT
                        }
                    }
                }
            };
            Backup::Postgres {
                path: pattern,
                backup_time,
                tables: b.tables.map(Spanned::into_inner).unwrap_or_default(),
                live,
                live_tolerance,
            }
        }
        "borg" => {
            let repo = need(cx, b.repository, "repository")?;
            Backup::Borg {
                repository: repository(base, repo.get_ref()),
                passphrase_file: b.passphrase_file.map(|f| file(cx, f, "passphrase_file")),
                key_file: b.key_file.map(|f| file(cx, f, "key_file")),
                archive: b
                    .archive
                    .map(Spanned::into_inner)
                    .unwrap_or_else(|| "latest".into()),
                path: b.path.map(Spanned::into_inner),
            }
        }
        _ => {
            let Some(r) = b.restore else {
                cx.at(b.kind.span(), k("restore"), "backup type \"command\" needs `restore`: the runbook's steps, e.g. [[\"rsync\", \"-a\", \"/mnt/mirror/\", \"{sandbox}/\"]]");
                return None;
            };
            let span = r.span();
            let steps = match r.into_inner() {
                Steps::One(v) => vec![v],
                Steps::Many(v) => v,
            };
            if steps.is_empty() || steps.iter().any(|s| s.is_empty()) {
                cx.at(
                    span,
                    k("restore"),
                    "every step needs at least a program name",
                );
            }
            Backup::Command {
                steps,
                path: b
                    .path
                    .map(|p| resolve(base, p.get_ref()).display().to_string()),
                backup_time,
            }
        }
    };
    ok.then_some(backup)
}

/// True when a libpq connection string or URI carries a password.
pub fn has_password(conninfo: &str) -> bool {
    // As libpq reads it (`password = x` with spaces too), and as written.
    if conninfo
        .parse::<postgres::Config>()
        .is_ok_and(|c| c.get_password().is_some())
    {
        return true;
    }
    let c = conninfo.to_ascii_lowercase();
    c.contains("password=")
        || c.split_once("://").is_some_and(|(_, rest)| {
            rest.split('@')
                .next()
                .is_some_and(|auth| rest.contains('@') && auth.contains(':'))
        })
}

fn alert_config(
    cx: &mut Ctx,
    i: usize,
    a: RawAlert,
    jobs: &[Job],
    base: &Path,
) -> Option<AlertSink> {
    let k = |key: &str| format!("alert[{i}].{key}");
    let kind_name = a.kind.get_ref().clone();
    let url = |cx: &mut Ctx, u: Option<Spanned<String>>| -> Option<String> {
        match u {
            Some(u)
                if u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://") =>
            {
                Some(u.into_inner())
            }
            Some(u) => {
                cx.at(u.span(), k("url"), "must be an http:// or https:// URL");
                None
            }
            None => {
                cx.at(
                    a.kind.span(),
                    k("url"),
                    format!("alert type {kind_name:?} needs `url`"),
                );
                None
            }
        }
    };
    let kind = match kind_name.as_str() {
        "webhook" => SinkKind::Webhook {
            url: url(cx, a.url)?,
        },
        "slack" => SinkKind::Slack {
            url: url(cx, a.url)?,
        },
        "alertmanager" => SinkKind::Alertmanager {
            url: url(cx, a.url)?,
        },
        "command" => match a.run {
            Some(r) if !r.get_ref().is_empty() => SinkKind::Command {
                run: r.into_inner(),
            },
            _ => {
                cx.at(
                    a.kind.span(),
                    k("run"),
                    "alert type \"command\" needs `run`, e.g. [\"/usr/local/bin/page-oncall\"]",
                );
                return None;
            }
        },
        "email" => {
            let Some(smtp) = a.smtp else {
                cx.at(
                    a.kind.span(),
                    k("smtp"),
                    "alert type \"email\" needs `smtp = \"host:port\"`",
                );
                return None;
            };
            let (host, port) = match smtp
                .get_ref()
                .rsplit_once(':')
                .map(|(h, p)| (h, p.parse::<u16>()))
            {
                Some((h, Ok(p))) if !h.is_empty() => (h.to_string(), p),
                _ => {
                    cx.at(
                        smtp.span(),
                        k("smtp"),
                        "must be host:port, e.g. \"smtp.example.com:587\"",
                    );
                    return None;
                }
            };
            let tls = match a.tls.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("starttls") => SmtpTls::StartTls,
                Some("tls") => SmtpTls::Tls,
                Some("none") => SmtpTls::None,
                Some(other) => {
                    cx.at(
                        a.tls.as_ref().map(|t| t.span()).unwrap_or(0..0),
                        k("tls"),
                        format!("unknown tls mode {other:?}; expected starttls, tls or none"),
                    );
                    return None;
                }
            };
            let (Some(from), Some(to)) = (a.from, a.to) else {
                cx.at(
                    a.kind.span(),
                    k("to"),
                    "alert type \"email\" needs `from` and `to`",
                );
                return None;
            };
            for addr in std::iter::once(from.get_ref()).chain(to.get_ref().iter()) {
                if addr.parse::<lettre::Address>().is_err() {
                    cx.at(
                        to.span(),
                        k("to"),
                        format!("{addr:?} is not an e-mail address"),
                    );
                }
            }
            SinkKind::Email(EmailSink {
                host,
                port,
                tls,
                credentials_file: a.credentials_file.map(|c| resolve(base, c.get_ref())),
                from: from.into_inner(),
                to: to.into_inner(),
            })
        }
        other => {
            cx.at(
                a.kind.span(),
                k("type"),
                format!(
                    "unknown alert type {other:?}; expected webhook, slack, email, alertmanager or command"
                ),
            );
            return None;
        }
    };
    let mut on = Vec::new();
    for e in a.on.unwrap_or_default() {
        match e.get_ref().as_str() {
            "fail" => on.push(Event::Fail),
            "error" => on.push(Event::Error),
            "overdue" => on.push(Event::Overdue),
            "recovered" => on.push(Event::Recovered),
            other => cx.at(
                e.span(),
                k("on"),
                format!("unknown event {other:?}; expected fail, error, overdue or recovered"),
            ),
        }
    }
    if on.is_empty() {
        on = vec![Event::Fail, Event::Error, Event::Overdue, Event::Recovered];
    }
    let mut names = Vec::new();
    for j in a.jobs.unwrap_or_default() {
        if !jobs.iter().any(|x| &x.name == j.get_ref()) {
            cx.at(
                j.span(),
                k("jobs"),
                format!("no job named {:?}", j.get_ref()),
            );
        }
        names.push(j.into_inner());
    }
    // An unnamed sink is named by what it sends to, not by its place in the
    // file: the alert state keeps what each sink was told under its name, and
    // a reload that adds a sink above it must not make it a new one.
    let name = a.name.map(Spanned::into_inner).unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sink_target(&kind).as_bytes());
        format!("{kind_name}-{}", &hex::encode(digest)[..8])
    });
    Some(AlertSink {
        name,
        kind,
        on,
        jobs: names,
        repeat_interval: duration(cx, a.repeat_interval, k("repeat_interval")),
    })
}

/// What an unnamed sink is named after: where it sends, without a URL's
/// user, password or query (a short hash of it is shown in logs and state).
fn sink_target(kind: &SinkKind) -> String {
    let bare = |url: &str| {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or_default();
        format!("{scheme}://{host}/{path}")
    };
    match kind {
        SinkKind::Webhook { url } | SinkKind::Slack { url } | SinkKind::Alertmanager { url } => {
            bare(url)
        }
        SinkKind::Command { run } => run.join("\0"),
        SinkKind::Email(e) => format!("{}:{}|{}|{}", e.host, e.port, e.from, e.to.join(",")),
    }
}

/// The config file to use: `-c`, else `$RESTORE_VERIFIER_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("RESTORE_VERIFIER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse(Path::new("/etc/rv.toml"), text, Check::Values) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// The alert state keeps what each sink was told under its name: an
    /// unnamed sink keeps its name when another is added above it.
    #[test]
    fn unnamed_sinks_keep_their_names_when_sinks_are_added() {
        let hook = "[[alert]]\ntype = \"webhook\"\nurl = \"http://hook.example/a\"\n";
        let other = "[[alert]]\ntype = \"webhook\"\nurl = \"http://hook.example/b\"\n";
        let names = |text: &str| -> Vec<String> {
            parse(Path::new("/etc/rv.toml"), text, Check::Values)
                .unwrap()
                .alerts
                .into_iter()
                .map(|a| a.name)
                .collect()
        };
        let alone = names(hook);
        let below = names(&format!("{other}{hook}"));
        assert_eq!(below[1], alone[0]);
        assert_ne!(below[0], below[1]);
        assert!(alone[0].starts_with("webhook-"), "{alone:?}");
        // Two unnamed sinks to one target are numbered, in file order.
        let twice = names(&format!("{hook}{hook}"));
        assert_eq!(twice, [alone[0].clone(), format!("{}-2", alone[0])]);
        // A URL's password and query are not part of what names it.
        let secret = names(
            &hook
                .replace("http://hook", "http://u:pw@hook")
                .replace("/a", "/a?token=1"),
        );
        assert_eq!(secret, alone);
    }

    #[test]
    fn crontab_weekdays_follow_crontab() {
        // 0 and 7 are Sunday in crontab; the cron crate would read 0 as invalid.
        let s = parse_cron("30 2 * * 0").unwrap();
        let sun = parse_cron("30 2 * * Sun").unwrap();
        use chrono::TimeZone;
        let t = chrono_tz::UTC
            .with_ymd_and_hms(2026, 11, 25, 0, 0, 0)
            .unwrap();
        assert_eq!(s.after(&t).next(), sun.after(&t).next());
        let fri_sun = parse_cron("0 0 * * 5-7").unwrap();
        let days: Vec<_> = fri_sun
            .after(&t)
            .take(3)
            .map(|d| d.format("%a").to_string())
            .collect();
        assert_eq!(days, ["Fri", "Sat", "Sun"]);
        assert!(parse_cron("* * * *").is_err());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("*/5 * * * * *").is_ok());
    }

    #[test]
    fn shipped_example_config_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/config.example.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let cfg = parse(path, &text, Check::Values).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.jobs.len(), 5);
        assert_eq!(cfg.agent.timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(cfg.jobs.iter().filter(|j| j.schedule.is_some()).count(), 4);
        assert_eq!(cfg.jobs[3].checks.len(), 1);
        assert_eq!(cfg.alerts.len(), 2);
    }

    #[test]
    fn canaries_are_normalised_and_must_not_be_excluded() {
        let base =
            "[[job]]\nname = \"a\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n[job.verify]\n";
        let ok = format!("{base}expect = [\"./finance//ledger.csv\"]\n");
        let cfg = parse(Path::new("/etc/rv.toml"), &ok, Check::Values).unwrap();
        assert_eq!(
            cfg.jobs[0].verify.expect,
            [PathBuf::from("finance/ledger.csv")]
        );
        let bad = format!("{base}exclude = [\"*.tmp\"]\nexpect = [\"a/b.tmp\"]\n");
        let e = errs(&bad);
        assert!(
            e[0].contains("job[0].verify.expect: canary a/b.tmp is excluded"),
            "{e:?}"
        );
    }

    #[test]
    fn sandbox_inside_a_source_is_refused() {
        let text = "[agent]\nsandbox_dir = \"/srv/share/.rv\"\n[[job]]\nname = \"a\"\nsource = \"/srv/share\"\n[job.backup]\ntype = \"dir\"\npath = \"/x\"\n";
        let e = errs(text);
        assert!(
            e.iter()
                .any(|m| m
                    .contains("job[0].source: sandbox_dir /srv/share/.rv and this source overlap")),
            "{e:?}"
        );
    }

    #[test]
    fn passwords_in_connection_strings_are_spotted() {
        assert!(has_password("host=db dbname=erp password=secret"));
        assert!(has_password("postgresql://erp:secret@db/erp"));
        assert!(has_password("host=db password = secret dbname=erp"));
        assert!(has_password("postgresql://db/erp?password=secret"));
        assert!(!has_password("postgresql://erp@db/erp"));
        assert!(!has_password("host=/run/postgresql dbname=erp"));
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert_eq!(parse_percent(" 2.5 % "), Ok(2.5));
        assert_eq!(parse_percent("0%"), Ok(0.0));
        for bad in ["10", "101%", "-1%", "ten%", ""] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let text = r#"[agent]
timezone = "Mars/Olympus"

[[job]]
name = "a"
schedule = "not cron"
rpo = "soon"
[job.backup]
type = "dir"
path = "/x"

[[job]]
name = "a"
[job.backup]
type = "tar"
path = "/y/*.tar"
[job.verify]
sample_filez = 3
"#;
        let e = errs(text);
        assert!(
            e.iter()
                .any(|m| m.starts_with("/etc/rv.toml:2:12: agent.timezone:")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("/etc/rv.toml:6:12: job[0].schedule:")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("/etc/rv.toml:7:7: job[0].rpo:")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains(":18:1: job[1].verify") && m.contains("sample_filez")),
            "{e:#?}"
        );
    }
}
