//! The commands: `args` is the command line's shape, and each command's work
//! is in its own file; `dispatch` sends a parsed command line to it.

mod alert;
mod args;
mod compare;
mod config_check;
mod evidence;
mod keygen;
mod manifest;
pub(crate) mod report;
mod run;

use std::io::IsTerminal;
use std::path::Path;

use args::{AlertCommand, ConfigCommand};
pub use args::{Cli, Command, LogFormat};

use crate::config::{self, Check};
use crate::exit::{CliError, Outcome};

/// Runs the command `cli` names.
pub fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    let cfg = cli.config.as_deref();
    let quiet = cli.quiet;
    match cli.command {
        Command::Demo { dir } => crate::demo::run(dir, quiet),
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check::run(cfg),
        Command::Run {
            jobs,
            trigger,
            reason,
            json,
        } => run::run(cfg, &jobs, trigger, reason, json, quiet),
        Command::Compare {
            source,
            restored,
            json,
            manifest_out,
            threads,
        } => compare::run(&source, &restored, json, manifest_out, threads, quiet),
        Command::Agent => crate::daemon::run(config::config_path(cfg)),
        Command::Report {
            since,
            until,
            format,
            lang,
            excel,
            output,
        } => report::run(cfg, since, until, format, lang, excel, output),
        Command::Keygen { output } => keygen::run(&output),
        Command::Alert {
            command: AlertCommand::Test { name },
        } => alert::test(cfg, name),
        Command::Manifest { command } => manifest::run(command),
        Command::Evidence { command } => evidence::run(cfg, command),
    }
}

/// The config named by `-c`, `$RESTORE_VERIFIER_CONFIG` or the default path.
fn load(flag: Option<&Path>, check: Check) -> Result<config::Config, CliError> {
    Ok(config::load(&config::config_path(flag), check)?)
}

/// Log lines go to stderr: `RESTORE_VERIFIER_LOG` filters them; the default
/// is warnings for commands and info for the agent, errors only with --quiet.
pub fn init_logging(format: LogFormat, quiet: bool, daemon: bool) {
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

/// A compare keeps directories open for the files it has queued: allow it as
/// many as the system lets this process have (up to 65,536; the soft limit is
/// often 1,024 with a hard limit far above it). Children inherit the limit.
pub fn raise_open_file_limit() {
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
