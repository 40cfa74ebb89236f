//! The Markdown report, for people.

use std::fmt::Write;

use super::words::{CROSSWALK, words};
use super::{Assessment, Lang, rotation_text, signing_text};
use crate::escape::escape;

/// Markdown, for people.
pub fn markdown(a: &Assessment, lang: Lang) -> String {
    let w = words(lang);
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", w.title);
    let _ = writeln!(
        s,
        "{}: {} – {}\n",
        w.period,
        a.period.since.format("%Y-%m-%d"),
        a.period.until.format("%Y-%m-%d")
    );
    let _ = writeln!(s, "**{}: {}**\n", w.overall, a.overall);
    match &a.ledger_problem {
        None => {
            let _ = writeln!(s, "{}\n", w.ledger_ok);
        }
        Some(p) => {
            let _ = writeln!(s, "**{}**: {p}\n", w.ledger_bad);
        }
    }
    for r in &a.systems {
        let _ = writeln!(s, "## {}: {}\n", w.system, r.name);
        let _ = writeln!(
            s,
            "{}: **{}**{}\n",
            w.score,
            r.score,
            if r.covered {
                String::new()
            } else {
                format!(" ({})", w.uncovered)
            }
        );
        let _ = writeln!(s, "| | |\n|---|---|");
        for (k, v) in w.facts.iter().zip(r.facts()) {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let _ = writeln!(
            s,
            "\n**{}**: {}",
            w.shortfalls,
            if r.shortfalls.is_empty() {
                w.none.to_string()
            } else {
                String::new()
            }
        );
        for f in &r.shortfalls {
            let _ = writeln!(s, "- {}", f.text(lang));
        }
        let _ = writeln!(s, "\n**{}**: {}", w.coverage, r.coverage_text());
        let _ = writeln!(s, "\n**{}**: {}", w.signing, signing_text(&r.signing, lang));
        for c in &r.rotation {
            let _ = writeln!(s, "\n**{}**: {}", w.rotation, rotation_text(c, lang));
        }
        if !r.failure_lines.is_empty() {
            let _ = writeln!(s, "\n**{}**", w.failures);
            for f in &r.failure_lines {
                let closed = f
                    .closed_by
                    .as_ref()
                    .map(|c| format!("{} {c}", w.closed_by))
                    .unwrap_or_else(|| w.open.to_string());
                let _ = writeln!(
                    s,
                    "- {} {} {}: {} — {closed}",
                    f.at.format("%Y-%m-%d"),
                    f.result,
                    f.id,
                    escape(&f.reason)
                );
            }
        }
        if !r.changes.is_empty() {
            let _ = writeln!(s, "\n**{}**", w.changes);
            for c in &r.changes {
                let _ = writeln!(
                    s,
                    "- {} {} {}: {}",
                    c.at.format("%Y-%m-%d"),
                    c.result,
                    c.id,
                    escape(c.reason.as_deref().unwrap_or("-"))
                );
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## {}\n\n{}\n", w.crosswalk, w.crosswalk_text);
    for (code, en, ja) in CROSSWALK {
        let _ = writeln!(s, "- {code}: {}", if lang == Lang::Ja { ja } else { en });
    }
    s
}
