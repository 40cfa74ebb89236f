//! The CSV report, one row per system.

use std::fmt::Write;

use super::{Assessment, Lang};

/// CSV, one row per system.
pub fn csv(a: &Assessment) -> String {
    let q = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let mut s = String::from(
        "system,owner,criticality,jobs,score,drills,real_restores,passes,failures,errors,skipped,last_pass,longest_gap_days,policy_days,rto_met,rto_total,rpo_met,rpo_total,shortfalls\n",
    );
    for r in &a.systems {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            q(&r.name),
            q(r.owner.as_deref().unwrap_or("")),
            q(r.criticality.as_deref().unwrap_or("")),
            q(&r.jobs.join(" ")),
            r.score,
            r.drills,
            r.real_restores,
            r.passes,
            r.failures,
            r.errors,
            r.skipped,
            q(&r.last_pass
                .as_ref()
                .map(|(_, t)| t.to_rfc3339())
                .unwrap_or_default()),
            r.longest_gap_days,
            r.policy_days,
            r.rto.0,
            r.rto.1,
            r.rpo.0,
            r.rpo.1,
            q(&r.shortfalls
                .iter()
                .map(|f| f.text(Lang::En))
                .collect::<Vec<_>>()
                .join("; "))
        );
    }
    s
}
