//! `alert test`: a test alert through each configured sink, or the one named.

use std::path::Path;

use crate::alerts;
use crate::config::{self, Check};
use crate::exit::{CliError, Outcome};

pub fn test(cfg_flag: Option<&Path>, name: Option<String>) -> Result<Outcome, CliError> {
    let cfg = super::load(cfg_flag, Check::Values)?;
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
