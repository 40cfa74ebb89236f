//! Content checks: the kernel that streams a restored file (and its source) in
//! large chunks, hashing the restored bytes and comparing them with the source
//! bytes directly, and a pool that runs it on every core while the walk goes on.
//!
//! The pool hands results back in submission order (a bounded reorder window),
//! so findings and the run manifest come out in tree order and memory stays
//! bounded however many files there are.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::drill::deadline::{Deadline, Stop};
use crate::progress::Progress;
use crate::tree::walk::{DirFd, Handle, open_file};

/// Read size. Two buffers of this size stay in a core's L2 cache, so the bytes
/// read are hashed and compared while still hot.
pub const CHUNK: usize = 256 << 10;

/// How many results may wait for an earlier, slower file before the walk pauses,
/// at most. Each waiting file may hold its two directories open, so the window
/// also stays within the process's limit on open files (see [`window`]).
const WINDOW: u64 = 4096;

/// Files handed to the workers and not yet taken back, across every compare
/// in the process (drills run side by side).
static WAITING: AtomicU64 = AtomicU64::new(0);

/// A compare may always have this many files waiting, whatever the others hold,
/// so none waits for another's files to finish.
const OWN_MIN: u64 = 16;

/// Files are handed to workers in batches of this many files or bytes, so
/// small files do not cost a thread wake-up each.
const BATCH_FILES: usize = 64;
const BATCH_BYTES: u64 = 4 << 20;

/// The result of reading one file's bytes.
#[derive(Debug)]
pub struct ContentOutcome {
    pub bytes: u64,
    /// SHA-256 of the restored bytes.
    pub sha256: String,
    /// Offset of the first differing byte; `None` when equal (or no source).
    pub first_diff: Option<u64>,
}

#[derive(Debug)]
pub enum ContentError {
    Source(io::Error),
    Restored(io::Error),
    Stopped(Stop),
}

/// Reusable read buffers, one pair per worker.
pub struct Buffers {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            a: vec![0; CHUNK],
            b: vec![0; CHUNK],
        }
    }
}

/// Reads until `buf` is full, end of file, or `enough` bytes (the size the walk
/// saw, so a small file costs one read instead of two).
pub(crate) fn fill(r: &mut impl Read, buf: &mut [u8], enough: usize) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() && (n < enough || n == 0 && enough == 0) {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams the restored file (and the source, when given) in large chunks, hashes
/// the restored bytes and compares them with the source bytes directly.
pub fn content_check(
    source: Option<&Path>,
    restored: &Path,
    deadline: &Deadline,
) -> Result<ContentOutcome, ContentError> {
    check_with(
        source,
        restored,
        deadline,
        &mut Buffers::default(),
        None,
        None,
    )
}

/// [`content_check`] with the caller's buffers, counting bytes into `progress`.
/// `size` is the size the walk saw: reading stops there instead of asking for
/// one more read to see the end of the file.
pub fn check_with(
    source: Option<&Path>,
    restored: &Path,
    deadline: &Deadline,
    bufs: &mut Buffers,
    progress: Option<&Progress>,
    size: Option<u64>,
) -> Result<ContentOutcome, ContentError> {
    let dst = open_file(&Handle::Path, None, restored, restored).map_err(ContentError::Restored)?;
    let src = match source {
        Some(p) => Some(open_file(&Handle::Path, None, p, p).map_err(ContentError::Source)?),
        None => None,
    };
    check_files(src.as_ref(), &dst, deadline, bufs, progress, size)
}

/// The kernel of [`check_with`], on files already open.
fn check_files(
    mut src: Option<&File>,
    mut dst: &File,
    deadline: &Deadline,
    bufs: &mut Buffers,
    progress: Option<&Progress>,
    size: Option<u64>,
) -> Result<ContentOutcome, ContentError> {
    let (a, b) = (&mut bufs.a, &mut bufs.b);
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    let mut first_diff = None;
    loop {
        deadline.check().map_err(ContentError::Stopped)?;
        // Past the walk's size (or without one) read to the end of the file.
        let enough = match size {
            Some(s) if s >= offset => usize::try_from(s - offset).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let n = fill(&mut dst, a, enough).map_err(ContentError::Restored)?;
        hasher.update(&a[..n]);
        if let Some(s) = &mut src
            && first_diff.is_none()
        {
            let m = fill(s, b, enough).map_err(ContentError::Source)?;
            let k = n.min(m);
            if a[..k] != b[..k] {
                let i = a[..k].iter().zip(&b[..k]).position(|(x, y)| x != y);
                first_diff = Some(offset + i.unwrap_or(k) as u64);
            } else if n != m {
                first_diff = Some(offset + k as u64);
            }
        }
        offset += n as u64;
        if let Some(p) = progress {
            Progress::add(&p.bytes_done, n as u64);
        }
        if n < a.len() {
            break;
        }
    }
    Ok(ContentOutcome {
        bytes: offset,
        sha256: hex::encode(hasher.finalize()),
        first_diff,
    })
}

/// One file to content-check.
pub(crate) struct Job {
    seq: u64,
    pub rel: PathBuf,
    /// The size the walk saw.
    size: u64,
    /// The hash a manifest expects, when comparing against one.
    pub expected: Option<String>,
    /// How to reach the file on each side (source, restored).
    handles: Handles,
}

/// How to reach a file's bytes on each side (source, restored).
pub(crate) type Handles = (Handle, Handle);

/// A finished check, with the source's mtime when the bytes differ (drift rules
/// need it).
pub(crate) struct Done {
    seq: u64,
    pub job: Job,
    pub result: Result<ContentOutcome, ContentError>,
    /// For a file whose bytes differ: the times drift is judged by, read
    /// after the check.
    pub times: Option<DiffTimes>,
}

/// The times of a file whose content differs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiffTimes {
    pub source_mtime: SystemTime,
    pub source_ctime: SystemTime,
    pub restored_mtime: SystemTime,
}

/// Where the workers find files.
#[derive(Clone)]
pub(crate) struct Roots {
    pub source: Option<PathBuf>,
    pub restored: PathBuf,
    /// The roots, open: files without a directory from the walk are opened
    /// beneath them.
    pub source_fd: Option<DirFd>,
    pub restored_fd: Option<DirFd>,
}

/// The submitting side of the pool; lives on the walking thread.
pub(crate) struct Pool {
    jobs: Option<SyncSender<Vec<Job>>>,
    done: Receiver<Vec<Done>>,
    batch: Vec<Job>,
    batch_bytes: u64,
    waiting: BTreeMap<u64, Done>,
    next_seq: u64,
    next_out: u64,
    window: u64,
    abort: Arc<AtomicBool>,
}

/// The reorder window, shared by every compare in the process: [`WINDOW`], or
/// less when the limit on open files is low. Each waiting file may hold two
/// directories open, so waiting files use at most half of the limit; the rest
/// is for the walks' open directories, the workers' files and everything else.
fn window() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    (limit / 4).clamp(OWN_MIN, WINDOW)
}

