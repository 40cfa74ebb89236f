//! `restore-verifier`: the command line (DESIGN.md "Command line").

mod alerts;
use restore_verifier::alert_state;
use restore_verifier::config;
use restore_verifier::due;
use restore_verifier::store;
mod daemon;
mod demo;
mod drills;
mod evidence;
mod exit;
mod export;
mod http;
mod metrics;
mod output;
mod progress;
mod report;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use verifier::{CompareOptions, TriggerKind};

use crate::config::Check;
use crate::exit::{CliError, Outcome};

#[derive(Parser)]
#[command(
    name = "restore-verifier",
    version,
    about = "Proves backups can really be restored: restore drills with hash-chained evidence."
)]
struct Cli {
    /// Config file [default: $RESTORE_VERIFIER_CONFIG, else /etc/restore-verifier/config.toml]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// No progress output.
    #[arg(long, global = true)]
    quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Html,
    Md,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LangArg {
    En,
    Ja,
}

#[derive(Clone, Copy, ValueEnum)]
enum TriggerArg {
    Schedule,
    Manual,
    Change,
}

#[derive(Subcommand)]
enum Command {
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
enum ManifestCommand {
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
enum AlertCommand {
    /// Send a test alert through each configured sink (or the one named).
    Test { name: Option<String> },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the config file; errors are printed as file:line:col: key: message.
    Check,
}

#[derive(Subcommand)]
enum EvidenceCommand {
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

fn init_logging(format: LogFormat, quiet: bool, daemon: bool) {
    let default = match (quiet, daemon) {
        (true, _) => "error",
        (false, true) => "info",
        (false, false) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESTORE_VERIFIER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn load(flag: Option<&Path>, check: Check) -> Result<config::Config, CliError> {
    Ok(config::load(&config::config_path(flag), check)?)
}

/// A compare keeps directories open for the files it has queued: allow it as
/// many as the system lets this process have (up to 65,536; the soft limit is
/// often 1,024 with a hard limit far above it). Children inherit the limit.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let want = now.maximum.unwrap_or(u64::MAX).min(1 << 16);
    if now.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: now.maximum,
            },
        );
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Outcome::Usage
            } else {
                Outcome::Success
            }
            .into();
        }
    };
    init_logging(
        cli.log_format,
        cli.quiet,
        matches!(cli.command, Command::Agent),
    );
    raise_open_file_limit();
    match dispatch(cli) {
        Ok(o) => o.into(),
        Err(e) => {
            match &e {
                CliError::Config(c) => eprintln!(
                    "{c}\nrestore-verifier: the configuration has {} error(s)",
                    c.0.len()
                ),
                CliError::Usage(m) => eprintln!("restore-verifier: {m}"),
                CliError::Other(err) => eprintln!("restore-verifier: {err:#}"),
            }
            e.outcome().into()
        }
    }
}

fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    let cfg_flag = cli.config.as_deref();
    match cli.command {
        Command::Demo { dir } => demo::run(dir, cli.quiet),
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let cfg = load(cfg_flag, Check::Paths)?;
            // What the agent would refuse at start, through the same code.
            let problems: Vec<_> = drills::start_problems(&cfg)
                .into_iter()
                .chain(drills::listen_problem(&cfg))
                .collect();
            for p in &problems {
                let warning = if p.refuses { "" } else { "warning: " };
                eprintln!("{}: {}: {warning}{}", cfg.path.display(), p.key, p.why);
            }
            let refused = problems.iter().filter(|p| p.refuses).count();
            if refused > 0 {
                eprintln!("restore-verifier: the agent would not start: {refused} problem(s)");
                return Ok(Outcome::Usage);
            }
            print!("{}", config::describe(&cfg, chrono::Utc::now()));
            Ok(Outcome::Success)
        }
        Command::Run {
            jobs,
            trigger,
            reason,
            json,
        } => {
            let cfg = load(cfg_flag, Check::Values)?;
            let selected = drills::select(&cfg, &jobs).map_err(CliError::Usage)?;
            let kind = match trigger {
                TriggerArg::Schedule => TriggerKind::Schedule,
                TriggerArg::Manual => TriggerKind::Manual,
                TriggerArg::Change => TriggerKind::Change,
            };
            // An unreadable signing key or a state_dir that cannot be written
            // stops everything before any drill runs.
            // The handler goes in first: a signal during the checks below stops
            // the run (exit 130) before its first drill, recording nothing.
            let stop = drills::interrupt_flag();
            drills::signing_ledger(&cfg).map_err(|e| CliError::Usage(format!("{e:#}")))?;
            drills::check_dirs(&cfg).map_err(CliError::Usage)?;
            let mut all_pass = true;
            // Alerts from a one-off run go through the same outbox; what cannot
            // be delivered now is retried by the agent or the next run.
            let alerts = (!cfg.alerts.is_empty())
                .then(|| alerts::Alerts::open(&cfg.agent.state_dir).ok())
                .flatten();
            for job in selected {
                // Interrupted before this drill began: nothing to record.
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("restore-verifier: interrupted before {} began", job.name);
                    return Ok(Outcome::Interrupted);
                }
                let bar = progress::Bar::start(&job.name, cli.quiet);
                let drilled = drills::drill(
                    &cfg,
                    job,
                    drills::trigger(kind, reason.clone()),
                    None,
                    Some(stop.clone()),
                    progress::counters(&bar),
                );
                drop(bar);
                let rec = match drilled {
                    Ok(rec) => rec,
                    Err(e) => {
                        // One job's bookkeeping problem does not stop the others' drills.
                        eprintln!("restore-verifier: {e:#}");
                        all_pass = false;
                        continue;
                    }
                };
                all_pass &= rec.result == verifier::Verdict::Pass;
                if let Some(a) = &alerts {
                    a.observe(&cfg, &rec);
                }
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&rec).map_err(anyhow::Error::from)?
                    );
                }
                // The verdict where people look: stdout (`run job > out.txt`
                // holds it); with --json, stdout is the records, and the
                // summary goes to stderr with the logs.
                if !json {
                    print!("{}", output::summary(&rec));
                } else if !cli.quiet {
                    eprint!("{}", output::summary(&rec));
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "restore-verifier: interrupted; the drill was recorded and its sandbox removed"
                    );
                    store::publish_quietly(&cfg.store, drills::ledger(&cfg).path());
                    return Ok(Outcome::Interrupted);
                }
            }
            // The records of this run go to the shared store (if any) after
            // the drills, never holding one up.
            store::publish_quietly(&cfg.store, drills::ledger(&cfg).path());
            if let Some(a) = &alerts {
                a.deliver_due(&cfg);
            }
            Ok(if all_pass {
                Outcome::Success
            } else {
                Outcome::Failed
            })
        }
        Command::Compare {
            source,
            restored,
            json,
            manifest_out,
            threads,
        } => {
            let bar = progress::Bar::start("compare", cli.quiet);
            let opts = CompareOptions {
                manifest_out,
                threads,
                progress: progress::counters(&bar),
                deadline: verifier::Deadline::none().with_cancel(Some(drills::interrupt_flag())),
                ..CompareOptions::default()
            };
            if let Some(p) = &opts.progress {
                p.set_phase(verifier::Phase::Verifying);
            }
            let compared = verifier::compare(Some(&source), &restored, &opts);
            drop(bar);
            let report = match compared {
                Ok(r) => r,
                Err(e @ verifier::CompareError::Stopped(_)) => {
                    eprintln!("restore-verifier: compare {e}");
                    return Ok(Outcome::Interrupted);
                }
                Err(e) => return Err(CliError::Usage(e.to_string())),
            };
            print_compare(&report, json)
        }
        Command::Agent => daemon::run(config::config_path(cfg_flag)),
        Command::Report {
            since,
            until,
            format,
            lang,
            excel,
            output,
        } => {
            let cfg = load(cfg_flag, Check::Values)?;
            let now = chrono::Utc::now();
            let period = report_period(&cfg, since, until, now)?;
            let a = report::for_config(&cfg, &period, now)
                .map_err(|e| CliError::Usage(format!("{e:#}")))?;
            let lang = match lang {
                LangArg::En => report::Lang::En,
                LangArg::Ja => report::Lang::Ja,
            };
            let text = match format {
                ReportFormat::Md => report::markdown(&a, lang),
                ReportFormat::Html => report::html(&a, lang),
                ReportFormat::Json => {
                    serde_json::to_string_pretty(&a).map_err(anyhow::Error::from)? + "\n"
                }
                ReportFormat::Csv => {
                    let c = report::csv(&a);
                    if excel { format!("\u{feff}{c}") } else { c }
                }
            };
            match output {
                Some(p) => std::fs::write(&p, text).map_err(|e| {
                    CliError::Other(anyhow::anyhow!("writing {}: {e}", p.display()))
                })?,
                None => print!("{text}"),
            }
            Ok(Outcome::Success)
        }
        Command::Keygen { output } => {
            verifier::evidence::signing::keygen(&output).map_err(|e| CliError::Other(e.into()))?;
            println!(
                "private key {} (keep it secret; set signing_key_file)\npublic key  {} (give it to auditors: evidence verify --public-key)",
                output.display(),
                verifier::evidence::signing::public_path(&output).display()
            );
            Ok(Outcome::Success)
        }
        Command::Alert {
            command: AlertCommand::Test { name },
        } => {
            let cfg = load(cfg_flag, Check::Values)?;
            let sinks: Vec<&config::AlertSink> = cfg
                .alerts
                .iter()
                .filter(|s| name.as_ref().is_none_or(|n| &s.name == n))
                .collect();
            if sinks.is_empty() {
                return Err(CliError::Usage(match name {
                    Some(n) => format!("no alert named {n:?} in {}", cfg.path.display()),
                    None => format!("{} configures no [[alert]]", cfg.path.display()),
                }));
            }
            let alert = alerts::test_alert(&cfg);
            let mut ok = true;
            for s in sinks {
                match alerts::send(s, &alert) {
                    Ok(()) => println!("{}: sent", s.name),
                    Err(e) => {
                        ok = false;
                        println!("{}: FAILED: {e}", s.name);
                    }
                }
            }
            Ok(if ok {
                Outcome::Success
            } else {
                Outcome::Failed
            })
        }
        Command::Manifest {
            command:
                ManifestCommand::Create {
                    dir,
                    postgres,
                    output,
                },
        } => {
            let s = match (dir, postgres) {
                (Some(dir), _) => {
                    verifier::tree::manifest::create(&dir, &output, &verifier::Deadline::none())
                }
                (None, Some(conninfo)) if config::has_password(&conninfo) => {
                    return Err(CliError::Usage(
                        "do not put a password in the connection string: it shows in the process list; use a .pgpass file (PGPASSFILE)".into(),
                    ));
                }
                (None, Some(conninfo)) => {
                    // Only the database name goes into the manifest, never a password.
                    let db = conninfo
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("dbname="))
                        .unwrap_or("database")
                        .to_string();
                    verifier::driver::table_counts_manifest(&conninfo, &db, &output)
                }
                (None, None) => {
                    return Err(CliError::Usage("give DIR or --postgres CONNINFO".into()));
                }
            }
            .map_err(|e| CliError::Other(e.into()))?;
            println!(
                "{}: {} entries, {} files, {}; sha256 {}",
                output.display(),
                s.entries,
                s.files,
                output::bytes(s.bytes),
                s.sha256
            );
            Ok(Outcome::Success)
        }
        Command::Manifest {
            command: ManifestCommand::Check { dir, file, json },
        } => {
            let report = match verifier::compare_with(
                verifier::Reference::Manifest(&file),
                &dir,
                &CompareOptions::default(),
            ) {
                Ok(r) => r,
                Err(e @ verifier::CompareError::Reference(_)) => {
                    eprintln!("restore-verifier: {e}");
                    return Ok(Outcome::Failed);
                }
                Err(e) => return Err(CliError::Usage(e.to_string())),
            };
            print_compare(&report, json)
        }
        Command::Evidence { command } => match command {
            EvidenceCommand::Export {
                since,
                until,
                output,
            } => {
                let cfg = load(cfg_flag, Check::Values)?;
                let now = chrono::Utc::now();
                let period = report_period(&cfg, since, until, now)?;
                let e = export::export(&cfg, &period, now, &output)?;
                println!(
                    "{}: {} files, {} records in the period",
                    output.display(),
                    e.files,
                    e.records
                );
                Ok(Outcome::Success)
            }
            EvidenceCommand::Verify { ledger, public_key } => {
                let keys = public_key
                    .iter()
                    .map(|p| verifier::evidence::signing::load_public_key(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                let cfg = match ledger {
                    Some(path) => {
                        return evidence::verify(&verifier::Ledger::new(path), &keys);
                    }
                    None => load(cfg_flag, Check::Values)?,
                };
                let ledger = drills::ledger(&cfg);
                if cfg.store == config::Store::File {
                    return evidence::verify(&ledger, &keys);
                }
                // With a shared store: this host's ledger, when it has one, and
                // every chain in the store.
                let mut outcome = Outcome::Success;
                if ledger.path().exists() {
                    outcome = evidence::verify(&ledger, &keys)?;
                    println!();
                }
                let (text, stored) = evidence::verify_store_text(&cfg.store, &keys)?;
                print!("{text}");
                Ok(if stored == Outcome::Success {
                    outcome
                } else {
                    stored
                })
            }
            EvidenceCommand::List {
                job,
                since,
                until,
                json,
            } => {
                let cfg = load(cfg_flag, Check::Values)?;
                let tz = cfg.agent.timezone;
                let filter = evidence::Filter {
                    job,
                    since: since
                        .map(|s| evidence::parse_date(&s, tz, false))
                        .transpose()?,
                    until: until
                        .map(|s| evidence::parse_date(&s, tz, true))
                        .transpose()?,
                };
                evidence::list(&drills::ledger(&cfg), &filter, json)
            }
            EvidenceCommand::Show { id, json } => {
                evidence::show(&drills::ledger(&load(cfg_flag, Check::Values)?), &id, json)
            }
        },
    }
}

