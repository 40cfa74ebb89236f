//! One drill, in the order it runs: the sandbox, the restore, the compare,
//! the checks, the objectives, the sandbox removed, and the record. One long
//! function, kept whole so the order can be read from top to bottom.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::judge::Drill;
use super::metadata::metadata_to_compare;
use super::{DrillEnv, DrillSpec};
use crate::drill::checks::run_check;
use crate::drill::deadline::{Deadline, Stop};
use crate::drill::process::Isolation;
use crate::drill::sandbox::{Sandbox, overlaps};
use crate::driver::{BackupInfo, DriverError, RestoreStats};
use crate::evidence::record::*;
use crate::progress::Phase;
use crate::tree::compare::{CompareError, CompareOptions, CompareReport, Reference, compare_with};
use crate::tree::drift::Drift;
use crate::tree::metadata::MetadataSet;
use crate::tree::select::ContentSelection;
use crate::units::humanize;

/// Hands the sandbox to the job's `run_as` account and proves the isolation
/// can be had here, before anything runs.
fn isolate(sandbox: &Path, isolation: &Isolation) -> Result<(), String> {
    if let Some(r) = &isolation.run_as {
        std::os::unix::fs::chown(sandbox, Some(r.uid), Some(r.gid)).map_err(|e| {
            format!(
                "cannot give the sandbox {} to run_as user {}: {e}",
                sandbox.display(),
                r.name
            )
        })?;
    }
    isolation.probe(sandbox)
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// How far a backup's time may be ahead of the drill's clock (clocks of two
/// hosts differ a little) before the clock is judged wrong.
const CLOCK_SKEW: i64 = 300;

/// Runs one drill with a given record id (known in advance, e.g. to answer an
/// API request or to write an in-progress marker).
pub fn run_drill_as(spec: &DrillSpec, env: &DrillEnv, id: String) -> Record {
    let started = env.now.unwrap_or_else(SystemTime::now);
    let clock = Instant::now();
    let mut d = Drill {
        fails: Vec::new(),
        errors: Vec::new(),
    };
    let deadline = spec
        .timeout
        .map(Deadline::after)
        .unwrap_or(Deadline::none())
        .with_cancel(env.cancel.clone());
    let mut backup = BackupInfo {
        kind: spec.driver.kind().to_string(),
        ..BackupInfo::default()
    };
    let mut stats = RestoreStats::default();
    let mut report: Option<CompareReport> = None;
    let mut restore_time = Duration::ZERO;
    let mut verify_time = Duration::ZERO;
    let mut artifacts = None;
    let mut checks = Vec::new();
    // What the compare looked at, and what it left out; nothing until it runs.
    let mut metadata = (MetadataSet::parse(&[]).unwrap_or_default(), Vec::new());

    // Nothing may be written into the live data: refuse before anything is.
    let clash = spec.source.as_deref().and_then(|src| {
        [
            ("sandbox_dir", &env.sandbox_dir),
            ("state_dir", &env.state_dir),
        ]
        .into_iter()
        .find(|(_, d)| overlaps(d, src))
        .map(|(key, d)| {
            format!(
                "{key} {} and the source {} overlap; move {key} out of the source",
                d.display(),
                src.display()
            )
        })
    });
    let sandbox = if let Some(why) = clash {
        d.errors.push(why);
        None
    } else {
        // A runbook restores as the job's account: the sandbox is its from
        // the start. Other restores write as the agent, into a sandbox no
        // other account may touch; checks get it after the compare.
        let runbook = spec.driver.restores_as_job();
        match Sandbox::create(&env.sandbox_dir, &spec.job, &id) {
            Ok(s) if !runbook || spec.isolation.is_none() => Some(s),
            Ok(s) => match isolate(s.path(), &spec.isolation) {
                Ok(()) => Some(s),
                Err(why) => {
                    d.errors.push(why);
                    let _ = s.remove();
                    None
                }
            },
            Err(e) => {
                d.errors.push(format!(
                "cannot create a sandbox under {}: {e}; check that sandbox_dir exists and is writable",
                env.sandbox_dir.display()
            ));
                None
            }
        }
    };
    let sandbox_path = sandbox
        .as_ref()
        .map(|s| s.path().display().to_string())
        .unwrap_or_default();

    if let Some(sb) = &sandbox {
        let t = Instant::now();
        env.phase(Phase::Locating);
        let restored = spec.driver.locate(&deadline).and_then(|mut info| {
            if let Some(loc) = &info.location
                && loc.is_dir()
                && overlaps(loc, &env.sandbox_dir)
            {
                backup = info.clone();
                return Err(DriverError::Setup(format!(
                    "the backup {} and sandbox_dir {} overlap; move sandbox_dir elsewhere",
                    loc.display(),
                    env.sandbox_dir.display()
                )));
            }
            if let Some(estimate) = info.size_estimate
                && let Err(e) =
                    crate::driver::check_space(estimate, spec.max_restore_bytes, &env.sandbox_dir)
            {
                backup = info;
                return Err(e);
            }
            env.phase(Phase::Restoring);
            stats.max_bytes = spec.max_restore_bytes;
            let r = spec
                .driver
                .restore(&mut info, sb.path(), &deadline, &mut stats);
            backup = info;
            // (A database restore counts rows, not bytes.)
            match (r, spec.max_restore_bytes) {
                (Ok(()), Some(max)) if stats.bytes > max && spec.driver.kind() != "postgres" => {
                    Err(DriverError::Space(format!(
                        "the restore wrote {}, more than max_restore_bytes ({})",
                        crate::units::human_bytes(stats.bytes),
                        crate::units::human_bytes(max)
                    )))
                }
                (r, _) => r,
            }
        });
        restore_time = t.elapsed();
        if let Err(e) = restored {
            d.driver_error(&e);
        }
        let fine = d.fails.is_empty() && d.errors.is_empty();
        // Where the source's data is in the restore, when the driver cannot
        // say: the chain of directories leading to the source's path.
        if fine
            && stats.root.is_none()
            && stats.verified.is_none()
            && let Some(src) = &spec.source
        {
            stats.root = crate::tree::root::root_for_source(sb.path(), src);
        }
        let root = stats.root.clone().unwrap_or_default();
        if fine && let Err(why) = crate::tree::root::check_root(sb.path(), &root) {
            d.fails.push(why);
        }
        let restored_root = sb.path().join(root);
        if let Some(v) = stats.verified.take() {
            artifacts = Some(format!("runs/{id}"));
            report = Some(v);
        } else if d.fails.is_empty() && d.errors.is_empty() {
            let t = Instant::now();
            let run_dir = env.state_dir.join("runs").join(&id);
            metadata = metadata_to_compare(
                spec.verify.metadata,
                stats.held,
                &stats.metadata_notes,
                spec.manifest.is_none() && spec.source.is_some(),
                rustix::process::geteuid().is_root(),
            );
            let opts = CompareOptions {
                selection: spec.verify.selection.clone(),
                exclude: spec.verify.exclude.clone(),
                // Against a manifest nothing may drift.
                drift: if spec.manifest.is_some() {
                    None
                } else {
                    backup.read_by.or(backup.created_at).map(|t| Drift {
                        backup_time: t,
                        per_file_mtime: spec.driver.records_mtimes(),
                        not_before: backup.started_at,
                    })
                },
                expect: spec.verify.expect.clone(),
                deadline: deadline.clone(),
                manifest_out: Some(run_dir.join("manifest.jsonl")),
                threads: 0,
                progress: env.progress.clone(),
                metadata: metadata.0,
            };
            env.phase(Phase::Verifying);
            let reference = match (&spec.manifest, &spec.source) {
                (Some(m), _) => Reference::Manifest(m),
                (None, Some(s)) => Reference::Tree(s),
                (None, None) => Reference::Nothing,
            };
            match compare_with(reference, &restored_root, &opts) {
                Ok(r) => {
                    artifacts = Some(format!("runs/{id}"));
                    report = Some(r);
                }
                Err(CompareError::Stopped(t @ Stop::TimedOut(_))) => {
                    d.fails.push(format!("verify {t} (the job's timeout)"))
                }
                Err(e @ CompareError::Stopped(Stop::Cancelled)) => d.errors.push(e.to_string()),
                Err(e) => d.errors.push(format!("cannot verify: {e}")),
            }
            verify_time = t.elapsed();
        }
        if report.is_some() {
            if !spec.checks.is_empty() {
                env.phase(Phase::Checking);
            }
            // A restored link may point anywhere (it is data, compared as
            // text); a check, though, would follow it, and could verify or
            // change live data instead of the restore.
            let links = if spec.checks.is_empty() {
                Ok(())
            } else {
                crate::driver::check_all_links(sb.path()).map_err(|(rel, why)| {
                    let rel = crate::tree::path::display(&rel);
                    if why.starts_with("cannot be checked") {
                        format!(
                            "the restored {rel} {why}, and a check could follow a link in it to live data"
                        )
                    } else {
                        format!(
                            "the restored symlink {rel} leads out of the sandbox ({why}), and a check could follow it to live data; remove the [[job.check]] entries or keep such links out of what the job restores"
                        )
                    }
                })
            };
            let handed = links.and_then(|()| {
                if spec.checks.is_empty()
                    || spec.isolation.is_none()
                    || spec.driver.restores_as_job()
                {
                    Ok(())
                } else {
                    isolate(sb.path(), &spec.isolation)
                }
            });
            if let Err(why) = &handed {
                d.errors.push(format!("checks not run: {why}"));
            }
            for (n, c) in spec.checks.iter().enumerate().filter(|_| handed.is_ok()) {
                let (rec, stop) = run_check(
                    n + 1,
                    c,
                    &restored_root,
                    &deadline,
                    &stats.check_env,
                    &spec.isolation,
                );
                match (&rec.reason, stop) {
                    (Some(why), Some(Stop::Cancelled)) => d.errors.push(why.clone()),
                    (Some(why), _) => d.fails.push(why.clone()),
                    (None, _) => {}
                }
                checks.push(rec);
            }
        }
        spec.driver.finish(sb.path());
        env.phase(Phase::Done);
    }

    let r = report.clone().unwrap_or_default();
    if let Some(r) = &report {
        d.judge(spec, &stats, r);
    }

    // Objectives.
    let mut objectives = Objectives {
        rto_seconds: spec.rto.map(|d| d.as_secs()),
        rpo_seconds: spec.rpo.map(|d| d.as_secs()),
        ..Objectives::default()
    };
    let age = backup.created_at.map(|t| match started.duration_since(t) {
        Ok(a) => a.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    });
    if let Some(rpo) = spec.rpo {
        match age {
            // A backup from the future: the clock is wrong (or jumped back), and
            // its age says nothing.
            Some(a) if a < -CLOCK_SKEW => {
                objectives.rpo_met = Some(false);
                d.fails.push(format!(
                    "the backup's time is {} after this drill started: the clock is wrong or went backwards, so the RPO cannot be shown to be met",
                    humanize(Duration::from_secs(a.unsigned_abs()))
                ));
            }
            Some(a) => {
                let met = a <= rpo.as_secs() as i64;
                objectives.rpo_met = Some(met);
                if !met {
                    d.fails.push(format!(
                        "backup is {} old, older than the RPO of {}",
                        humanize(Duration::from_secs(a as u64)),
                        humanize(rpo)
                    ));
                }
            }
            None if !backup.id.is_empty() => {
                objectives.rpo_met = Some(false);
                d.fails.push(
                    "the backup time is unknown, so the RPO cannot be shown to be met".into(),
                );
            }
            None => {}
        }
    }
    if let (Some(rto), Some(_)) = (spec.rto, &report) {
        let took = restore_time + verify_time;
        let met = took <= rto;
        objectives.rto_met = Some(met);
        if !met {
            d.fails.push(format!(
                "restore and verify took {}, longer than the RTO of {}",
                humanize(took),
                humanize(rto)
            ));
        }
    }

    let removed = match sandbox {
        Some(sb) => {
            let p = sb.path().to_path_buf();
            match sb.remove() {
                Ok(()) => true,
                Err(e) => {
                    d.errors.push(format!(
                        "the sandbox {} could not be removed: {e}",
                        p.display()
                    ));
                    false
                }
            }
        }
        None => true,
    };

    let result = if !d.fails.is_empty() {
        Verdict::Fail
    } else if !d.errors.is_empty() {
        Verdict::Error
    } else {
        Verdict::Pass
    };
    let mut reasons = d.fails;
    reasons.extend(d.errors);

    let finished = started + clock.elapsed();
    Record {
        format: FORMAT.to_string(),
        id,
        seq: 0,
        job: spec.job.clone(),
        system: spec.system.clone(),
        host: env.host.clone(),
        agent_version: env.agent_version.clone(),
        trigger: env.trigger.clone(),
        started_at: env.stamp(started),
        finished_at: env.stamp(finished),
        result,
        reasons,
        backup: BackupSection {
            kind: backup.kind,
            id: (!backup.id.is_empty()).then_some(backup.id),
            location: backup.location.map(|p| p.display().to_string()),
            sha256: backup.sha256,
            created_at: backup.created_at.map(|t| env.stamp(t)),
            age_seconds: age,
        },
        restore: RestoreSection {
            duration_seconds: secs(restore_time),
            files: stats.files,
            bytes: stats.bytes,
            exit_code: stats.exit_code,
            tool: stats.tool.clone(),
            steps: stats.steps.clone(),
            root: stats
                .root
                .as_deref()
                .filter(|r| !r.as_os_str().is_empty())
                .map(crate::tree::path::display),
            notes: stats.notes.clone(),
        },
        verify: VerifySection {
            duration_seconds: secs(verify_time),
            against: match (&spec.manifest, &spec.source, stats.against) {
                (Some(_), _, _) => "manifest",
                (None, _, Some(other)) => other,
                (None, Some(_), None) => "source",
                (None, None, None) => "none",
            }
            .into(),
            reference: spec
                .manifest
                .as_ref()
                .or(spec.source.as_ref())
                .map(|p| p.display().to_string()),
            content: spec.verify.selection.mode_name().into(),
            files_compared: r.files_compared,
            dirs_compared: r.dirs_compared,
            content_checked: r.content_checked,
            bytes_checked: r.bytes_checked,
            sample_seed: spec.verify.selection.seed(),
            rotate: match spec.verify.selection {
                ContentSelection::Rotate { over, slice, .. } => Some(RotateSlice { slice, over }),
                _ => None,
            },
            missing: r.missing,
            mismatched: r.mismatched,
            extra: r.extra,
            changed_since_backup: r.changed_since_backup,
            new_since_backup: r.new_since_backup,
            unreadable: r.unreadable,
            source_unreadable: r.source_unreadable,
            metadata: metadata.0.names(),
            metadata_not_compared: metadata.1,
            skipped_special: {
                // The restore's (devices in the archive) and the compare's.
                let mut all = stats.skipped_special.clone();
                for f in r.skipped_special.items {
                    if !all.contains(&f.path) {
                        all.push(f.path, f.what);
                    }
                }
                all
            },
            expect: r.expect,
            manifest_sha256: r.manifest_sha256,
        },
        objectives,
        checks,
        sandbox: SandboxSection {
            path: sandbox_path,
            removed,
        },
        artifacts,
        key: None,
        prev_hash: String::new(),
        hash: String::new(),
        signature: None,
        signature_previous: None,
    }
}
