//! The mapping from a configured job to one drill: which driver, what is
//! verified and how, under which limits; and which rotation slice the next
//! drill checks. Pure: the caller reads the ledger and draws the seed.

use std::path::Path;

use verifier::{ContentSelection, DrillSpec, Record, VerifySpec};

use crate::config::{Content, Job};

/// The drill of `job`. `drawn_seed` samples when the job sets no `seed`;
/// `slice` is the rotation slice this drill checks ([`next_slice`]).
pub fn spec(job: &Job, state_dir: &Path, drawn_seed: u64, slice: u64) -> DrillSpec {
    let driver = job.backup.driver(job, state_dir);
    let v = &job.verify;
    let selection = match v.content {
        Content::All => ContentSelection::All,
        Content::None => ContentSelection::None,
        Content::Sample => ContentSelection::Sample {
            files: v.sample_files,
            seed: v.seed.unwrap_or(drawn_seed),
        },
        Content::Rotate => ContentSelection::Rotate {
            over: v.rotate_over,
            slice,
            seed: v.seed.unwrap_or(0),
        },
    };
    DrillSpec {
        job: job.name.clone(),
        system: job.system.clone(),
        driver,
        source: job.source.clone(),
        manifest: v.manifest.clone(),
        checks: job.checks.clone(),
        verify: VerifySpec {
            selection,
            exclude: v.exclude.clone(),
            min_files: v.min_files,
            expect: v.expect.clone(),
            metadata: v.metadata,
        },
        timeout: Some(job.timeout),
        rto: job.rto,
        rpo: job.rpo,
        max_restore_bytes: job.max_restore_bytes,
        isolation: job.isolation.clone(),
    }
}

/// The rotation slice for the next drill of `job`, from the ledger's
/// records in order: the one after the last drill that finished its verify
/// over the same number of slices, so a drill that erred before verifying
/// does not leave a slice unchecked.
pub fn next_slice(records: impl IntoIterator<Item = Record>, job: &str, over: u64) -> u64 {
    let last = records
        .into_iter()
        .filter(|r| r.job == job && r.artifacts.is_some())
        .filter_map(|r| r.verify.rotate)
        .filter(|r| r.over == over)
        .last();
    last.map_or(0, |r| (r.slice + 1) % over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A record of `job` that verified `slice` of `over` (`artifacts`:
    /// whether it finished its verify).
    fn rotated(job: &str, slice: u64, over: u64, finished: bool) -> Record {
        use verifier::*;
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-01T03:00:00+09:00").unwrap();
        Record {
            format: FORMAT.into(),
            id: format!("{job}-{slice}"),
            seq: 0,
            job: job.into(),
            system: None,
            host: "h".into(),
            agent_version: "t".into(),
            trigger: Trigger {
                kind: TriggerKind::Schedule,
                reason: None,
                scheduled_for: None,
            },
            started_at: t,
            finished_at: t,
            result: Verdict::Pass,
            reasons: vec![],
            backup: BackupSection::default(),
            restore: RestoreSection::default(),
            verify: VerifySection {
                content: "rotate".into(),
                rotate: Some(RotateSlice { slice, over }),
                ..Default::default()
            },
            objectives: Objectives::default(),
            checks: vec![],
            sandbox: SandboxSection::default(),
            artifacts: finished.then(|| format!("runs/{job}-{slice}")),
            key: None,
            prev_hash: String::new(),
            hash: String::new(),
            signature: None,
            signature_previous: None,
        }
    }

    #[rstest]
    #[case::a_first_drill_checks_slice_0(vec![], 0)]
    #[case::the_slice_after_the_last(vec![rotated("fs", 0, 4, true), rotated("fs", 1, 4, true)], 2)]
    #[case::after_the_last_slice_comes_the_first(vec![rotated("fs", 3, 4, true)], 0)]
    #[case::a_drill_that_erred_before_verifying_does_not_count(
        vec![rotated("fs", 1, 4, true), rotated("fs", 2, 4, false)], 2)]
    #[case::another_jobs_drills_do_not_count(vec![rotated("fs", 1, 4, true), rotated("db", 3, 4, true)], 2)]
    #[case::a_changed_rotate_over_starts_again(vec![rotated("fs", 5, 8, true)], 0)]
    fn next_slice_follows_the_last_verified_slice(#[case] records: Vec<Record>, #[case] want: u64) {
        assert_eq!(next_slice(records, "fs", 4), want);
    }

    fn job(verify: &str) -> Job {
        let text = format!(
            "[[job]]\nname = \"fs\"\nsource = \"/srv\"\ntimeout = \"1h\"\nrpo = \"1d\"\n[job.backup]\ntype = \"dir\"\npath = \"/b\"\n[job.verify]\n{verify}"
        );
        let cfg = crate::config::parse(
            Path::new("/etc/rv.toml"),
            &text,
            crate::config::Check::Values,
        )
        .unwrap();
        cfg.jobs[0].clone()
    }

    #[rstest]
    #[case::all("content = \"all\"", ContentSelection::All)]
    #[case::none("content = \"none\"", ContentSelection::None)]
    #[case::sample_with_the_drawn_seed("content = \"sample\"\nsample_files = 5",
        ContentSelection::Sample { files: 5, seed: 77 })]
    #[case::sample_with_the_configured_seed("content = \"sample\"\nsample_files = 5\nseed = 3",
        ContentSelection::Sample { files: 5, seed: 3 })]
    #[case::rotate_checks_the_given_slice("content = \"rotate\"\nrotate_over = 4",
        ContentSelection::Rotate { over: 4, slice: 2, seed: 0 })]
    fn a_job_maps_to_its_drill(#[case] verify: &str, #[case] want: ContentSelection) {
        let j = job(verify);
        let s = spec(&j, Path::new("/var/lib/rv"), 77, 2);
        assert_eq!(s.verify.selection, want);
        assert_eq!(s.job, "fs");
        assert_eq!(s.source.as_deref(), Some(Path::new("/srv")));
        assert_eq!(s.timeout, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(s.rpo, Some(std::time::Duration::from_secs(86_400)));
        assert_eq!(s.driver.kind(), "dir");
    }
}
