//! The compare engine: inventory of every entry, content of all or a selection of
//! files, with live-source drift tolerance (DESIGN.md "Verification semantics").
//!
//! Two sorted walks are merge-joined, so memory does not grow with the number of
//! files. Differences are findings collected into a [`CompareReport`]; only
//! "could not compare at all" is an `Err`.
//!
//! The parts: this file is the compare's options, report and errors, and the
//! merge-join that walks both sides; `entry.rs` judges each entry (on one side
//! only, or on both: type, size, target, mode, owner, ACLs, attributes);
//! `content_check.rs` hands files to the content-check workers and takes their
//! results; `run_manifest.rs` writes the run manifest as it goes.

mod content_check;
mod entry;
mod run_manifest;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::drill::deadline::{Deadline, Stop};
use crate::evidence::record::{ExpectResult, ExpectStatus, Findings};
use crate::progress::Progress;
use crate::tree::content::{Handles, Pool, Roots, worker_count};
use crate::tree::drift::Drift;
use crate::tree::manifest::ManifestReader;
use crate::tree::metadata::MetadataSet;
use crate::tree::path::{display, from_display};
use crate::tree::select::{BottomK, ContentSelection};
use crate::tree::walk::{Entry, Kind, Walk, WalkError, open_root};
use run_manifest::ManifestWriter;

/// How to compare a restored tree.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub selection: ContentSelection,
    /// Glob patterns relative to the tree root (`*.tmp`, `cache/**`).
    pub exclude: Vec<String>,
    /// When the backup read the source's files, so that changes made after it
    /// are drift, not failures (see [`crate::tree::drift`]). `None` compares exactly.
    pub drift: Option<Drift>,
    /// Canaries: always content-checked, must be restored and match.
    pub expect: Vec<PathBuf>,
    pub deadline: Deadline,
    /// Where to write the manifest of content-checked files (JSON lines).
    pub manifest_out: Option<PathBuf>,
    /// Files content-checked at once; 0 means one per core.
    pub threads: usize,
    /// Counters for a progress display.
    pub progress: Option<Arc<Progress>>,
    /// What is compared beyond type, size, link target and content (owner,
    /// ACLs and attributes only against a source tree).
    pub metadata: MetadataSet,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            selection: ContentSelection::All,
            exclude: Vec::new(),
            drift: None,
            expect: Vec::new(),
            deadline: Deadline::none(),
            manifest_out: None,
            threads: 0,
            progress: None,
            metadata: MetadataSet::default(),
        }
    }
}

/// Everything a compare found. Counts are exact; lists are capped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CompareReport {
    /// Non-directory entries present on both sides (restored entries when there
    /// is no source).
    pub files_compared: u64,
    pub dirs_compared: u64,
    /// Non-directory entries in the restored tree, and their bytes.
    pub restored_files: u64,
    pub restored_bytes: u64,
    pub content_checked: u64,
    pub bytes_checked: u64,
    pub missing: Findings,
    pub mismatched: Findings,
    pub extra: Findings,
    pub changed_since_backup: Findings,
    pub new_since_backup: Findings,
    /// Restored entries that could not be read: the restore is not usable.
    pub unreadable: Findings,
    /// Source entries that could not be read: nothing can be said about them.
    pub source_unreadable: Findings,
    /// Sockets, which no archiver stores, and device nodes, which hold no
    /// data and are not made in a sandbox (on either side): not compared.
    #[serde(default, skip_serializing_if = "Findings::is_empty")]
    pub skipped_special: Findings,
    pub expect: Vec<ExpectResult>,
    pub manifest_sha256: Option<String>,
}

