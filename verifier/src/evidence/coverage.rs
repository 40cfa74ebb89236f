//! What rotating drills add up to: with `content = "rotate"` and
//! `rotate_over = N`, each drill content-checks one of N disjoint slices of the
//! files, so N consecutive passing drills have content-verified every file.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::evidence::record::{Record, Verdict};

/// Which rotation slices of a job were content-verified by its last N drills.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RotationCoverage {
    pub job: String,
    /// N: the number of slices (and of drills needed to cover every file).
    pub over: u64,
    /// How many of the last N rotating drills exist (fewer than N early on).
    pub drills: u64,
    /// Slices (0 to N-1) whose drill passed.
    pub verified: Vec<u64>,
    /// Slices with no passing drill among the last N.
    pub missing: Vec<u64>,
    /// When the oldest of those drills started.
    pub since: Option<DateTime<FixedOffset>>,
}

impl RotationCoverage {
    /// True when the last N drills content-verified every file.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The rotation coverage of `job` from its records (in ledger order): the last
/// `over` rotating drills with the same slice count and seed as the newest one.
/// `None` when the job's newest rotating drill is not found.
pub fn rotation_coverage<'a>(
    job: &str,
    records: impl IntoIterator<Item = &'a Record>,
) -> Option<RotationCoverage> {
    let rotating: Vec<&Record> = records
        .into_iter()
        .filter(|r| r.job == job && r.verify.rotate.is_some())
        .collect();
    let newest = rotating.last()?;
    let over = newest.verify.rotate.as_ref()?.over.max(1);
    let seed = newest.verify.sample_seed;
    let same: Vec<&Record> = rotating
        .iter()
        .filter(|r| {
            r.verify
                .rotate
                .as_ref()
                .is_some_and(|s| s.over.max(1) == over)
                && r.verify.sample_seed == seed
        })
        .copied()
        .collect();
    let last = &same[same
        .len()
        .saturating_sub(usize::try_from(over).unwrap_or(usize::MAX))..];
    let mut verified: Vec<u64> = last
        .iter()
        .filter(|r| r.result == Verdict::Pass)
        .filter_map(|r| r.verify.rotate.as_ref().map(|s| s.slice % over))
        .collect();
    verified.sort_unstable();
    verified.dedup();
    let missing = (0..over).filter(|s| !verified.contains(s)).collect();
    Some(RotationCoverage {
        job: job.to_string(),
        over,
        drills: last.len() as u64,
        verified,
        missing,
        since: last.first().map(|r| r.started_at),
    })
}

/// Lists slice numbers compactly: `0-3, 7, 9-10`.
pub fn slice_list(slices: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < slices.len() {
        let mut j = i;
        while j + 1 < slices.len() && slices[j + 1] == slices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            slices[i].to_string()
        } else {
            format!("{}-{}", slices[i], slices[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::record::RotateSlice;

    fn rec(job: &str, slice: u64, over: u64, result: Verdict) -> Record {
        let t = DateTime::parse_from_rfc3339("2026-01-01T03:00:00+09:00").unwrap();
        Record {
            format: crate::FORMAT.into(),
            id: format!("{job}-{slice}"),
            seq: 0,
            job: job.into(),
            system: None,
            host: "h".into(),
            agent_version: "t".into(),
            trigger: crate::Trigger {
                kind: crate::TriggerKind::Schedule,
                reason: None,
                scheduled_for: None,
            },
            started_at: t,
            finished_at: t,
            result,
            reasons: vec![],
            backup: Default::default(),
            restore: Default::default(),
            verify: crate::VerifySection {
                content: "rotate".into(),
                rotate: Some(RotateSlice { slice, over }),
                sample_seed: Some(0),
                ..Default::default()
            },
            objectives: Default::default(),
            checks: vec![],
            sandbox: Default::default(),
            artifacts: None,
            key: None,
            prev_hash: String::new(),
            hash: String::new(),
            signature: None,
            signature_previous: None,
        }
    }

    #[test]
    fn n_passing_drills_cover_every_file() {
        let recs: Vec<Record> = (0..12).map(|s| rec("f", s, 12, Verdict::Pass)).collect();
        let c = rotation_coverage("f", &recs).unwrap();
        assert!(c.complete());
        assert_eq!((c.drills, c.verified.len()), (12, 12));
    }

    #[test]
    fn a_failed_or_unrun_slice_is_missing() {
        let mut recs: Vec<Record> = (0..12).map(|s| rec("f", s, 12, Verdict::Pass)).collect();
        recs[4].result = Verdict::Fail;
        recs[7].result = Verdict::Error;
        let c = rotation_coverage("f", &recs).unwrap();
        assert_eq!(c.missing, vec![4, 7]);
        assert!(!c.complete());
        // Too few drills so far.
        let c = rotation_coverage("f", &recs[..3]).unwrap();
        assert_eq!((c.drills, c.missing.len()), (3, 9));
        // A later pass of slice 4 covers it again, and slice 0 falls out of the window.
        recs.push(rec("f", 4, 12, Verdict::Pass));
        let c = rotation_coverage("f", &recs).unwrap();
        assert_eq!(c.missing, vec![0, 7]);
    }

    #[test]
    fn a_changed_slice_count_or_seed_starts_over() {
        let mut recs: Vec<Record> = (0..4).map(|s| rec("f", s, 4, Verdict::Pass)).collect();
        recs.push(rec("other", 0, 4, Verdict::Fail));
        assert!(rotation_coverage("f", &recs).unwrap().complete());
        recs.push(rec("f", 0, 6, Verdict::Pass));
        let c = rotation_coverage("f", &recs).unwrap();
        assert_eq!((c.over, c.drills, c.missing.len()), (6, 1, 5));
        let mut reseeded = rec("f", 1, 6, Verdict::Pass);
        reseeded.verify.sample_seed = Some(9);
        recs.push(reseeded);
        assert_eq!(rotation_coverage("f", &recs).unwrap().drills, 1);
        assert_eq!(rotation_coverage("none", &recs), None);
    }

    #[test]
    fn slice_lists_are_compact() {
        assert_eq!(slice_list(&[0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
        assert_eq!(slice_list(&[]), "");
    }
}
