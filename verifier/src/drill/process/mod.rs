//! Child processes of a drill (restore tools, runbook steps, checks).
//!
//! Each runs in its own process group with a minimal environment, under the
//! drill's deadline; on timeout or cancel the whole group is killed (TERM, then
//! KILL), and after a normal exit any stragglers left in the group are killed
//! too, so nothing outlives the drill. Output is captured with bounded memory:
//! the first bytes of stdout (for tools that answer in JSON) and the tail of
//! both streams (for the record).
//!
//! The parts: this file runs a step ([`run_step`]) and says how it ended;
//! `isolation.rs` is what a job asks for its steps (another account, no
//! network, a PID namespace, no ambient capabilities); `read_only.rs` runs a
//! step that cannot write to given directories.

mod isolation;
mod read_only;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::drill::deadline::{Deadline, Stop};
use isolation::contained;

pub use isolation::{Isolation, RunAs, has_ambient_caps, without_caps};
pub use read_only::{ReadOnlyRefused, run_read_only};

/// The PATH children get; nothing else is inherited unless passed explicitly.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Every process a drill starts carries this in its environment, and so do
/// its children: what is left of a drill can be told from anybody else's
/// processes when its sandbox is removed.
pub const STEP_MARKER: (&str, &str) = ("RESTORE_VERIFIER_STEP", "1");
/// How much of each stream's end is kept for the record.
pub const TAIL: usize = 4096;

#[derive(Debug, Clone)]
pub struct StepOptions {
    pub cwd: PathBuf,
    /// Added to PATH, LANG and HOME (= `cwd`).
    pub env: Vec<(OsString, OsString)>,
    /// Keep up to this many leading bytes of stdout (0: tail only).
    pub keep_stdout: usize,
    /// Run as this (uid, gid) instead of the current user.
    pub run_as: Option<(u32, u32)>,
    /// Run in a new network namespace: no interface but a down loopback, so
    /// no TCP or UDP at all (Unix sockets on the filesystem still work).
    pub no_network: bool,
    /// Run without the agent's ambient capabilities (a service given
    /// CAP_DAC_READ_SEARCH to read every source file must not hand it to a
    /// runbook, a check or a database server running a dump's SQL).
    pub drop_caps: bool,
    /// Run in a new PID namespace: when the step ends, everything it started
    /// ends with it, even what left its process group (`setsid`, daemons).
    /// Set for a job's isolated steps.
    pub contained: bool,
    /// Send stderr to this file (whole, for tools whose every error matters)
    /// instead of keeping only its tail.
    pub stderr_file: Option<PathBuf>,
    /// Bytes written to the child's stdin (else stdin is /dev/null).
    pub stdin: Option<Vec<u8>>,
    /// A file the agent opens (with its own rights) as the child's stdin.
    pub stdin_file: Option<PathBuf>,
}

impl StepOptions {
    pub fn in_dir(cwd: &Path) -> StepOptions {
        StepOptions {
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            keep_stdout: 0,
            run_as: None,
            no_network: false,
            contained: false,
            drop_caps: false,
            stderr_file: None,
            stdin: None,
            stdin_file: None,
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub duration: Duration,
    /// Leading stdout bytes, up to `keep_stdout`.
    pub stdout: Vec<u8>,
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// The first bytes of stderr, when there was more than its tail holds: a
    /// tool often names the cause early and then complains of every file.
    pub stderr_head: String,
}

impl StepOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// What was kept of stderr: its head (when it is not also the tail) and
    /// its tail, for finding a cause.
    pub fn stderr_seen(&self) -> String {
        if self.stderr_head.is_empty() {
            self.stderr_tail.clone()
        } else {
            format!("{}\n{}", self.stderr_head, self.stderr_tail)
        }
    }

    /// The last lines of stderr (or stdout), for a reason.
    pub fn last_words(&self) -> String {
        let src = if self.stderr_tail.trim().is_empty() {
            &self.stdout_tail
        } else {
            &self.stderr_tail
        };
        let lines: Vec<&str> = src.lines().filter(|l| !l.trim().is_empty()).collect();
        // A Python tool's traceback: its exception line says what happened.
        if let Some(e) = python_exception(src) {
            return e;
        }
        // A crashed Go tool (or a traceback cut before its exception line)
        // ends with a stack trace; its first line says more.
        if let Some(i) = lines
            .iter()
            .position(|l| l.starts_with("panic:") || l.starts_with("Traceback"))
        {
            return lines[i..(i + 2).min(lines.len())].join(" | ");
        }
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    pub fn status_text(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown exit status".into(),
        }
    }
}

/// The exception line of the last Python traceback in `text` (the first
/// line at the margin after its indented frames), without the exception's
/// module: `borg.helpers.errors.IntegrityError: Data integrity error: …`
/// → `IntegrityError: Data integrity error: …`. Of chained exceptions, the
/// one that ended the program (`KeyError: 2` handled, then `FileNotFoundError:
/// … data/0/2` raised). Found even when the tail starts inside the frames.
/// `None` when there is no traceback, or it is cut before its exception line.
pub(crate) fn python_exception(text: &str) -> Option<String> {
    let mut in_frames = false;
    let mut last = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("Traceback (most recent call last)") || line.starts_with("  File \"") {
            in_frames = true;
        } else if line.starts_with([' ', '\t']) {
            // A frame's source line, or the `^^^^` under it.
        } else if in_frames {
            in_frames = false;
            last = Some(line);
        }
    }
    last.map(without_module)
}