impl CompareReport {
    /// True when the trees differ in any way an exact compare cares about.
    pub fn has_differences(&self) -> bool {
        !(self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.extra.is_empty()
            && self.changed_since_backup.is_empty()
            && self.new_since_backup.is_empty()
            && self.unreadable.is_empty()
            && self.source_unreadable.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot read {side} {path}: {source}")]
    Root {
        side: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid exclude pattern {pattern:?}: {message}")]
    Exclude { pattern: String, message: String },
    #[error("cannot write the run manifest {path}: {source}")]
    Manifest { path: PathBuf, source: io::Error },
    #[error("verify {0}")]
    Stopped(#[from] Stop),
    #[error("{0}")]
    Reference(String),
    #[error("a content-check worker stopped unexpectedly; the compare is incomplete")]
    Worker,
}

/// Builds the exclude matcher; `*` also matches `/`, so `*.tmp` matches anywhere.
pub fn exclude_set(patterns: &[String]) -> Result<Option<GlobSet>, CompareError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| CompareError::Exclude {
            pattern: p.clone(),
            message: e.kind().to_string(),
        })?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| CompareError::Exclude {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// What a restored tree is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Reference<'a> {
    /// The live source tree.
    Tree(&'a Path),
    /// A manifest made when the backup was taken: exact, no drift.
    Manifest(&'a Path),
    /// Nothing: the restored tree is inventoried and read.
    Nothing,
}

/// Compares `restored` against `source` (or only inventories and reads it when
/// `source` is `None`).
pub fn compare(
    source: Option<&Path>,
    restored: &Path,
    opts: &CompareOptions,
) -> Result<CompareReport, CompareError> {
    compare_with(
        source.map_or(Reference::Nothing, Reference::Tree),
        restored,
        opts,
    )
}

type Entries = Box<dyn Iterator<Item = Result<Entry, WalkError>>>;

/// Compares `restored` against a reference.
pub fn compare_with(
    reference: Reference,
    restored: &Path,
    opts: &CompareOptions,
) -> Result<CompareReport, CompareError> {
    let source = match reference {
        Reference::Tree(p) => Some(p),
        _ => None,
    };
    for (side, p) in [("source", source), ("restored tree", Some(restored))] {
        if let Some(p) = p {
            std::fs::read_dir(p).map_err(|e| CompareError::Root {
                side,
                path: p.to_path_buf(),
                source: e,
            })?;
        }
    }
    let excludes = exclude_set(&opts.exclude)?;
    let src: Option<Entries> = match reference {
        Reference::Tree(p) => Some(Box::new(Walk::new(p, excludes.clone()))),
        Reference::Manifest(m) => {
            let reader =
                ManifestReader::open(m).map_err(|e| CompareError::Reference(e.to_string()))?;
            let ex = excludes.clone();
            Some(Box::new(reader.filter(move |e| {
                match (e, &ex) {
                    (Ok(e), Some(g)) => !e
                        .rel
                        .ancestors()
                        .any(|a| !a.as_os_str().is_empty() && g.is_match(a)),
                    _ => true,
                }
            })))
        }
        Reference::Nothing => None,
    };
    let source_root = source.map(Path::to_path_buf);
    std::thread::scope(|scope| {
        let pool = Pool::start(
            scope,
            worker_count(opts.threads),
            Roots {
                source_fd: source_root.as_deref().and_then(open_root),
                source: source_root,
                restored: restored.to_path_buf(),
                restored_fd: open_root(restored),
            },
            opts.deadline.clone(),
            opts.progress.clone(),
        );
        let mut c = Comparer {
            reference,
            restored_root: restored,
            opts,
            report: CompareReport::default(),
            manifest: None,
            sample: match &opts.selection {
                ContentSelection::Sample { files, seed } => Some(BottomK::new(*files, *seed)),
                _ => None,
            },
            expect: opts
                .expect
                .iter()
                .map(|p| (p.clone(), ExpectStatus::Missing))
                .collect(),
            pool,
        };
        match c.run(src, Walk::new(restored, excludes)) {
            Ok(()) => c.finish(),
            Err(e) => {
                c.pool.abort();
                Err(e)
            }
        }
    })
}

impl Comparer<'_> {
    /// The merge-join of the two walks, then the sample, then the last results.
    fn run(&mut self, mut src: Option<Entries>, mut dst: Walk) -> Result<(), CompareError> {
        if let Some(p) = &self.opts.manifest_out {
            self.manifest = Some(ManifestWriter::create(p)?);
        }
        let deadline = &self.opts.deadline;
        let mut a = next_source(&mut src, &mut self.report);
        let mut b = self.next_restored(&mut dst);
        loop {
            deadline.check()?;
            match (a.take(), b.take()) {
                (None, None) => break,
                (Some(x), None) => {
                    self.only_source(&x);
                    a = next_source(&mut src, &mut self.report);
                }
                (None, Some(y)) => {
                    self.only_restored(&y)?;
                    b = self.next_restored(&mut dst);
                }
                (Some(x), Some(y)) => match x.rel.cmp(&y.rel) {
                    std::cmp::Ordering::Less => {
                        self.only_source(&x);
                        a = next_source(&mut src, &mut self.report);
                        b = Some(y);
                    }
                    std::cmp::Ordering::Greater => {
                        self.only_restored(&y)?;
                        b = self.next_restored(&mut dst);
                        a = Some(x);
                    }
                    std::cmp::Ordering::Equal => {
                        self.both(&x, &y)?;
                        a = next_source(&mut src, &mut self.report);
                        b = self.next_restored(&mut dst);
                    }
                },
            }
        }
        if let Some(sample) = self.sample.take() {
            for (rel, expected, size) in sample.into_sorted() {
                deadline.check()?;
                self.submit(rel, expected, size, Handles::default())?;
            }
        }
        if let Some(p) = &self.opts.progress {
            p.walk_done
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let rest = self.pool.finish().ok_or(CompareError::Worker)?;
        for d in rest {
            self.apply(d)?;
        }
        Ok(())
    }

    fn next_restored(&mut self, w: &mut Walk) -> Option<Entry> {
        let r = &mut self.report;
        loop {
            match w.next()? {
                Ok(e) if e.is_skipped_special() => {
                    r.skipped_special
                        .push(display(&e.rel), e.kind.name().into());
                }
                Ok(e) => {
                    if let Some(p) = &self.opts.progress {
                        Progress::add(&p.entries, 1);
                    }
                    if e.kind != Kind::Dir {
                        r.restored_files += 1;
                        r.restored_bytes += e.size;
                    }
                    return Some(e);
                }
                Err(WalkError { rel, message }) => r.unreadable.push(display(&rel), message),
            }
        }
    }

    fn finish(&mut self) -> Result<CompareReport, CompareError> {
        if let Some(m) = self.manifest.take() {
            let path = m.path.clone();
            let sha = m
                .finish()
                .map_err(|e| CompareError::Manifest { path, source: e })?;
            self.report.manifest_sha256 = Some(sha);
        }
        self.report.expect = std::mem::take(&mut self.expect)
            .into_iter()
            .map(|(p, status)| ExpectResult {
                path: display(&p),
                status,
            })
            .collect();
        // Content findings arrive after the walk's: keep each list in tree order.
        for f in [
            &mut self.report.mismatched,
            &mut self.report.changed_since_backup,
            &mut self.report.unreadable,
            &mut self.report.source_unreadable,
        ] {
            f.items.sort_by_cached_key(|i| from_display(&i.path));
        }
        Ok(std::mem::take(&mut self.report))
    }
}

fn next_source(w: &mut Option<Entries>, r: &mut CompareReport) -> Option<Entry> {
    let w = w.as_mut()?;
    loop {
        match w.next()? {
            Ok(e) if e.is_skipped_special() => {
                r.skipped_special
                    .push(display(&e.rel), e.kind.name().into());
            }
            Ok(e) => return Some(e),
            Err(WalkError { rel, message }) => r.source_unreadable.push(display(&rel), message),
        }
    }
}

struct Comparer<'a> {
    reference: Reference<'a>,
    restored_root: &'a Path,
    opts: &'a CompareOptions,
    report: CompareReport,
    manifest: Option<ManifestWriter>,
    sample: Option<BottomK>,
    expect: BTreeMap<PathBuf, ExpectStatus>,
    pool: Pool,
}
