//! `config check`: the config's errors, what the agent would refuse at start,
//! and the description of every job.

use std::path::Path;

use crate::config::Check;
use crate::drills;
use crate::exit::{CliError, Outcome};

pub fn run(cfg_flag: Option<&Path>) -> Result<Outcome, CliError> {
    let cfg = super::load(cfg_flag, Check::Paths)?;
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
    print!(
        "{}",
        restore_verifier::describe::config(&cfg, chrono::Utc::now())
    );
    Ok(Outcome::Success)
}