/// `a.b.Error: message` → `Error: message`; any other line as it is.
fn without_module(line: &str) -> String {
    let (name, rest) = match line.split_once(": ") {
        Some((n, r)) => (n, Some(r)),
        None => (line, None),
    };
    let is_name = !name.is_empty()
        && name.split('.').all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
    if !is_name {
        return line.to_string();
    }
    let short = name.rsplit('.').next().unwrap_or(name);
    match rest {
        Some(r) => format!("{short}: {r}"),
        None => short.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot run {program}: {source}; is it installed and on PATH ({SAFE_PATH})?")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// Stopped by the deadline or cancel; the group was killed.
    #[error("{stop}")]
    Stopped {
        stop: Stop,
        outcome: Box<StepOutcome>,
    },
}

struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

fn capture(
    mut r: impl Read + Send + 'static,
    keep: usize,
    tx: mpsc::Sender<(bool, Capture)>,
    is_out: bool,
) {
    std::thread::spawn(move || {
        let mut c = Capture {
            head: Vec::new(),
            tail: VecDeque::with_capacity(TAIL),
            total: 0,
        };
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    c.total += n;
                    let room = keep.saturating_sub(c.head.len());
                    c.head.extend_from_slice(&buf[..n.min(room)]);
                    for b in &buf[..n] {
                        if c.tail.len() == TAIL {
                            c.tail.pop_front();
                        }
                        c.tail.push_back(*b);
                    }
                }
            }
        }
        let _ = tx.send((is_out, c));
    });
}

/// True once the child `pid` has ended; it stays a zombie (not reaped), so
/// its pid, and its process group's id, cannot be reused yet.
fn ended(pid: u32) -> bool {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return true;
    };
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match waitid(WaitId::Pid(pid), opts) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        // Not our child any more (already reaped): nothing to wait for.
        Err(_) => true,
    }
}

fn kill_group(pgid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Runs `argv` to completion (or until the deadline) in its own process group.
pub fn run_step(
    argv: &[String],
    opts: &StepOptions,
    deadline: &Deadline,
) -> Result<StepOutcome, StepError> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let program = argv.first().cloned().unwrap_or_default();
    let mut wrapped: Vec<String> = if opts.contained || opts.no_network {
        contained(argv, opts.run_as, opts.no_network)
    } else {
        argv.to_vec()
    };
    if opts.drop_caps && has_ambient_caps() {
        wrapped = without_caps(&wrapped);
    }
    let argv = &wrapped[..];
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&opts.cwd)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", &opts.cwd)
        .env(STEP_MARKER.0, STEP_MARKER.1)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(match (&opts.stdin, &opts.stdin_file) {
            (Some(_), _) => Stdio::piped(),
            (None, Some(p)) => {
                Stdio::from(std::fs::File::open(p).map_err(|e| StepError::Spawn {
                    program: format!("{program} < {}", p.display()),
                    source: e,
                })?)
            }
            (None, None) => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .process_group(0);
    match &opts.stderr_file {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| StepError::Spawn {
                program: program.clone(),
                source: e,
            })?;
            cmd.stderr(f);
        }
        None => {
            cmd.stderr(Stdio::piped());
        }
    }
    if let (false, false, Some((u, g))) = (opts.contained, opts.no_network, opts.run_as) {
        cmd.uid(u).gid(g);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| StepError::Spawn {
        program: program.clone(),
        source: e,
    })?;
    let pgid = child.id();
    if let (Some(mut w), Some(data)) = (child.stdin.take(), opts.stdin.clone()) {
        // A writer thread: a child that never reads must not block us.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    capture(
        child.stdout.take().expect("piped"),
        opts.keep_stdout,
        tx.clone(),
        true,
    );
    let mut streams = 1;
    if let Some(err) = child.stderr.take() {
        capture(err, TAIL, tx, false);
        streams += 1;
    }
    let mut stopped = None;
    let mut grace: Option<Instant> = None;
    loop {
        if ended(pgid) {
            break;
        }
        match grace {
            None => {
                if let Err(stop) = deadline.check() {
                    stopped = Some(stop);
                    kill_group(pgid, rustix::process::Signal::TERM);
                    grace = Some(Instant::now());
                }
            }
            Some(t) if t.elapsed() > Duration::from_secs(2) => {
                kill_group(pgid, rustix::process::Signal::KILL);
                break;
            }
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Anything the step left running in its group goes with it. The leader is
    // not reaped yet, so the group's id cannot have been reused.
    kill_group(pgid, rustix::process::Signal::KILL);
    let status = child.wait().ok();
    let mut outcome = StepOutcome {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        duration: started.elapsed(),
        stdout: Vec::new(),
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        stderr_head: String::new(),
    };
    // A grandchild that left the group may hold the pipes open: do not wait forever.
    for _ in 0..streams {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((true, c)) => {
                outcome.stdout = c.head;
                outcome.stdout_tail =
                    String::from_utf8_lossy(&c.tail.into_iter().collect::<Vec<u8>>()).into_owned();
            }
            Ok((false, c)) => {
                if c.total > TAIL {
                    outcome.stderr_head = String::from_utf8_lossy(&c.head).into_owned();
                }
                outcome.stderr_tail =
                    String::from_utf8_lossy(&c.tail.into_iter().collect::<Vec<u8>>()).into_owned();
            }
            Err(_) => break,
        }
    }
    if let Some(p) = &opts.stderr_file
        && let Ok(bytes) = std::fs::read(p)
    {
        let from = bytes.len().saturating_sub(TAIL);
        outcome.stderr_tail = String::from_utf8_lossy(&bytes[from..]).into_owned();
        outcome.stderr_head = if from > 0 {
            String::from_utf8_lossy(&bytes[..TAIL.min(from)]).into_owned()
        } else {
            String::new()
        };
    }
    match stopped {
        Some(stop) => Err(StepError::Stopped {
            stop,
            outcome: Box::new(outcome),
        }),
        None => Ok(outcome),
    }
}

#[cfg(test)]
mod tests;
