//! The compare engine: inventory of every entry, content of all or a selection of
//! files, with live-source drift tolerance (DESIGN.md "Verification semantics").
//!
//! Two sorted walks are merge-joined, so memory does not grow with the number of
//! files. Differences are findings collected into a [`CompareReport`]; only
//! "could not compare at all" is an `Err`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::drill::deadline::{Deadline, Stop};
use crate::evidence::record::{ExpectResult, ExpectStatus, Findings};
use crate::progress::Progress;
use crate::tree::content::{ContentError, Done, Handles, Pool, Roots, worker_count};
use crate::tree::drift::{Drift, Judgement, content_change, inode_change};
use crate::tree::manifest::ManifestReader;
use crate::tree::metadata::MetadataSet;
use crate::tree::path::{display, from_display};
use crate::tree::select::{BottomK, ContentSelection, in_slice};
use crate::tree::walk::{Entry, Handle, Kind, Walk, WalkError, open_root};

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

impl Comparer<'_> {
    fn after_backup(&self, t: SystemTime) -> bool {
        self.opts.drift.is_some_and(|d| t > d.backup_time)
    }

    fn set_expect(&mut self, rel: &Path, status: ExpectStatus) {
        if let Some(s) = self.expect.get_mut(rel) {
            *s = status;
        }
    }

    fn only_source(&mut self, x: &Entry) {
        // Created after the backup: modified after it, and born after it where
        // the filesystem says when. A busy old file missing from the backup
        // (modified after T, but born before) is missing, not new.
        let new = self.after_backup(x.mtime) && x.btime.is_none_or(|b| self.after_backup(b));
        if new {
            self.report
                .new_since_backup
                .push(display(&x.rel), x.kind.name().into());
            self.set_expect(&x.rel, ExpectStatus::ChangedSinceBackup);
        } else {
            self.report
                .missing
                .push(display(&x.rel), x.kind.name().into());
        }
    }

    fn only_restored(&mut self, y: &Entry) -> Result<(), CompareError> {
        if !matches!(self.reference, Reference::Nothing) {
            self.report
                .extra
                .push(display(&y.rel), y.kind.name().into());
            return Ok(());
        }
        // No source: an inventory of what was restored, content read per policy.
        if y.kind == Kind::Dir {
            self.report.dirs_compared += 1;
            return Ok(());
        }
        self.report.files_compared += 1;
        self.set_expect(&y.rel, ExpectStatus::Matched);
        if y.kind == Kind::File {
            self.consider_content(&y.rel, None, y.size, (Handle::Path, y.handle.clone()))?;
        }
        Ok(())
    }

    /// A difference in what `x` holds, against the restored `y`.
    fn differ(&mut self, x: &Entry, y: &Entry, what: String) {
        let j = content_change(self.opts.drift, x.mtime, x.ctime, y.mtime);
        self.differ_at(&x.rel, what, j);
    }

    fn differ_at(&mut self, rel: &Path, what: String, judgement: Judgement) {
        match judgement {
            Judgement::Drift => {
                self.report.changed_since_backup.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::ChangedSinceBackup);
            }
            Judgement::Corrupt => {
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
            Judgement::OlderThanBackup => {
                let what = format!(
                    "{what}; the source's version is older than the backup's start, so the backup should hold it"
                );
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
            Judgement::NewerInBackup => {
                let what =
                    format!("{what}; the backup's modification time is later than the source's");
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
        }
    }

    fn both(&mut self, x: &Entry, y: &Entry) -> Result<(), CompareError> {
        if x.kind == Kind::Dir {
            self.report.dirs_compared += 1;
        } else {
            self.report.files_compared += 1;
        }
        self.set_expect(&x.rel, ExpectStatus::Matched);
        if x.kind != y.kind {
            let what = format!(
                "type: {} in source, {} restored",
                x.kind.name(),
                y.kind.name()
            );
            self.differ(x, y, what);
            return Ok(());
        }
        match x.kind {
            Kind::Symlink if x.target != y.target => {
                let what = format!(
                    "symlink target: {} in source, {} restored",
                    x.target.as_deref().map(display).unwrap_or_default(),
                    y.target.as_deref().map(display).unwrap_or_default()
                );
                self.differ(x, y, what);
                return Ok(());
            }
            Kind::File if x.size != y.size => {
                let what = format!("size: {} bytes in source, {} restored", x.size, y.size);
                self.differ(x, y, what);
                return Ok(());
            }
            _ => {}
        }
        // A metadata difference is reported and the content is still checked:
        // a chmod after the backup must not hide rot in the file.
        if self.opts.metadata.mode && x.kind != Kind::Symlink && x.mode != y.mode {
            // chmod changes ctime, not mtime: judge mode drift by ctime.
            let what = format!("mode: {:04o} in source, {:04o} restored", x.mode, y.mode);
            let j = inode_change(self.opts.drift, x.ctime);
            self.differ_at(&x.rel, what, j);
        } else if let Reference::Tree(source_root) = self.reference {
            self.other_metadata(source_root, x, y);
        }
        if x.kind == Kind::File {
            self.consider_content(
                &x.rel,
                x.sha256.as_deref(),
                y.size,
                (x.handle.clone(), y.handle.clone()),
            )?;
        }
        Ok(())
    }

    /// Owner, ACLs and attributes, as the job asks; changes to them change
    /// the inode (ctime), so drift is judged as for the mode. The content is
    /// still checked.
    fn other_metadata(&mut self, source_root: &Path, x: &Entry, y: &Entry) {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT, get, xattrs};
        let m = self.opts.metadata;
        let j = inode_change(self.opts.drift, x.ctime);
        if m.owner && (x.uid, x.gid) != (y.uid, y.gid) {
            let what = format!(
                "owner: {}:{} in source, {}:{} restored",
                x.uid, x.gid, y.uid, y.gid
            );
            self.differ_at(&x.rel, what, j);
            return;
        }
        if x.kind == Kind::Symlink || !(m.acl || m.xattr) {
            return;
        }
        let (src, dst) = (source_root.join(&x.rel), self.restored_root.join(&y.rel));
        if m.acl {
            for name in [ACL_ACCESS, ACL_DEFAULT] {
                let name = std::ffi::OsStr::new(name);
                let Some((a, b)) = self.read_both(x, get(&src, name), get(&dst, name), "ACL")
                else {
                    return;
                };
                if a != b {
                    let kind = if name == ACL_ACCESS {
                        "access"
                    } else {
                        "default"
                    };
                    let state = |v: &Option<Vec<u8>>| if v.is_some() { "set" } else { "none" };
                    let what = format!(
                        "acl: the {kind} ACL differs ({} in source, {} restored)",
                        state(&a),
                        state(&b)
                    );
                    self.differ_at(&x.rel, what, j);
                    return;
                }
            }
        }
        if m.xattr {
            let Some((a, b)) = self.read_both(x, xattrs(&src), xattrs(&dst), "attributes") else {
                return;
            };
            if a != b {
                let names = |v: &[(std::ffi::OsString, Vec<u8>)]| {
                    v.iter()
                        .map(|(n, _)| n.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let what = if names(&a) == names(&b) {
                    format!("xattr: a value differs ({})", names(&a))
                } else {
                    format!("xattr: [{}] in source, [{}] restored", names(&a), names(&b))
                };
                self.differ_at(&x.rel, what, j);
            }
        }
    }

    /// Both sides' reading of one piece of metadata, or `None` with the side
    /// that could not be read reported as unreadable.
    fn read_both<T>(
        &mut self,
        x: &Entry,
        source: io::Result<T>,
        restored: io::Result<T>,
        what: &str,
    ) -> Option<(T, T)> {
        match (source, restored) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (Err(e), _) => {
                let why = format!("cannot read its {what}: {e}");
                self.report.source_unreadable.push(display(&x.rel), why);
                None
            }
            (_, Err(e)) => {
                let why = format!("cannot read its {what}: {e}");
                self.report.unreadable.push(display(&x.rel), why);
                None
            }
        }
    }

    /// Content-checks now (all, rotate, canary) or offers to the sample.
    fn consider_content(
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
    fn submit(
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
    fn apply(&mut self, done: Done) -> Result<(), CompareError> {
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

/// Writes the run manifest (one JSON object per content-checked file) and hashes
/// it as it goes, so the record can pin the manifest by its SHA-256.
struct ManifestWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
}

#[derive(Serialize)]
struct ManifestLine<'a> {
    path: &'a str,
    size: u64,
    sha256: &'a str,
    #[serde(rename = "match")]
    matched: bool,
}

impl ManifestWriter {
    fn create(path: &Path) -> Result<ManifestWriter, CompareError> {
        let err = |e| CompareError::Manifest {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = File::create(path).map_err(err)?;
        Ok(ManifestWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(f),
            hasher: Sha256::new(),
        })
    }

    fn line(&mut self, rel: &Path, size: u64, sha256: &str, matched: bool) -> io::Result<()> {
        let p = display(rel);
        let mut line = serde_json::to_vec(&ManifestLine {
            path: &p,
            size,
            sha256,
            matched,
        })?;
        line.push(b'\n');
        self.hasher.update(&line);
        self.out.write_all(&line)
    }

    fn finish(mut self) -> io::Result<String> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}
