//! `evidence list|show|verify|export`: the ledger read, checked and
//! bundled for auditors.

use std::path::Path;

use verifier::evidence::signing;

use super::args::EvidenceCommand;
use crate::config::{self, Check};
use crate::evidence::{self, Filter, parse_date};
use crate::exit::{CliError, Outcome};
use crate::{drills, export};

pub fn run(cfg_flag: Option<&Path>, command: EvidenceCommand) -> Result<Outcome, CliError> {
    match command {
        EvidenceCommand::Export {
            since,
            until,
            output,
        } => {
            let cfg = super::load(cfg_flag, Check::Values)?;
            let now = chrono::Utc::now();
            let period = super::report::period(&cfg, since, until, now)?;
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
                .map(|p| signing::load_public_key(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let cfg = match ledger {
                Some(path) => {
                    return evidence::verify(&verifier::Ledger::new(path), &keys);
                }
                None => super::load(cfg_flag, Check::Values)?,
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
            let cfg = super::load(cfg_flag, Check::Values)?;
            let tz = cfg.agent.timezone;
            let filter = Filter {
                job,
                since: since.map(|s| parse_date(&s, tz, false)).transpose()?,
                until: until.map(|s| parse_date(&s, tz, true)).transpose()?,
            };
            evidence::list(&drills::ledger(&cfg), &filter, json)
        }
        EvidenceCommand::Show { id, json } => evidence::show(
            &drills::ledger(&super::load(cfg_flag, Check::Values)?),
            &id,
            json,
        ),
    }
}
