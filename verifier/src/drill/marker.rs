//! Crash safety: every drill that is to leave a record holds an in-progress
//! marker in `state_dir/running/` from before its sandbox exists until its record
//! is in the ledger. The marker file is locked while its drill runs, so a marker
//! whose lock can be taken belongs to a drill that died (crash, `kill -9`, power
//! loss): its sandbox is removed and an `error` record says it was interrupted.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::drill::run::{DrillEnv, DrillSpec, note_record, run_drill_as};
use crate::drill::sandbox::{PREFIX, remove_tree, sandbox_path};
use crate::evidence::ledger::{Ledger, LedgerError};
use crate::evidence::record::new_id;
use crate::evidence::record::{Record, Trigger, Verdict};

#[derive(Debug, Serialize, Deserialize)]
struct MarkerData {
    id: String,
    job: String,
    system: Option<String>,
    sandbox: PathBuf,
    started_at: DateTime<FixedOffset>,
    trigger: Trigger,
    pid: u32,
}

/// A locked in-progress marker; dropping it without [`Marker::remove`] leaves it
/// for recovery, which is what a crash does too.
pub struct Marker {
    path: PathBuf,
    _file: File,
}

fn running_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("running")
}

impl Marker {
    fn create(state_dir: &Path, data: &MarkerData) -> io::Result<Marker> {
        let dir = running_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", data.id));
        let tmp = dir.join(format!(".{}.tmp", data.id));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        // Locked before it becomes visible under its real name, so recovery
        // never mistakes a starting drill for a dead one.
        f.lock()?;
        f.write_all(&serde_json::to_vec(data)?)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&dir)?.sync_all()?;
        Ok(Marker { path, _file: f })
    }

    fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// Runs a drill under an in-progress marker and appends its record; the record
/// id may be given in advance (an API answer names it before the drill runs).
pub fn drill_to_ledger(
    spec: &DrillSpec,
    env: &DrillEnv,
    ledger: &Ledger,
    id: Option<String>,
) -> Result<Record, LedgerError> {
    let id = id.unwrap_or_else(new_id);
    let data = MarkerData {
        id: id.clone(),
        job: spec.job.clone(),
        system: spec.system.clone(),
        sandbox: sandbox_path(&env.sandbox_dir, &spec.job, &id),
        started_at: env.stamp(env.now.unwrap_or_else(SystemTime::now)),
        trigger: env.trigger.clone(),
        pid: std::process::id(),
    };
    let marker = Marker::create(&env.state_dir, &data).map_err(|e| LedgerError::Write {
        path: running_dir(&env.state_dir),
        source: e,
    })?;
    let mut rec = run_drill_as(spec, env, id);
    if let Err(e) = ledger.append(&mut rec) {
        // Evidence is never dropped: keep the record beside its artifacts.
        let saved = env.state_dir.join("runs").join(&rec.id).join("record.json");
        let kept = saved
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|_| {
                std::fs::write(&saved, serde_json::to_vec_pretty(&rec).unwrap_or_default())
            });
        return Err(match kept {
            Ok(()) => LedgerError::NotAppended {
                saved,
                source: Box::new(e),
            },
            Err(_) => e,
        });
    }
    // The record is kept; a marker left behind now would only add a false
    // "interrupted" record, so failing to remove it is reported, not ignored.
    marker.remove().map_err(|e| LedgerError::Write {
        path: running_dir(&env.state_dir),
        source: e,
    })?;
    Ok(rec)
}

