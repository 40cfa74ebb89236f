//! `keygen`: an ed25519 key pair for signing evidence.

use std::path::Path;

use verifier::evidence::signing;

use crate::exit::{CliError, Outcome};

pub fn run(output: &Path) -> Result<Outcome, CliError> {
    signing::keygen(output).map_err(|e| CliError::Other(e.into()))?;
    println!(
        "private key {} (keep it secret; set signing_key_file)\npublic key  {} (give it to auditors: evidence verify --public-key)",
        output.display(),
        signing::public_path(output).display()
    );
    Ok(Outcome::Success)
}
