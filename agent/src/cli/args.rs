//! The command line's shape: every command, flag and default (DESIGN.md
//! "Command line"). What each command does is in its own file beside this.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "restore-verifier",
    version,
    about = "Proves backups can really be restored: restore drills with hash-chained evidence."
)]
pub struct Cli {
    /// Config file [default: $RESTORE_VERIFIER_CONFIG, else /etc/restore-verifier/config.toml]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// No progress output.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Html,
    Md,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LangArg {
    En,
    Ja,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TriggerArg {
    Schedule,
    Manual,
    Change,
}

#[derive(Subcommand)]
pub enum Command {
    /// Make sample data and a backup, drill it and a corrupted copy, verify the ledger.
    Demo {
        /// Where to put the demo [default: a directory under $TMPDIR].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Drill now: restore, verify, record (all jobs when none is named).
    Run {
        jobs: Vec<String>,
        #[arg(long, value_enum, default_value_t = TriggerArg::Manual)]
        trigger: TriggerArg,
        /// Why this drill runs, e.g. a change ticket.
        #[arg(long)]
        reason: Option<String>,
        /// Print each record as one JSON line on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compare two trees the way a drill does (no restore).
    Compare {
        source: PathBuf,
        restored: PathBuf,
        #[arg(long)]
        json: bool,
        /// Write the SHA-256 of every compared file here (JSON lines).
        #[arg(long, value_name = "FILE")]
        manifest_out: Option<PathBuf>,
        /// Files read at once [default: one per core].
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        threads: usize,
    },
    /// The daemon: scheduled drills, HTTP API and metrics, until SIGTERM.
    Agent,
    /// Make or check a manifest (path, type, size, mode, mtime, SHA-256 of a tree).
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Make an ed25519 key pair for signing evidence (FILE and FILE.pub).
    Keygen {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// A period report for auditors, with the No.151 assessment.
    Report {
        /// YYYY-MM-DD or RFC 3339 [default: 12 months ago].
        #[arg(long)]
        since: Option<String>,
        /// YYYY-MM-DD (inclusive) or RFC 3339 [default: now].
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        #[arg(long, value_enum, default_value_t = LangArg::En)]
        lang: LangArg,
        /// CSV with a UTF-8 byte-order mark, so Excel shows Japanese correctly.
        #[arg(long)]
        excel: bool,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Alert sinks.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Read and check the evidence ledger.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Write the manifest of DIR (take it when the backup is made), or with
    /// --postgres the exact row count of every table of a live database
    /// (read-only), taken when the dump is made.
    Create {
        #[arg(required_unless_present = "postgres")]
        dir: Option<PathBuf>,
        /// libpq connection string, e.g. "host=/run/postgresql dbname=app".
        #[arg(long, value_name = "CONNINFO", conflicts_with = "dir")]
        postgres: Option<String>,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Compare DIR with a manifest exactly; exit 1 on any difference.
    Check {
        dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Send a test alert through each configured sink (or the one named).
    Test { name: Option<String> },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file; errors are printed as file:line:col: key: message.
    Check,
}

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// List records.
    List {
        #[arg(long)]
        job: Option<String>,
        /// YYYY-MM-DD (in the configured time zone) or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// YYYY-MM-DD (inclusive) or RFC 3339.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence bundle (ledger, run manifests, public key, reports,
    /// checksums, README) for auditors to verify offline.
    Export {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(short = 'o', long = "output", value_name = "BUNDLE.tar.gz")]
        output: PathBuf,
    },
    /// Show one record by id, id prefix or seq.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain of a ledger (and its signatures, with a public key).
    Verify {
        /// Ledger file [default: state_dir/ledger.jsonl of the config].
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Public key (PEM) the signed records must be signed with, or linked
        /// to by key records; repeat it for a shared store whose hosts have
        /// their own keys. Records before signing began are checked as a
        /// chain and shown as the unsigned range. With a key and no signed
        /// record at all: UNSIGNED, exit 1.
        #[arg(long, value_name = "FILE")]
        public_key: Vec<PathBuf>,
    },
}