/// Finds drills that died without a record, removes their sandboxes, appends an
/// `error` record for each, and removes sandboxes no live drill owns.
pub fn recover_interrupted(env: &DrillEnv, ledger: &Ledger) -> Result<Vec<Record>, LedgerError> {
    let dir = running_dir(&env.state_dir);
    let mut recovered = Vec::new();
    let rerr = |e| LedgerError::Read {
        path: dir.clone(),
        source: e,
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(d) => d.collect::<Result<Vec<_>, _>>().map_err(rerr)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(rerr(e)),
    };
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A marker that never got its name: its drill had not started.
            if let Ok(f) = File::open(&path)
                && f.try_lock().is_ok()
            {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let f = File::open(&path).map_err(rerr)?;
        let data: Option<MarkerData> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match f.try_lock() {
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(rerr(e)),
            Ok(()) => {}
        }
        // The drill may have finished between our open and our lock: then the
        // name is gone (or is another file) and there is nothing to recover.
        use std::os::unix::fs::MetadataExt;
        let same = match (std::fs::metadata(&path), f.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            continue;
        }
        let Some(d) = data else {
            tracing::error!(marker = %path.display(), "Unreadable in-progress marker; removing it.");
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let removed = remove_tree(&d.sandbox);
        // Killed after its record was appended but before the marker went:
        // the record is there; never write a second one.
        let recorded = ledger
            .records()
            .map(|it| it.filter_map(Result::ok).any(|r| r.id == d.id))
            .unwrap_or(false);
        if recorded {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let mut reasons = vec![format!(
            "interrupted: restore-verifier stopped (crash, kill or power loss) while this drill was running (pid {}); no result was recorded",
            d.pid
        )];
        if let Err(e) = &removed {
            reasons.push(format!(
                "its sandbox {} could not be removed: {e}",
                d.sandbox.display()
            ));
        }
        let mut denv = env.clone();
        denv.trigger = d.trigger.clone();
        let mut rec = note_record(
            &denv,
            d.id.clone(),
            &d.job,
            d.system.clone(),
            SystemTime::from(d.started_at),
            Verdict::Error,
            reasons,
        );
        rec.sandbox.path = d.sandbox.display().to_string();
        rec.sandbox.removed = removed.is_ok();
        ledger.append(&mut rec)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(LedgerError::Write {
                    path: path.clone(),
                    source: e,
                });
            }
            _ => {}
        }
        tracing::warn!(job = %rec.job, id = %rec.id, "Recorded a drill interrupted by a crash.");
        recovered.push(rec);
    }
    // Sandboxes whose drill is not running: their marker is gone or unlocked.
    // Checked per sandbox, now, because a drill may have started meanwhile
    // (its marker always exists before its sandbox does).
    if let Ok(rd) = std::fs::read_dir(&env.sandbox_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if !name.starts_with(PREFIX) || !p.is_dir() {
                continue;
            }
            let id = name
                .get(name.len().saturating_sub(36)..)
                .unwrap_or_default();
            let owned = File::open(dir.join(format!("{id}.json")))
                .map(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
                .unwrap_or(false);
            if !owned {
                tracing::warn!(sandbox = %p.display(), "Removing a sandbox left behind.");
                let _ = remove_tree(&p);
            }
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_recorded_before_its_marker_went_is_not_recorded_again() {
        let tmp = tempfile::tempdir().unwrap();
        let env = DrillEnv::new(tmp.path().join("sandbox"), tmp.path().join("state"));
        let ledger = Ledger::new(tmp.path().join("state/ledger.jsonl"));
        let data = MarkerData {
            id: "0190aaaa-0000-7000-8000-000000000001".into(),
            job: "j".into(),
            system: None,
            sandbox: sandbox_path(
                &env.sandbox_dir,
                "j",
                "0190aaaa-0000-7000-8000-000000000001",
            ),
            started_at: env.stamp(SystemTime::now()),
            trigger: env.trigger.clone(),
            pid: 1,
        };
        // The process died holding this marker (dropping it releases the lock).
        drop(Marker::create(&env.state_dir, &data).unwrap());
        let mut rec = note_record(
            &env,
            data.id.clone(),
            "j",
            None,
            SystemTime::now(),
            Verdict::Pass,
            vec![],
        );
        ledger.append(&mut rec).unwrap();
        assert!(recover_interrupted(&env, &ledger).unwrap().is_empty());
        assert_eq!(ledger.records().unwrap().count(), 1);
        assert!(
            !running_dir(&env.state_dir)
                .join(format!("{}.json", data.id))
                .exists()
        );

        // Without the record, the same marker yields one `error` record.
        let data2 = MarkerData {
            id: "0190aaaa-0000-7000-8000-000000000002".into(),
            ..data
        };
        drop(Marker::create(&env.state_dir, &data2).unwrap());
        let got = recover_interrupted(&env, &ledger).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].result, Verdict::Error);
        assert!(
            recover_interrupted(&env, &ledger).unwrap().is_empty(),
            "recorded once only"
        );
    }
}