/// Number of workers: `threads`, or one per core when 0.
pub fn worker_count(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Pool {
    /// Starts `workers` threads in `scope`.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        workers: usize,
        roots: Roots,
        deadline: Deadline,
        progress: Option<Arc<Progress>>,
    ) -> Pool {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Vec<Job>>(workers * 4);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = mpsc::channel::<Vec<Done>>();
        let abort = Arc::new(AtomicBool::new(false));
        for _ in 0..workers.max(1) {
            let (rx, tx) = (jobs_rx.clone(), done_tx.clone());
            let (roots, deadline) = (roots.clone(), deadline.clone());
            let (abort, progress) = (abort.clone(), progress.clone());
            scope.spawn(move || work(rx, tx, roots, deadline, abort, progress));
        }
        Pool {
            jobs: Some(jobs_tx),
            done: done_rx,
            batch: Vec::with_capacity(BATCH_FILES),
            batch_bytes: 0,
            waiting: BTreeMap::new(),
            next_seq: 0,
            next_out: 0,
            window: window(),
            abort,
        }
    }

    /// Queues a file; returns the results now ready, in order. Blocks while the
    /// window of unfinished files is full.
    pub fn submit(
        &mut self,
        rel: PathBuf,
        expected: Option<String>,
        size: u64,
        handles: Handles,
    ) -> Vec<Done> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.batch.push(Job {
            seq,
            rel,
            size,
            expected,
            handles,
        });
        self.batch_bytes += size;
        WAITING.fetch_add(1, Ordering::Relaxed);
        let mut ready = Vec::new();
        if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.flush();
        }
        loop {
            let mine = self.next_seq - self.next_out;
            let all = WAITING.load(Ordering::Relaxed);
            if mine <= OWN_MIN || mine <= self.window && all <= self.window {
                break;
            }
            self.flush();
            if !self.wait_one(&mut ready) {
                break;
            }
        }
        while let Ok(batch) = self.done.try_recv() {
            self.keep(batch);
        }
        self.take_ready(&mut ready);
        ready
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_FILES));
        self.batch_bytes = 0;
        if let Some(tx) = &self.jobs {
            // A send fails only when every worker is gone; `finish` reports it.
            let _ = tx.send(batch);
        }
    }

    fn keep(&mut self, batch: Vec<Done>) {
        for d in batch {
            self.waiting.insert(d.seq, d);
        }
    }

    /// Waits for every queued file; returns the remaining results in order, or
    /// `None` when a worker died and results are missing.
    pub fn finish(&mut self) -> Option<Vec<Done>> {
        self.flush();
        self.jobs = None;
        let mut ready = Vec::new();
        while self.next_out < self.next_seq {
            if !self.wait_one(&mut ready) {
                return None;
            }
        }
        Some(ready)
    }

    /// Stops the workers without waiting for queued files.
    pub fn abort(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.batch.clear();
        self.jobs = None;
    }

    fn wait_one(&mut self, ready: &mut Vec<Done>) -> bool {
        match self.done.recv() {
            Ok(batch) => {
                self.keep(batch);
                self.take_ready(ready);
                true
            }
            Err(_) => false,
        }
    }

    fn take_ready(&mut self, ready: &mut Vec<Done>) {
        while let Some(d) = self.waiting.remove(&self.next_out) {
            self.next_out += 1;
            WAITING.fetch_sub(1, Ordering::Relaxed);
            ready.push(d);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Files never taken back (an aborted compare) no longer wait.
        WAITING.fetch_sub(self.next_seq - self.next_out, Ordering::Relaxed);
    }
}

