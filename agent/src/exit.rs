//! Exit codes (DESIGN.md "Command line"), mapped in one place.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every drill passed / the check holds.
    Success,
    /// A drill failed or erred, a compare found differences, a ledger is broken.
    Failed,
    /// Usage or configuration error.
    Usage,
    /// Interrupted by a signal.
    Interrupted,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Interrupted => 130,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        ExitCode::from(o.code())
    }
}

/// An error that ends a command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn outcome(&self) -> Outcome {
        match self {
            CliError::Config(_) | CliError::Usage(_) => Outcome::Usage,
            CliError::Other(_) => Outcome::Failed,
        }
    }
}
