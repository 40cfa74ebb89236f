//! `restore-verifier`: the command line (docs/design.md "Command line").
//! This file parses the arguments, sets up logging, runs the command from
//! `cli/` and maps its outcome to the exit code.

mod alerts;
mod cli;
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
mod state;

use restore_verifier::{alert_state, config, due, plan, report, schedule, store};

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, Outcome};

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
    cli::init_logging(
        cli.log_format,
        cli.quiet,
        matches!(cli.command, Command::Agent),
    );
    cli::raise_open_file_limit();
    match cli::dispatch(cli) {
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
