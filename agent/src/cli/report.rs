//! `report`: the period report for auditors, in each format and language;
//! and the period that `--since`/`--until` name, which `evidence export`
//! reads the same way.

use std::path::{Path, PathBuf};

use super::args::{LangArg, ReportFormat};
use crate::config::{self, Check};
use crate::evidence;
use crate::exit::{CliError, Outcome};
use crate::report;

pub fn run(
    cfg_flag: Option<&Path>,
    since: Option<String>,
    until: Option<String>,
    format: ReportFormat,
    lang: LangArg,
    excel: bool,
    output: Option<PathBuf>,
) -> Result<Outcome, CliError> {
    let cfg = super::load(cfg_flag, Check::Values)?;
    let now = chrono::Utc::now();
    let period = period(&cfg, since, until, now)?;
    let a =
        report::for_config(&cfg, &period, now).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let lang = match lang {
        LangArg::En => report::Lang::En,
        LangArg::Ja => report::Lang::Ja,
    };
    let text = match format {
        ReportFormat::Md => report::markdown(&a, lang),
        ReportFormat::Html => report::html(&a, lang),
        ReportFormat::Json => serde_json::to_string_pretty(&a).map_err(anyhow::Error::from)? + "\n",
        ReportFormat::Csv => {
            let c = report::csv(&a);
            if excel { format!("\u{feff}{c}") } else { c }
        }
    };
    match output {
        Some(p) => std::fs::write(&p, text)
            .map_err(|e| CliError::Other(anyhow::anyhow!("writing {}: {e}", p.display())))?,
        None => print!("{text}"),
    }
    Ok(Outcome::Success)
}

/// `--since`/`--until` for reports and exports; the default is the last 12 months.
pub fn period(
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
