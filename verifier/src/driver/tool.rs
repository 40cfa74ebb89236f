//! Running restore tools as steps: the record keeps each invocation, failures
//! become `DriverError::Tool` with the line of the tool's output that names
//! the cause (or its last words).

pub mod cause;

use std::path::{Path, PathBuf};

use super::DriverError;
use crate::drill::deadline::Deadline;
use crate::drill::process::{StepError, StepOptions, StepOutcome, run_read_only, run_step};
use crate::evidence::record::StepRecord;

/// What the tool said: its stderr, or its stdout when stderr is empty.
fn said(out: &StepOutcome) -> &str {
    if out.stderr_tail.trim().is_empty() {
        &out.stdout_tail
    } else {
        &out.stderr_tail
    }
}

pub fn record(argv: &[String], out: &StepOutcome) -> StepRecord {
    let tail = said(out);
    StepRecord {
        argv: argv.to_vec(),
        exit_code: out.exit_code,
        duration_seconds: (out.duration.as_secs_f64() * 1000.0).round() / 1000.0,
        output_tail: tail
            .chars()
            .rev()
            .take(1000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
    }
}

/// Runs one step; appends it to `steps`; a non-zero exit is `Tool` with the
/// reason `explain` gives for the tool's output, else what the tool's known
/// patterns find ([`cause::reason`]; the tool is known by its program's name:
/// restic, borg, pg_restore, or GNU tar as a runbook step), else its last
/// words.
pub fn step(
    name: &str,
    argv: Vec<String>,
    opts: &StepOptions,
    deadline: &Deadline,
    steps: &mut Vec<StepRecord>,
    explain: impl Fn(&StepOutcome) -> Option<String>,
) -> Result<StepOutcome, DriverError> {
    step_on(name, argv, opts, &[], deadline, steps, explain)
}

/// [`step`] where the tool cannot write to `read_only` (the backup's
/// directories, see [`run_read_only`]). When that cannot be arranged the
/// tool does not run, and the drill errs: `Setup`.
pub fn step_on(
    name: &str,
    argv: Vec<String>,
    opts: &StepOptions,
    read_only: &[PathBuf],
    deadline: &Deadline,
    steps: &mut Vec<StepRecord>,
    explain: impl Fn(&StepOutcome) -> Option<String>,
) -> Result<StepOutcome, DriverError> {
    let ran = run_read_only(&argv, opts, read_only, deadline).map_err(|e| {
        DriverError::Setup(format!(
            "{name} did not run: {e}; a drill never lets a tool write to a backup, so it runs none on a repository it cannot mount read-only: run the agent as root (or with CAP_SYS_ADMIN), or allow it user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)"
        ))
    })?;
    match ran {
        Ok(out) => {
            steps.push(record(&argv, &out));
            if out.success() {
                Ok(out)
            } else {
                Err(DriverError::Tool {
                    step: name.to_string(),
                    status: out.status_text(),
                    reason: explain(&out)
                        .or_else(|| {
                            cause::Tool::of(&argv).and_then(|t| {
                                let text = if out.stderr_tail.trim().is_empty() {
                                    out.stdout_tail.clone()
                                } else {
                                    out.stderr_seen()
                                };
                                cause::reason(t, &text)
                            })
                        })
                        .unwrap_or_else(|| out.last_words()),
                })
            }
        }
        Err(StepError::Spawn { program, source }) => Err(DriverError::NoTool(format!(
            "cannot run {program}: {source}; install it (scripts/test.sh lists the Debian packages)"
        ))),
        Err(StepError::Stopped { stop, outcome }) => {
            steps.push(record(&argv, &outcome));
            Err(DriverError::StepStopped {
                step: name.to_string(),
                stop,
            })
        }
    }
}

/// "restic 0.14.0 compiled …" → "restic 0.14.0".
pub fn version(argv: &[&str], cwd: &Path, deadline: &Deadline) -> Option<String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let mut opts = StepOptions::in_dir(cwd);
    opts.keep_stdout = 4096;
    let out = run_step(
        &argv,
        &opts,
        &Deadline::after(std::time::Duration::from_secs(20)).sooner(deadline),
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The name and the version: up to the first word that starts with a
    // digit ("restic 0.14.0 compiled …", "pg_restore (PostgreSQL) 15.18").
    let mut words = Vec::new();
    for w in text.lines().next()?.split_whitespace().take(4) {
        words.push(w);
        if w.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
    }
    (!words.is_empty()).then(|| words.join(" "))
}

/// Files and bytes under `root`, for tools that do not say.
pub fn tree_stats(root: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_dir() {
            files += 1;
            if e.file_type().is_file() {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (files, bytes)
}
