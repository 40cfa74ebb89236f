//! What people read: drill summaries, record details, byte and time formats.

use std::fmt::Write;

use verifier::{Findings, Record, Verdict, humanize};

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
        .map(|x| format!("  ({x})"))
        .unwrap_or_default();
    let _ = writeln!(s, "{}: {}{system}", r.job, verdict(r.result));
    for reason in &r.reasons {
        let _ = writeln!(s, "  reason   {reason}");
    }
    let b = &r.backup;
    let mut line = format!(
        "  backup   {} {}",
        b.kind,
        b.id.as_deref().unwrap_or("(not found)")
    );
    if let Some(t) = b.created_at {
        let _ = write!(line, ", taken {}", t.format("%Y-%m-%d %H:%M:%S %:z"));
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
    let _ = writeln!(
        s,
        "  restore  {} files, {} in {}",
        r.restore.files,
        bytes(r.restore.bytes),
        seconds(r.restore.duration_seconds)
    );
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
    let mut line = format!(
        "  verify   {} files compared against {}, {} content-checked ({}, {}{seed}) in {}",
        v.files_compared,
        v.against,
        v.content_checked,
        bytes(v.bytes_checked),
        v.content,
        seconds(v.duration_seconds)
    );
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
            let _ = writeln!(s, "  {}", i.path);
        } else {
            let _ = writeln!(s, "  {}  ({})", i.path, i.what);
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
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  host     {} (restore-verifier {})",
        r.host, r.agent_version
    );
    if let Some(sha) = &r.backup.sha256 {
        let _ = writeln!(s, "  backup sha256 {sha}");
    }
    if let Some(m) = &r.verify.manifest_sha256 {
        let _ = writeln!(
            s,
            "  manifest sha256 {m} ({})",
            r.artifacts.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        s,
        "  sandbox  {} (removed: {})",
        r.sandbox.path, r.sandbox.removed
    );
    let _ = writeln!(s, "  hash     {}\n  prev     {}", r.hash, r.prev_hash);
    let v = &r.verify;
    findings(&mut s, "missing", &v.missing);
    findings(&mut s, "mismatched", &v.mismatched);
    findings(&mut s, "unreadable", &v.unreadable);
    findings(&mut s, "source unreadable", &v.source_unreadable);
    findings(&mut s, "extra", &v.extra);
    findings(&mut s, "changed since backup", &v.changed_since_backup);
    findings(&mut s, "new since backup", &v.new_since_backup);
    for e in &v.expect {
        let _ = writeln!(s, "canary {}: {:?}", e.path, e.status);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_readable() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
