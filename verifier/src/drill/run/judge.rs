//! Judging a drill: a driver's error as a finding or an error, and the
//! compare's findings turned into the record's reasons (a few named per
//! category, then a count).

use super::DrillSpec;
use crate::driver::{DriverError, RestoreStats};
use crate::evidence::record::{ExpectStatus, Findings};
use crate::tree::compare::CompareReport;

pub(super) struct Drill {
    pub(super) fails: Vec<String>,
    pub(super) errors: Vec<String>,
}

/// At most this many reasons name individual paths per category.
const NAMED: usize = 3;

impl Drill {
    pub(super) fn driver_error(&mut self, e: &DriverError) {
        let text = format!("restore failed: {e}");
        if e.is_finding() {
            self.fails.push(text);
        } else {
            self.errors.push(text);
        }
    }

    fn list(&mut self, f: &Findings, one: impl Fn(&str, &str) -> String, many: &str, error: bool) {
        if f.count == 0 {
            return;
        }
        let out = if error {
            &mut self.errors
        } else {
            &mut self.fails
        };
        if f.count as usize <= NAMED {
            out.extend(f.items.iter().map(|i| one(&i.path, &i.what)));
        } else {
            let eg: Vec<&str> = f
                .items
                .iter()
                .take(NAMED)
                .map(|i| i.path.as_str())
                .collect();
            out.push(format!("{} {many}, e.g. {}", f.count, eg.join(", ")));
        }
    }

    pub(super) fn judge(&mut self, spec: &DrillSpec, stats: &RestoreStats, r: &CompareReport) {
        if stats.files == 0 && r.restored_files == 0 {
            self.fails.push("the restore produced no files".into());
        }
        self.list(
            &r.missing,
            |p, _| format!("missing from the restore: {p}"),
            "entries missing from the restore",
            false,
        );
        self.list(
            &r.mismatched,
            |p, w| {
                let kind = if w.starts_with("content") {
                    "content"
                } else {
                    w.split(':').next().unwrap_or("entry")
                };
                format!("{kind} mismatch: {p} ({w})")
            },
            "entries differ from the source",
            false,
        );
        self.list(
            &r.unreadable,
            |p, w| format!("restored entry unreadable: {p} ({w})"),
            "restored entries unreadable",
            false,
        );
        if spec.manifest.is_some() {
            self.list(
                &r.extra,
                |p, _| format!("not in the manifest: {p}"),
                "restored entries are not in the manifest",
                false,
            );
        }
        self.list(
            &r.source_unreadable,
            |p, w| format!("cannot read source entry {p}: {w}"),
            "source entries unreadable",
            true,
        );
        for e in &r.expect {
            match e.status {
                ExpectStatus::Missing => self.fails.push(format!("canary missing: {}", e.path)),
                ExpectStatus::Mismatched => self
                    .fails
                    .push(format!("canary does not match the source: {}", e.path)),
                ExpectStatus::Matched | ExpectStatus::ChangedSinceBackup => {}
            }
        }
        if r.restored_files < spec.verify.min_files {
            self.fails.push(format!(
                "only {} files restored, fewer than min_files = {}",
                r.restored_files, spec.verify.min_files
            ));
        }
        let restored_nothing = stats.files == 0 && r.restored_files == 0;
        if r.files_compared == 0 && !restored_nothing {
            self.fails.push(
                "nothing was verified: no restored file was compared (check exclude and source)"
                    .into(),
            );
        }
    }
}