/// Prints a compare report (`compare`, `manifest check`); differences exit 1.
fn print_compare(report: &verifier::CompareReport, json: bool) -> Result<Outcome, CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{}", compare_text(report));
    }
    Ok(if report.has_differences() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// `--since`/`--until` for reports and exports; the default is the last 12 months.
fn report_period(
    cfg: &config::Config,
    since: Option<String>,
    until: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<report::Period, CliError> {
    let tz = cfg.agent.timezone;
    let utc = |t: chrono::DateTime<chrono::FixedOffset>| t.with_timezone(&chrono::Utc);
    Ok(report::Period {
        since: match since {
            Some(s) => utc(evidence::parse_date(&s, tz, false)?),
            None => now - chrono::Duration::days(365),
        },
        until: match until {
            Some(s) => utc(evidence::parse_date(&s, tz, true)?),
            None => now,
        },
    })
}

fn compare_text(r: &verifier::CompareReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} files and {} directories compared, {} files content-checked ({})",
        r.files_compared,
        r.dirs_compared,
        r.content_checked,
        output::bytes(r.bytes_checked)
    );
    for (name, f) in [
        ("missing", &r.missing),
        ("mismatched", &r.mismatched),
        ("extra", &r.extra),
        ("unreadable in restored tree", &r.unreadable),
        ("unreadable in source", &r.source_unreadable),
    ] {
        if f.count > 0 {
            let _ = writeln!(s, "{name}: {}", f.count);
            for i in &f.items {
                let _ = writeln!(
                    s,
                    "  {}{}",
                    output::escape(&i.path),
                    if i.what.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", output::escape(&i.what))
                    }
                );
            }
        }
    }
    if !r.has_differences() {
        let _ = writeln!(s, "no differences");
    }
    s
}
