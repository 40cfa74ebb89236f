//! What people read: drill summaries, record details, byte and time formats.

use std::fmt::Write;

use verifier::{Findings, Record, Verdict, humanize};

pub use restore_verifier::escape::escape;

pub fn bytes(n: u64) -> String {
    verifier::human_bytes(n)
}

pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        humanize(std::time::Duration::from_secs_f64(s))
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Skipped => "SKIPPED",
        Verdict::Key => "KEY",
    }
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not checked",
    }
}

/// The few lines a sysadmin reads after a drill.
pub fn summary(r: &Record) -> String {
    let mut s = String::new();
    let system = r
        .system
        .as_deref()
        .map(|x| format!("  ({})", escape(x)))
        .unwrap_or_default();
    let _ = writeln!(s, "{}: {}{system}", escape(&r.job), verdict(r.result));
    for reason in &r.reasons {
        let _ = writeln!(s, "  reason   {}", escape(reason));
    }
    // The ledger's own records (a repair, a key record) restored nothing.
    if verifier::is_ledger_note(&r.job) {
        if let Some(k) = &r.key {
            let _ = writeln!(s, "  key      {}", k.fingerprint);
            let _ = writeln!(
                s,
                "  previous {}",
                k.previous
                    .as_deref()
                    .unwrap_or("none (signing begins here)")
            );
        }
        return s;
    }
    let b = &r.backup;
    let mut line = format!(
        "  backup   {} {}",
        b.kind,
        b.id.as_deref().map(escape).unwrap_or("(not found)".into())
    );
    match b.created_at {
        Some(t) => {
            let _ = write!(line, ", taken {}", t.format("%Y-%m-%d %H:%M:%S %:z"));
        }
        None if b.id.is_some() => line.push_str(", backup time unknown"),
        None => {}
    }
    if let Some(a) = b.age_seconds {
        let _ = write!(
            line,
            ", age {}",
            humanize(std::time::Duration::from_secs(a.max(0) as u64))
        );
    }
    if let Some(rpo) = r.objectives.rpo_seconds {
        let _ = write!(
            line,
            " (RPO {}: {})",
            humanize(std::time::Duration::from_secs(rpo)),
            met(r.objectives.rpo_met)
        );
    }
    let _ = writeln!(s, "{line}");
    // Where in the restore the compared data was, when not at its top.
    let root = r
        .restore
        .root
        .as_deref()
        .map(|p| format!(", compared from {}", escape(p)))
        .unwrap_or_default();
    // A database restores tables and rows, not files and bytes.
    let database = b.kind == "postgres";
    let _ = if database {
        writeln!(
            s,
            "  restore  {} tables, {} rows in {}",
            r.restore.files,
            r.restore.bytes,
            seconds(r.restore.duration_seconds)
        )
    } else {
        writeln!(
            s,
            "  restore  {} files, {} in {}{root}",
            r.restore.files,
            bytes(r.restore.bytes),
            seconds(r.restore.duration_seconds)
        )
    };
    let v = &r.verify;
    let slice = v
        .rotate
        .as_ref()
        .map(|s| format!(" slice {} of 0-{}", s.slice, s.over.saturating_sub(1)))
        .unwrap_or_default();
    let seed = v
        .sample_seed
        .map(|x| format!("{slice}, seed {x}"))
        .unwrap_or(slice);
    let mut line = if database {
        format!(
            "  verify   {} row counts compared against {} in {}",
            v.files_compared,
            v.against,
            seconds(v.duration_seconds)
        )
    } else {
        format!(
            "  verify   {} files compared against {}, {} content-checked ({}, {}{seed}) in {}",
            v.files_compared,
            v.against,
            v.content_checked,
            bytes(v.bytes_checked),
            v.content,
            seconds(v.duration_seconds)
        )
    };
    if let Some(rto) = r.objectives.rto_seconds {
        let _ = write!(
            line,
            " (RTO {}: {})",
            humanize(std::time::Duration::from_secs(rto)),
            met(r.objectives.rto_met)
        );
    }
    let _ = writeln!(s, "{line}");
    for (name, f) in [
        ("changed since backup", &v.changed_since_backup),
        ("new since backup", &v.new_since_backup),
        ("extra in restore", &v.extra),
    ] {
        if f.count > 0 {
            let _ = writeln!(s, "  note     {} {name} (not failures)", f.count);
        }
    }
    let _ = writeln!(s, "  record   seq {} id {}", r.seq, r.id);
    s
}

fn findings(s: &mut String, title: &str, f: &Findings) {
    if f.count == 0 {
        return;
    }
    let _ = writeln!(s, "{title}: {}", f.count);
    for i in &f.items {
        if i.what.is_empty() {
            let _ = writeln!(s, "  {}", escape(&i.path));
        } else {
            let _ = writeln!(s, "  {}  ({})", escape(&i.path), escape(&i.what));
        }
    }
    if f.count as usize > f.items.len() {
        let _ = writeln!(s, "  … and {} more", f.count as usize - f.items.len());
    }
}

