//! `evidence list|show|verify`: reading the ledger back.

use anyhow::Context;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use verifier::{Ledger, Record};

use crate::exit::{CliError, Outcome};
use crate::output;

/// Reads "2026-11-01" (a day in `tz`; `end` means the end of that day) or RFC 3339.
pub fn parse_date(
    s: &str,
    tz: chrono_tz::Tz,
    end: bool,
) -> Result<DateTime<FixedOffset>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        CliError::Usage(format!(
            "invalid date {s:?}; use YYYY-MM-DD or RFC 3339 (2026-11-01T00:00:00+09:00)"
        ))
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    let t = tz
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .ok_or_else(|| CliError::Usage(format!("{s} does not exist in {tz}")))?;
    Ok(t.fixed_offset())
}

pub struct Filter {
    pub job: Option<String>,
    pub since: Option<DateTime<FixedOffset>>,
    /// Exclusive.
    pub until: Option<DateTime<FixedOffset>>,
}

impl Filter {
    pub fn keeps(&self, r: &Record) -> bool {
        self.job.as_ref().is_none_or(|j| &r.job == j)
            && self.since.is_none_or(|s| r.started_at >= s)
            && self.until.is_none_or(|u| r.started_at < u)
    }
}

/// Under a listing: for each listed job that rotates its content checks, whether
/// its last N drills (up to the listing's end) content-verified every file.
fn rotation_lines(
    ledger: &Ledger,
    filter: &Filter,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let upto: Vec<Record> = ledger
        .records()?
        .filter_map(Result::ok)
        .filter(|r| filter.until.is_none_or(|u| r.started_at < u))
        .collect();
    let mut jobs: Vec<&str> = upto
        .iter()
        .filter(|r| filter.keeps(r) && r.verify.rotate.is_some())
        .map(|r| r.job.as_str())
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    for job in jobs {
        if let Some(c) = verifier::rotation_coverage(job, &upto) {
            writeln!(
                out,
                "rotation: {}",
                crate::report::rotation_text(&c, crate::report::Lang::En)
            )
            .ok();
        }
    }
    Ok(())
}

pub fn list(ledger: &Ledger, filter: &Filter, json: bool) -> Result<Outcome, CliError> {
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if !json {
        writeln!(
            out,
            "{:>5}  {:<25}  {:<16}  {:<6}  {:<8}  {:<36}  REASON",
            "SEQ", "STARTED", "JOB", "RESULT", "TRIGGER", "ID"
        )
        .ok();
    }
    let mut n = 0;
    for r in ledger.records()? {
        let r = r.map_err(anyhow::Error::from)?;
        if !filter.keeps(&r) {
            continue;
        }
        n += 1;
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&r).map_err(anyhow::Error::from)?
            )
            .ok();
        } else {
            let trigger = serde_json::to_value(r.trigger.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            writeln!(
                out,
                "{:>5}  {:<25}  {:<16}  {:<6}  {:<8}  {:<36}  {}",
                r.seq,
                r.started_at.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
                output::escape(&r.job),
                r.result.as_str(),
                trigger,
                r.id,
                output::escape(r.reasons.first().map(String::as_str).unwrap_or(""))
            )
            .ok();
        }
    }
    if n == 0 && !json {
        eprintln!("no records in {} match", ledger.path().display());
    }
    if !json && n > 0 {
        rotation_lines(ledger, filter, &mut out)?;
    }
    Ok(Outcome::Success)
}

impl From<verifier::LedgerError> for CliError {
    fn from(e: verifier::LedgerError) -> Self {
        CliError::Other(e.into())
    }
}

/// Finds a record by id, unique id prefix, or seq number.
pub fn find(ledger: &Ledger, key: &str) -> Result<Record, CliError> {
    let seq: Option<u64> = key.parse().ok();
    let mut found = Vec::new();
    for r in ledger.records()? {
        let r = r.map_err(anyhow::Error::from)?;
        if r.id == key || Some(r.seq) == seq {
            return Ok(r);
        }
        if key.len() >= 4 && r.id.starts_with(key) {
            found.push(r);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CliError::Usage(format!(
            "no record {key:?} in {}; `restore-verifier evidence list` shows the ids",
            ledger.path().display()
        ))),
        n => Err(CliError::Usage(format!(
            "{key:?} matches {n} records; give more of the id"
        ))),
    }
}

pub fn show(ledger: &Ledger, key: &str, json: bool) -> Result<Outcome, CliError> {
    let r = find(ledger, key)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("record to JSON")?
        );
    } else {
        print!("{}", output::details(&r));
    }
    Ok(Outcome::Success)
}

