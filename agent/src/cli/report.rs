//! `report`: the period report for auditors, in each format and language;
//! the period that `--since`/`--until` name, which `evidence export` reads
//! the same way; and the reading of a period's records for the assessment,
//! from the ledger or from the shared evidence store. The assessment and its
//! renderers are the library's `report`.

use std::path::{Path, PathBuf};

use super::args::{LangArg, ReportFormat};
use crate::config::{self, Check};
use crate::evidence;
use crate::exit::{CliError, Outcome};
use chrono::{DateTime, Utc};
use verifier::Record;

use crate::report::{self, Assessment, DEFAULT_POLICY, Period, Policy};

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
    let a = for_config(&cfg, &period, now).map_err(|e| CliError::Usage(format!("{e:#}")))?;
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

/// The assessment of the configured systems from the configured ledger,
/// verified with the signing key's public half when there is one.
pub fn for_config(
    cfg: &config::Config,
    period: &Period,
    now: DateTime<Utc>,
) -> anyhow::Result<Assessment> {
    if cfg.store != config::Store::File {
        return for_store(cfg, period, now);
    }
    let ledger = crate::drills::ledger(cfg);
    let keys = crate::drills::verifying_keys(cfg);
    let (problem, chain) = match ledger.verify_with(&keys) {
        Ok(c) => (
            c.problem
                .as_ref()
                .map(|p| format!("line {}: {}", p.line, p.what)),
            c,
        ),
        Err(e) => (Some(e.to_string()), verifier::ChainReport::default()),
    };
    let mut records: Vec<Record> = match ledger.records() {
        Ok(it) => it.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    records.retain(|r| !verifier::is_ledger_note(&r.job));
    let mut a = report::assess(&records, &report::scope(cfg), period, problem, now);
    report::attach_signing(&mut a, &records, &|r| {
        chain.key_of(r.seq).map(|k| k.key.clone())
    });
    Ok(a)
}

/// The assessment from the shared evidence store: every host's records. A job
/// is a host's job (`job@host`): two hosts' jobs of the same name are two jobs,
/// so one host's pass never closes another's failure. Each counts under the
/// system its records name. Signatures are checked with this host's key on
/// this host's chains only; other hosts' chains by their hash chain. A chain
/// that does not verify is the ledger problem the report shows; a store that
/// cannot be read is an error.
fn for_store(
    cfg: &config::Config,
    period: &Period,
    now: DateTime<Utc>,
) -> anyhow::Result<Assessment> {
    use anyhow::Context;
    let keys = crate::drills::verifying_keys(cfg);
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let chains = crate::store::verify_each(&cfg.store, |chain_host| {
        if chain_host == host {
            keys.clone()
        } else {
            Vec::new()
        }
    })
    .context("the evidence store cannot be read")?;
    let mut problems: Vec<String> = chains
        .iter()
        .filter_map(|c| {
            c.report.problem.as_ref().map(|p| {
                format!(
                    "host {} chain {}: seq {}: {}",
                    c.host,
                    &c.chain[..12.min(c.chain.len())],
                    p.line,
                    p.what
                )
            })
        })
        .collect();
    let (stored, bad) = crate::store::records(&cfg.store, period.since, period.until)
        .context("the evidence store cannot be read")?;
    if bad > 0 {
        problems.push(format!("{bad} stored rows are not records"));
    }
    let mut systems = report::declared(cfg);
    // The key of each record, by its chain's ranges.
    let keys_by_id: std::collections::HashMap<String, Option<String>> = stored
        .iter()
        .filter_map(|(chain, r)| {
            chains
                .iter()
                .find(|c| &c.chain == chain)
                .and_then(|c| c.report.key_of(r.seq))
                .map(|k| (r.id.clone(), k.key.clone()))
        })
        .collect();
    let mut records: Vec<Record> = stored
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| !verifier::is_ledger_note(&r.job))
        .collect();
    for r in &mut records {
        let policy = match (r.host == host)
            .then(|| cfg.jobs.iter().find(|j| j.name == r.job))
            .flatten()
        {
            Some(j) => Policy::of_job(j, cfg.agent.timezone),
            None => Policy::fixed(DEFAULT_POLICY),
        };
        r.job = format!("{}@{}", r.job, r.host);
        let name = r.system.clone().unwrap_or_else(|| r.job.clone());
        report::add_job(&mut systems, name, &r.job, policy);
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    let mut a = report::assess(&records, &systems, period, problem, now);
    report::attach_signing(&mut a, &records, &|r| keys_by_id.get(&r.id).cloned());
    Ok(a)
}
