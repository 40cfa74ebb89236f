//! Post-restore checks: commands run against the restored data, for any backup
//! type (`sqlite3 {sandbox}/app.db "PRAGMA integrity_check"` expecting `ok`).

use std::path::Path;
use std::time::Duration;

use crate::drill::deadline::{Deadline, Stop};
use crate::drill::process::{Isolation, StepError, StepOptions, run_step};
use crate::evidence::record::CheckRecord;

/// What a check's standard output must be.
#[derive(Debug, Clone)]
pub enum ExpectOutput {
    /// Equal, ignoring trailing whitespace.
    Exact(String),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// argv; `{sandbox}` is the restored data's root.
    pub run: Vec<String>,
    pub expect_exit: i32,
    pub expect_stdout: Option<ExpectOutput>,
    pub timeout: Option<Duration>,
}

/// Runs one check in `root`; the record says whether it passed and why not.
pub fn run_check(
    n: usize,
    c: &CheckSpec,
    root: &Path,
    deadline: &Deadline,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    isolation: &Isolation,
) -> (CheckRecord, Option<Stop>) {
    let argv: Vec<String> = c
        .run
        .iter()
        .map(|a| a.replace("{sandbox}", &root.display().to_string()))
        .collect();
    let mut opts = StepOptions::in_dir(root);
    opts.keep_stdout = 1 << 20;
    opts.env = env.to_vec();
    isolation.apply(&mut opts);
    opts.drop_caps = true;
    let limit = match c.timeout {
        Some(t) => Deadline::after(t).sooner(deadline),
        None => deadline.clone(),
    };
    let name = format!(
        "check {n} ({})",
        c.run.first().map(String::as_str).unwrap_or("")
    );
    let mut rec = CheckRecord {
        argv: argv.clone(),
        ..CheckRecord::default()
    };
    match run_step(&argv, &opts, &limit) {
        Err(StepError::Spawn { program, source }) => {
            rec.reason = Some(format!("{name} could not start {program}: {source}"));
            (rec, None)
        }
        Err(StepError::Stopped { stop, outcome }) => {
            rec.duration_seconds = outcome.duration.as_secs_f64();
            rec.output_tail = outcome.last_words();
            rec.reason = Some(format!("{name} {stop}; its processes were killed"));
            (rec, Some(stop))
        }
        Ok(out) => {
            rec.exit_code = out.exit_code;
            rec.duration_seconds = (out.duration.as_secs_f64() * 1000.0).round() / 1000.0;
            rec.output_tail = out.last_words();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let got = stdout.trim_end();
            rec.reason = if out.exit_code != Some(c.expect_exit) {
                Some(format!(
                    "{name} failed: {}, expected exit code {} ({})",
                    out.status_text(),
                    c.expect_exit,
                    out.last_words()
                ))
            } else {
                match &c.expect_stdout {
                    Some(ExpectOutput::Exact(want)) if got != want.trim_end() => Some(format!(
                        "{name} failed: expected output {want:?}, got {:?}",
                        short(got)
                    )),
                    Some(ExpectOutput::Regex(re)) if !re.is_match(&stdout) => Some(format!(
                        "{name} failed: output {:?} does not match /{}/",
                        short(got),
                        re.as_str()
                    )),
                    _ => None,
                }
            };
            rec.passed = rec.reason.is_none();
            (rec, None)
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}
