//! What `config check` prints when the config is good: the effective
//! settings in words, and for each job when it goes overdue (from the one
//! "due by" rule in `due`).

use std::time::Duration;

use crate::config::{Config, DEFAULT_TIMEOUT};

/// The effective settings of `cfg`, in words; next runs are counted from `now`.
pub fn config(cfg: &Config, now: chrono::DateTime<chrono::Utc>) -> String {
    use std::fmt::Write;
    let a = &cfg.agent;
    let h = |d: Option<Duration>| d.map(verifier::humanize).unwrap_or_else(|| "-".into());
    let mut s = format!("{}: OK, {} job(s)\n", cfg.path.display(), cfg.jobs.len());
    let _ = writeln!(
        s,
        "  state_dir {}  sandbox_dir {}  timezone {}",
        a.state_dir.display(),
        a.sandbox_dir.display(),
        a.timezone
    );
    let _ = writeln!(
        s,
        "  max_concurrent_drills {}  listen {}  api_token_file {}  signing_key_file {}",
        a.max_concurrent_drills,
        a.listen
            .map(|l| l.to_string())
            .unwrap_or_else(|| "off".into()),
        a.api_token_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
        a.signing_key_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
    );
    for j in &cfg.jobs {
        let what = j.backup.describe();
        let when = match &j.schedule {
            Some((expr, sch)) => {
                let next = sch
                    .after(&now.with_timezone(&a.timezone))
                    .next()
                    .map(|t| t.format("%Y-%m-%d %H:%M %:z").to_string())
                    .unwrap_or_else(|| "never".into());
                format!("schedule {expr:?} (next {next})")
            }
            None => "manual/trigger only".into(),
        };
        let _ = writeln!(
            s,
            "  job {}: {what}; {when}; timeout {}{}, rto {}, rpo {}, overdue after {}, jitter {}, catch_up {}",
            j.name,
            verifier::humanize(j.timeout),
            if j.timeout == DEFAULT_TIMEOUT {
                " (default)"
            } else {
                ""
            },
            h(j.rto),
            h(j.rpo),
            // When it goes overdue, and why.
            crate::due::describe(j),
            h(j.jitter),
            j.catch_up
        );
        if !j.isolation.is_none() {
            let _ = writeln!(
                s,
                "    runbook steps and checks run {}",
                j.isolation.describe()
            );
        }
    }
    s
}
