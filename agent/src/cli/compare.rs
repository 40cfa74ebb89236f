//! `compare`: two trees compared the way a drill compares them, with no
//! restore; and the text both it and `manifest check` print.

use std::path::{Path, PathBuf};

use verifier::CompareOptions;

use crate::exit::{CliError, Outcome};
use crate::{drills, output, progress};

pub fn run(
    source: &Path,
    restored: &Path,
    json: bool,
    manifest_out: Option<PathBuf>,
    threads: usize,
    quiet: bool,
) -> Result<Outcome, CliError> {
    let bar = progress::Bar::start("compare", quiet);
    let opts = CompareOptions {
        manifest_out,
        threads,
        progress: progress::counters(&bar),
        deadline: verifier::Deadline::none().with_cancel(Some(drills::interrupt_flag())),
        ..CompareOptions::default()
    };
    if let Some(p) = &opts.progress {
        p.set_phase(verifier::Phase::Verifying);
    }
    let compared = verifier::compare(Some(source), restored, &opts);
    drop(bar);
    let report = match compared {
        Ok(r) => r,
        Err(e @ verifier::CompareError::Stopped(_)) => {
            eprintln!("restore-verifier: compare {e}");
            return Ok(Outcome::Interrupted);
        }
        Err(e) => return Err(CliError::Usage(e.to_string())),
    };
    print(&report, json)
}

/// Prints a compare report (`compare`, `manifest check`); differences exit 1.
pub fn print(report: &verifier::CompareReport, json: bool) -> Result<Outcome, CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{}", text(report));
    }
    Ok(if report.has_differences() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

fn text(r: &verifier::CompareReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} files and {} directories compared, {} files content-checked ({})",
        r.files_compared,
        r.dirs_compared,
        r.content_checked,
        output::bytes(r.bytes_checked)
    );
    for (name, f) in [
        ("missing", &r.missing),
        ("mismatched", &r.mismatched),
        ("extra", &r.extra),
        ("unreadable in restored tree", &r.unreadable),
        ("unreadable in source", &r.source_unreadable),
    ] {
        if f.count > 0 {
            let _ = writeln!(s, "{name}: {}", f.count);
            for i in &f.items {
                let _ = writeln!(
                    s,
                    "  {}{}",
                    output::escape(&i.path),
                    if i.what.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", output::escape(&i.what))
                    }
                );
            }
        }
    }
    if !r.has_differences() {
        let _ = writeln!(s, "no differences");
    }
    s
}
