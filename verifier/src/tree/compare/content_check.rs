//! Content checks: which files are checked now (all, a rotation's slice, the
//! canaries) or offered to the sample, handed to the workers, and their
//! results taken into the report and the run manifest.

use std::path::{Path, PathBuf};

use super::{CompareError, Comparer};
use crate::evidence::record::ExpectStatus;
use crate::progress::Progress;
use crate::tree::content::{ContentError, Done, Handles};
use crate::tree::drift::{Judgement, content_change};
use crate::tree::path::display;
use crate::tree::select::{ContentSelection, in_slice};

impl Comparer<'_> {
    /// Content-checks now (all, rotate, canary) or offers to the sample.
    pub(super) fn consider_content(
        &mut self,
        rel: &Path,
        expected: Option<&str>,
        size: u64,
        handles: Handles,
    ) -> Result<(), CompareError> {
        let forced = self.expect.contains_key(rel);
        let now = forced
            || match &self.opts.selection {
                ContentSelection::All => true,
                ContentSelection::Rotate { over, slice, seed } => {
                    in_slice(*seed, *over, *slice, rel)
                }
                ContentSelection::Sample { .. } | ContentSelection::None => false,
            };
        if now {
            return self.submit(rel.to_path_buf(), expected.map(String::from), size, handles);
        }
        if let Some(s) = &mut self.sample {
            s.offer(rel, expected, size);
        }
        Ok(())
    }

    /// Hands a file to the content-check workers; applies whatever has finished.
    pub(super) fn submit(
        &mut self,
        rel: PathBuf,
        expected: Option<String>,
        size: u64,
        handles: Handles,
    ) -> Result<(), CompareError> {
        if let Some(p) = &self.opts.progress {
            Progress::add(&p.files_queued, 1);
            Progress::add(&p.bytes_queued, size);
        }
        for d in self.pool.submit(rel, expected, size, handles) {
            self.apply(d)?;
        }
        Ok(())
    }

    /// Takes one finished content check into the report and the run manifest.
    pub(super) fn apply(&mut self, done: Done) -> Result<(), CompareError> {
        let Done {
            job, result, times, ..
        } = done;
        let rel = job.rel.as_path();
        match result {
            Ok(mut out) => {
                if let Some(want) = &job.expected
                    && *want != out.sha256
                {
                    // Against a manifest only the hash can differ; no offset.
                    out.first_diff = Some(u64::MAX);
                }
                self.report.content_checked += 1;
                self.report.bytes_checked += out.bytes;
                if let Some(m) = &mut self.manifest {
                    m.line(rel, out.bytes, &out.sha256, out.first_diff.is_none())
                        .map_err(|e| CompareError::Manifest {
                            path: m.path.clone(),
                            source: e,
                        })?;
                }
                if let Some(at) = out.first_diff {
                    // Times unknown (a side vanished): judged as damage.
                    let judgement = match times {
                        Some(t) => content_change(
                            self.opts.drift,
                            t.source_mtime,
                            t.source_ctime,
                            t.restored_mtime,
                        ),
                        None => Judgement::Corrupt,
                    };
                    let what = if at == u64::MAX {
                        "content differs (its SHA-256 is not the manifest's)".to_string()
                    } else {
                        format!("content differs at byte {at}")
                    };
                    self.differ_at(rel, what, judgement);
                }
            }
            Err(ContentError::Stopped(t)) => return Err(CompareError::Stopped(t)),
            Err(ContentError::Source(e)) => {
                self.report
                    .source_unreadable
                    .push(display(rel), e.to_string());
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
            Err(ContentError::Restored(e)) => {
                self.report.unreadable.push(display(rel), e.to_string());
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
        }
        Ok(())
    }
}