/// Everything in a record, for `evidence show`.
pub fn details(r: &Record) -> String {
    let mut s = summary(r);
    let _ = writeln!(s, "  started  {}", r.started_at.to_rfc3339());
    let _ = writeln!(s, "  finished {}", r.finished_at.to_rfc3339());
    let _ = writeln!(
        s,
        "  trigger  {}{}",
        serde_json::to_value(r.trigger.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        r.trigger
            .reason
            .as_deref()
            .map(|x| format!(": {}", escape(x)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  host     {} (restore-verifier {})",
        escape(&r.host),
        r.agent_version
    );
    if let Some(sha) = &r.backup.sha256 {
        let _ = writeln!(s, "  backup sha256 {sha}");
    }
    if let Some(m) = &r.verify.manifest_sha256 {
        let _ = writeln!(
            s,
            "  manifest sha256 {m} ({})",
            escape(r.artifacts.as_deref().unwrap_or("-"))
        );
    }
    if !verifier::is_ledger_note(&r.job) {
        let _ = writeln!(
            s,
            "  sandbox  {} (removed: {})",
            escape(&r.sandbox.path),
            r.sandbox.removed
        );
    }
    let _ = writeln!(s, "  hash     {}\n  prev     {}", r.hash, r.prev_hash);
    // What ran, as the operator guide promises: the tool, every step and
    // check with its exit code, time and the end of its output.
    if let Some(t) = &r.restore.tool {
        let _ = writeln!(s, "  tool     {}", escape(t));
    }
    for n in &r.restore.notes {
        let _ = writeln!(s, "  note     {}", escape(n));
    }
    for (i, st) in r.restore.steps.iter().enumerate() {
        step(
            &mut s,
            &format!("step {}", i + 1),
            &st.argv,
            st.exit_code,
            st.duration_seconds,
            &st.output_tail,
        );
    }
    for (i, c) in r.checks.iter().enumerate() {
        let name = format!(
            "check {} {}",
            i + 1,
            if c.passed { "passed" } else { "FAILED" }
        );
        step(
            &mut s,
            &name,
            &c.argv,
            c.exit_code,
            c.duration_seconds,
            &c.output_tail,
        );
    }
    let v = &r.verify;
    findings(&mut s, "missing", &v.missing);
    findings(&mut s, "mismatched", &v.mismatched);
    findings(&mut s, "unreadable", &v.unreadable);
    findings(&mut s, "source unreadable", &v.source_unreadable);
    findings(&mut s, "extra", &v.extra);
    findings(&mut s, "changed since backup", &v.changed_since_backup);
    findings(&mut s, "new since backup", &v.new_since_backup);
    findings(&mut s, "skipped special files", &v.skipped_special);
    if !v.metadata.is_empty() {
        let _ = writeln!(s, "metadata compared: {}", v.metadata.join(", "));
    }
    for n in &v.metadata_not_compared {
        let _ = writeln!(s, "metadata not compared: {}", escape(n));
    }
    for e in &v.expect {
        let _ = writeln!(s, "canary {}: {:?}", escape(&e.path), e.status);
    }
    s
}

/// One command of a drill: its argv (escaped, quoted where it has spaces),
/// exit code and time, then the last lines of its output, indented.
fn step(s: &mut String, name: &str, argv: &[String], exit: Option<i32>, secs: f64, tail: &str) {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            let a = escape(a);
            if a.is_empty() || a.contains(' ') {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect();
    let exit = exit.map_or("killed".to_string(), |c| format!("exit {c}"));
    let _ = writeln!(
        s,
        "  {name}: {} ({exit}, {})",
        argv.join(" "),
        seconds(secs)
    );
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    for l in &lines[lines.len().saturating_sub(5)..] {
        let _ = writeln!(s, "      | {}", escape(l));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_readable() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn escaped_text_stays_on_one_line_and_names_stay_apart() {
        use super::escape;
        assert!(matches!(
            escape("docs/ä b.txt"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("x\n  verify   0 problems: PASS"),
            r"x\n  verify   0 problems: PASS"
        );
        assert_eq!(escape("a\tb\r\x1b[31m\x7f\0"), r"a\tb\r\x1b[31m\x7f\x00");
        assert_eq!(escape(r"a\nb"), r"a\\nb", "a backslash is not a newline");
        assert_eq!(
            escape("\u{85}\u{202e}\u{2028}"),
            r"\u{0085}\u{202e}\u{2028}"
        );
        // Invalid UTF-8 as a record holds it: NUL and two hex digits, 80-ff.
        assert_eq!(escape("a\0ffb\0fe"), r"a\xffb\xfe");
        // A NUL before anything else is a NUL.
        assert_eq!(escape("\x001b\x00FF\x00f"), r"\x001b\x00FF\x00f");
        let names = [
            "a\0ff",
            r"a\xff",
            "a\u{fffd}",
            "a\\\0ff",
            "a\u{85}",
            "a\0850",
        ];
        let shown: std::collections::BTreeSet<_> = names.iter().map(|n| escape(n)).collect();
        assert_eq!(shown.len(), names.len(), "{shown:?}");
    }
}