/// Checks the chain; the text for people and the outcome.
pub fn verify_text(
    ledger: &Ledger,
    keys: &[verifier::evidence::signing::EvidencePublicKey],
) -> Result<(String, Outcome), CliError> {
    use std::fmt::Write;
    let rep = ledger.verify_with(keys)?;
    let mut s = String::new();
    let _ = writeln!(s, "ledger    {}", ledger.path().display());
    let _ = writeln!(s, "records   {}", rep.records);
    for (name, r) in [("first", &rep.first), ("last", &rep.last)] {
        if let Some(r) = r {
            let _ = writeln!(
                s,
                "{name:<9} seq {} id {} {} {} {}",
                r.seq,
                r.id,
                r.started_at.to_rfc3339(),
                output::escape(&r.job),
                r.result
            );
        }
    }
    let _ = writeln!(s, "head hash {}", rep.head_hash);
    for line in range_lines(&rep, !keys.is_empty()) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "signed    {} of {} records carry a signature that verifies",
        rep.signed, rep.records
    );
    for (seq, what) in &rep.repairs {
        let _ = writeln!(s, "repaired  seq {seq}: {what}");
    }
    for (seq, what) in &rep.clock_notes {
        let _ = writeln!(s, "clock     seq {seq}: {what}");
    }
    let outcome = match rep.problem {
        None if !keys.is_empty() && rep.records > 0 && rep.signed == 0 => {
            let _ = writeln!(
                s,
                "UNSIGNED: the hash chain holds for all {} records, but none is signed, so the public key verified nothing",
                rep.records
            );
            Outcome::Failed
        }
        None => {
            let signed = rep
                .ranges
                .iter()
                .find(|r| r.signed)
                .map(|r| format!("; signed from seq {}", r.from))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "OK: the hash chain holds for all {} records{signed}",
                rep.records
            );
            Outcome::Success
        }
        Some(p) => {
            let _ = writeln!(s, "BROKEN at line {}: {}", p.line, p.what);
            let _ = writeln!(
                s,
                "records before line {} verify; the ledger from there on cannot be trusted",
                p.line
            );
            Outcome::Failed
        }
    };
    Ok((s, outcome))
}

/// One line per run of the ledger: unsigned, or signed by which key, and
/// whether a given public key vouches for it.
pub fn range_lines(rep: &verifier::ChainReport, keys_given: bool) -> Vec<String> {
    rep.ranges
        .iter()
        .map(|r| {
            let seqs = if r.from == r.to {
                format!("seq {}", r.from)
            } else {
                format!("seq {}-{}", r.from, r.to)
            };
            if !r.signed {
                return format!("unsigned  {seqs} (before signing began)");
            }
            let key = r.key.as_deref().unwrap_or("(not named in the ledger)");
            let how = match r.key_record {
                Some(k) => format!("key record seq {k}"),
                None => "signed from the start, no key record".into(),
            };
            let trust = if r.trusted {
                "a given public key vouches for it"
            } else if keys_given {
                "no given public key vouches for it"
            } else {
                "give --public-key to check whose key it is"
            };
            format!("signed    {seqs} by key {key} ({how}; {trust})")
        })
        .collect()
}

/// Checks every chain in the shared evidence store; the text and the outcome.
pub fn verify_store_text(
    store: &crate::config::Store,
    keys: &[verifier::evidence::signing::EvidencePublicKey],
) -> Result<(String, Outcome), CliError> {
    use std::fmt::Write;
    let chains =
        crate::store::verify(store, keys).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let mut s = String::new();
    if let crate::config::Store::Postgres { conninfo, .. } = store {
        let _ = writeln!(s, "store     {}", crate::store::redacted(conninfo));
    }
    let total: u64 = chains.iter().map(|c| c.report.records).sum();
    let _ = writeln!(s, "chains    {} ({total} records)", chains.len());
    let mut broken = 0;
    for c in &chains {
        let short = &c.chain[..c.chain.len().min(12)];
        let signed = if !keys.is_empty() {
            format!(", {} signed", c.report.signed)
        } else {
            String::new()
        };
        let unsigned = !keys.is_empty() && c.report.records > 0 && c.report.signed == 0;
        match &c.report.problem {
            None if unsigned => {
                broken += 1;
                let _ = writeln!(
                    s,
                    "chain     {short} host {}: UNSIGNED: {} records and none is signed, so no public key verified them",
                    c.host, c.report.records
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "chain     {short} host {}: {} records{signed}, head {}: OK",
                    c.host, c.report.records, c.report.head_hash
                );
                for line in range_lines(&c.report, !keys.is_empty()) {
                    let _ = writeln!(s, "          {line}");
                }
            }
            Some(p) => {
                broken += 1;
                let _ = writeln!(
                    s,
                    "chain     {short} host {}: BROKEN at seq {}: {}",
                    c.host, p.line, p.what
                );
            }
        }
    }
    let outcome = if broken == 0 {
        let _ = writeln!(s, "OK: every chain in the store holds");
        Outcome::Success
    } else {
        let _ = writeln!(
            s,
            "BROKEN: {broken} of {} chains do not verify",
            chains.len()
        );
        Outcome::Failed
    };
    Ok((s, outcome))
}

/// Verifies a ledger file and prints what it found. With several keys (one
/// per host of a shared store), the ledger's signed records must be signed
/// by one of them.
pub fn verify(
    ledger: &Ledger,
    keys: &[verifier::evidence::signing::EvidencePublicKey],
) -> Result<Outcome, CliError> {
    let (text, outcome) = verify_text(ledger, keys)?;
    print!("{text}");
    Ok(outcome)
}
