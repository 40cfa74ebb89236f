//! `manifest create` and `manifest check`: a tree's (or a live database's)
//! manifest, taken when the backup is made, and a tree checked against one.

use verifier::CompareOptions;

use super::args::ManifestCommand;
use crate::config;
use crate::exit::{CliError, Outcome};
use crate::output;

pub fn run(command: ManifestCommand) -> Result<Outcome, CliError> {
    match command {
        ManifestCommand::Create {
            dir,
            postgres,
            output,
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
        ManifestCommand::Check { dir, file, json } => {
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
            super::compare::print(&report, json)
        }
    }
}