fn work(
    jobs: Arc<Mutex<Receiver<Vec<Job>>>>,
    done: Sender<Vec<Done>>,
    roots: Roots,
    deadline: Deadline,
    abort: Arc<AtomicBool>,
    progress: Option<Arc<Progress>>,
) {
    let mut bufs = Buffers::default();
    loop {
        let batch = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(batch) = batch else { return };
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            results.push(check_one(
                job,
                &roots,
                &deadline,
                &mut bufs,
                progress.as_deref(),
            ));
        }
        if done.send(results).is_err() {
            return;
        }
    }
}

fn check_one(
    mut job: Job,
    roots: &Roots,
    deadline: &Deadline,
    bufs: &mut Buffers,
    progress: Option<&Progress>,
) -> Done {
    let dst = roots.restored.join(&job.rel);
    let src = roots.source.as_ref().map(|s| s.join(&job.rel));
    let (src_handle, dst_handle) = std::mem::take(&mut job.handles);
    let result = open_file(&dst_handle, roots.restored_fd.as_ref(), &job.rel, &dst)
        .map_err(ContentError::Restored)
        .and_then(|d| match &src {
            Some(p) => open_file(&src_handle, roots.source_fd.as_ref(), &job.rel, p)
                .map(|s| (Some(s), d))
                .map_err(ContentError::Source),
            None => Ok((None, d)),
        })
        .and_then(|(s, d)| check_files(s.as_ref(), &d, deadline, bufs, progress, Some(job.size)));
    let times = match (&result, &src) {
        (Ok(out), Some(s)) if out.first_diff.is_some() => diff_times(s, &dst),
        _ => None,
    };
    if let Some(p) = progress {
        Progress::add(&p.files_done, 1);
    }
    Done {
        seq: job.seq,
        job,
        result,
        times,
    }
}

fn diff_times(source: &Path, restored: &Path) -> Option<DiffTimes> {
    use std::os::unix::fs::MetadataExt;
    let s = std::fs::symlink_metadata(source).ok()?;
    let r = std::fs::symlink_metadata(restored).ok()?;
    let ctime = std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(
        u64::try_from(s.ctime()).ok()?,
        u32::try_from(s.ctime_nsec()).ok()?,
    ))?;
    Some(DiffTimes {
        source_mtime: s.modified().ok()?,
        source_ctime: ctime,
        restored_mtime: r.modified().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn check(src: &[u8], dst: &[u8], size: Option<u64>) -> ContentOutcome {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::write(&a, src).unwrap();
        std::fs::write(&b, dst).unwrap();
        let mut bufs = Buffers::default();
        check_with(Some(&a), &b, &Deadline::none(), &mut bufs, None, size).unwrap()
    }

    #[test]
    fn the_size_hint_never_hides_bytes() {
        for len in [0, 1, 500, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sha = hex::encode(Sha256::digest(&data));
            for hint in [None, Some(len as u64)] {
                let out = check(&data, &data, hint);
                assert_eq!((out.bytes, &out.sha256), (len as u64, &sha), "len {len}");
                assert_eq!(out.first_diff, None);
            }
            // A restored file longer than the walk saw is read to its end.
            let mut longer = data.clone();
            longer.extend_from_slice(b"tail");
            let out = check(&longer, &longer, Some(len as u64));
            assert_eq!(out.bytes, len as u64 + 4);
            assert_eq!(out.sha256, hex::encode(Sha256::digest(&longer)));
            // A source cut short is a difference where it ends.
            if len > 0 {
                let out = check(&data[..len - 1], &data, Some(len as u64));
                assert_eq!(out.first_diff, Some(len as u64 - 1), "len {len}");
            }
        }
    }
}
