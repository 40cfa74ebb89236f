//! Live counters of a drill or compare, for a progress display.
//!
//! The engine only bumps atomics; whoever shows progress (a terminal bar in the
//! CLI) reads them on its own clock, so an unwatched run pays a few relaxed adds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a drill is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Starting,
    Locating,
    Restoring,
    Verifying,
    Checking,
    Done,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Locating => "locating the backup",
            Phase::Restoring => "restoring",
            Phase::Verifying => "verifying",
            Phase::Checking => "running checks",
            Phase::Done => "done",
        }
    }
}

/// Counters shared between the engine and a display.
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<Phase>,
    /// Entries walked on the restored side.
    pub entries: AtomicU64,
    /// Files (and their bytes) selected for a content check so far.
    pub files_queued: AtomicU64,
    pub bytes_queued: AtomicU64,
    /// Files (and bytes) content-checked so far.
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Set when the walk is over, so `bytes_queued` is the final total.
    pub walk_done: AtomicBool,
}

/// A consistent-enough reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub phase: Phase,
    pub entries: u64,
    pub files_queued: u64,
    pub bytes_queued: u64,
    pub files_done: u64,
    pub bytes_done: u64,
    pub walk_done: bool,
}

impl Progress {
    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        if phase == Phase::Verifying {
            for c in [
                &self.entries,
                &self.files_queued,
                &self.bytes_queued,
                &self.files_done,
                &self.bytes_done,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            self.walk_done.store(false, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            entries: self.entries.load(Ordering::Relaxed),
            files_queued: self.files_queued.load(Ordering::Relaxed),
            bytes_queued: self.bytes_queued.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            walk_done: self.walk_done.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
