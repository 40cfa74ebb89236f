//! A progress bar on the terminal for long drills and compares: phase, files and
//! bytes verified, rate and ETA. Nothing is drawn when stderr is not a terminal
//! or with `--quiet`; the engine's counters cost the same either way.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use verifier::{Phase, Progress};

/// A bar that follows a [`Progress`] until dropped.
pub struct Bar {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bar {
    /// Starts a bar labelled `label`, or `None` when there is no terminal to
    /// draw on (or `quiet`).
    pub fn start(label: &str, quiet: bool) -> Option<Bar> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, label) = (progress.clone(), stop.clone(), label.to_string());
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || draw(&p, &s, &label))
            .ok()?;
        Some(Bar {
            progress,
            stop,
            thread: Some(thread),
        })
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The counters of an optional bar, for the engine.
pub fn counters(bar: &Option<Bar>) -> Option<Arc<Progress>> {
    bar.as_ref().map(Bar::progress)
}

fn draw(p: &Progress, stop: &AtomicBool, label: &str) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
    bar.set_prefix(label.to_string());
    let spinner = ProgressStyle::with_template("{prefix:.bold} {spinner} {msg} [{elapsed}]")
        .expect("valid template");
    let bytes = ProgressStyle::with_template(
        "{prefix:.bold} {msg} [{elapsed}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let mut shown = None;
    while !stop.load(Ordering::Relaxed) {
        let s = p.snapshot();
        if s.phase == Phase::Verifying {
            if shown != Some(Phase::Verifying) {
                bar.set_style(bytes.clone());
                bar.reset_eta();
            }
            bar.set_length(s.bytes_queued.max(s.bytes_done));
            bar.set_position(s.bytes_done);
            let listing = if s.walk_done {
                String::new()
            } else {
                format!(", listing ({} entries so far)", s.entries)
            };
            bar.set_message(format!(
                "verifying {}/{} files{listing}",
                s.files_done, s.files_queued
            ));
        } else {
            if shown != Some(s.phase) {
                bar.set_style(spinner.clone());
            }
            bar.set_message(s.phase.name());
            bar.tick();
        }
        shown = Some(s.phase);
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
