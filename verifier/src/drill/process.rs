//! Child processes of a drill (restore tools, runbook steps, checks).
//!
//! Each runs in its own process group with a minimal environment, under the
//! drill's deadline; on timeout or cancel the whole group is killed (TERM, then
//! KILL), and after a normal exit any stragglers left in the group are killed
//! too, so nothing outlives the drill. Output is captured with bounded memory:
//! the first bytes of stdout (for tools that answer in JSON) and the tail of
//! both streams (for the record).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::drill::deadline::{Deadline, Stop};

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

/// A directory that could not be made read-only for a step
/// ([`run_read_only`]); the step did not run.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {} read-only for {program}: {why}", path.display())]
pub struct ReadOnlyRefused {
    pub program: String,
    pub path: PathBuf,
    pub why: String,
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

/// Isolation a job asks for its restore commands and checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Run as this account.
    pub run_as: Option<RunAs>,
    /// Run without network (a new network namespace).
    pub no_network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The account `name` (or a numeric uid), looked up in the system's user
    /// database.
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        let user = match name.parse::<u32>() {
            Ok(uid) => uzers::get_user_by_uid(uid),
            Err(_) => uzers::get_user_by_name(name),
        };
        let user = user.ok_or_else(|| format!("there is no user `{name}` on this system"))?;
        Ok(RunAs {
            name: user.name().to_string_lossy().into_owned(),
            uid: user.uid(),
            gid: user.primary_group_id(),
        })
    }
}

impl Isolation {
    pub fn is_none(&self) -> bool {
        self.run_as.is_none() && !self.no_network
    }

    /// Applies this isolation to a step's options.
    pub fn apply(&self, opts: &mut StepOptions) {
        if let Some(r) = &self.run_as {
            opts.run_as = Some((r.uid, r.gid));
        }
        opts.no_network |= self.no_network;
        opts.contained |= !self.is_none();
    }

    /// What it is, for a record or a message: `as nobody, without network`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.run_as {
            parts.push(format!("as {} (uid {})", r.name, r.uid));
        }
        if self.no_network {
            parts.push("without network".to_string());
        }
        parts.join(", ")
    }

    /// Runs a probe under this isolation that enters `dir` by its full path
    /// and tests it is writable, so a system that refuses the isolation (no
    /// privilege to change user, no network namespaces) or a sandbox the
    /// account cannot reach is found before anything runs, with what to do.
    pub fn probe(&self, dir: &Path) -> Result<(), String> {
        if self.is_none() {
            return Ok(());
        }
        if let Some(r) = &self.run_as
            && rustix::process::geteuid().as_raw() != 0
            && rustix::process::geteuid().as_raw() != r.uid
        {
            return Err(format!(
                "run_as = \"{}\" needs the agent to run as root (it runs as uid {})",
                r.name,
                rustix::process::geteuid().as_raw()
            ));
        }
        let mut opts = StepOptions::in_dir(dir);
        self.apply(&mut opts);
        let argv: Vec<String> = ["sh", "-c", "cd \"$1\" && test -w .", "probe"]
            .iter()
            .map(|a| a.to_string())
            .chain([dir.display().to_string()])
            .collect();
        let probe = run_step(&argv, &opts, &Deadline::after(Duration::from_secs(30)));
        let why = match probe {
            Ok(out) if out.success() => return Ok(()),
            Ok(out) if out.last_words().is_empty() => {
                format!("{} is not writable", dir.display())
            }
            Ok(out) => out.last_words(),
            Err(e) => e.to_string(),
        };
        let hint = if why.contains("unshare") {
            "isolation runs steps in new namespaces (PID, and network for network = \"none\"): run the agent as root or allow unprivileged user namespaces (sysctl user.max_user_namespaces)"
        } else if self.run_as.is_some() {
            "the account needs search permission (x) on sandbox_dir and every directory above it"
        } else {
            "is util-linux installed?"
        };
        Err(format!(
            "cannot run a command {} in {}: {why}; {hint}",
            self.describe(),
            dir.display()
        ))
    }
}

/// The argv that runs `argv` contained: util-linux's `unshare` makes a new
/// PID namespace (its child is the step; when the step ends the kernel ends
/// everything else in it, and `--kill-child` ends the step if `unshare` is
/// killed) and, for `no_network`, a new network namespace; a user namespace
/// mapping only the caller's own ids when the agent is not root. `unshare`
/// stays in the step's process group, so the group kill and the deadline
/// still hold. `setpriv` then drops to `run_as`.
fn contained(argv: &[String], run_as: Option<(u32, u32)>, no_network: bool) -> Vec<String> {
    let euid = rustix::process::geteuid().as_raw();
    let mut out = vec!["unshare".to_string()];
    if euid != 0 {
        out.push("--map-current-user".into());
    }
    out.extend(["--pid".into(), "--fork".into(), "--kill-child".into()]);
    if no_network {
        out.push("--net".into());
    }
    out.push("--".into());
    // Already that account (a non-root agent whose run_as is itself): nothing
    // to drop, and setgroups is denied in a user namespace anyway.
    if let Some((u, g)) = run_as.filter(|(u, _)| *u != euid) {
        out.extend([
            "setpriv".into(),
            format!("--reuid={u}"),
            format!("--regid={g}"),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    out.extend(argv.iter().cloned());
    out
}

/// Whether this process has ambient capabilities (which its children would
/// inherit), e.g. `AmbientCapabilities=` of a systemd unit.
pub fn has_ambient_caps() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapAmb:"))
                .map(|v| v.trim().trim_start_matches('0').is_empty())
        })
        .is_some_and(|none| !none)
}

/// `argv` run by util-linux `setpriv` without ambient or inheritable
/// capabilities.
pub fn without_caps(argv: &[String]) -> Vec<String> {
    ["setpriv", "--ambient-caps=-all", "--inh-caps=-all", "--"]
        .iter()
        .map(|s| s.to_string())
        .chain(argv.iter().cloned())
        .collect()
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

/// [`run_step`] where the step cannot write to `dirs` (a backup repository):
/// each is bind-mounted read-only onto itself in a mount namespace of the
/// step's own, which nothing else on the host sees, and everything the step
/// starts inherits. When that cannot be arranged the step does not run.
pub fn run_read_only(
    argv: &[String],
    opts: &StepOptions,
    dirs: &[PathBuf],
    deadline: &Deadline,
) -> Result<Result<StepOutcome, StepError>, ReadOnlyRefused> {
    let Some(first) = dirs.first() else {
        return Ok(run_step(argv, opts, deadline));
    };
    let program = argv.first().cloned().unwrap_or_default();
    if rustix::process::geteuid().is_root() {
        // A mount namespace belongs to a thread: this one makes its own,
        // mounts the directories read-only there and starts the step, which
        // inherits it; the agent's other threads never see the mounts.
        return std::thread::scope(|s| {
            s.spawn(|| {
                mount_read_only(dirs).map_err(|(path, why)| ReadOnlyRefused {
                    program: program.clone(),
                    path,
                    why,
                })?;
                Ok(run_step(argv, opts, deadline))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
    }
    // Not root: util-linux `unshare` makes a user namespace (the agent's ids
    // mapped to root in it, which `mount` needs) with a mount namespace, and
    // a fixed script mounts each directory there before it execs the step.
    let mut wrapped: Vec<String> = [
        "unshare",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        READ_ONLY_SCRIPT,
        "restore-verifier",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    wrapped.extend(dirs.iter().map(|d| d.display().to_string()));
    wrapped.push("--".into());
    wrapped.extend(argv.iter().cloned());
    let out = match run_step(&wrapped, opts, deadline) {
        Ok(out) => out,
        other => return Ok(other),
    };
    let said = out.stderr_seen();
    let refused = !out.success()
        && (said.contains(READ_ONLY_REFUSED)
            || said
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("unshare: ")));
    if !refused {
        return Ok(Ok(out));
    }
    let why = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(READ_ONLY_REFUSED))
        .collect::<Vec<_>>()
        .join(" | ");
    let path = dirs
        .iter()
        .find(|d| said.contains(&format!("{READ_ONLY_REFUSED} {}", d.display())))
        .unwrap_or(first)
        .clone();
    Err(ReadOnlyRefused {
        program,
        path,
        why: if why.is_empty() {
            "the mount failed".into()
        } else {
            why
        },
    })
}

/// What the script says (exit 125) when a directory could not be mounted
/// read-only.
const READ_ONLY_REFUSED: &str = "restore-verifier: cannot mount read-only:";

/// `sh -c` script: `$1 … --` are the directories, the rest the step. Its
/// arguments are never part of the script's text.
const READ_ONLY_SCRIPT: &str = r#"while [ "$1" != -- ]; do
  if mount --bind -o ro,nosuid,nodev,noexec -- "$1" "$1" && ! test -w "$1"; then shift; else
    echo "restore-verifier: cannot mount read-only: $1" >&2; exit 125; fi
done
shift; exec "$@""#;

/// In the calling thread: a new mount namespace, nothing in it propagating
/// back to the host, and each of `dirs` bind-mounted read-only onto itself;
/// checked by the kernel's own view of the mount (ST_RDONLY).
fn mount_read_only(dirs: &[PathBuf]) -> Result<(), (PathBuf, String)> {
    use rustix::fs::{StatVfsMountFlags as St, statvfs};
    use rustix::mount::{
        MountFlags as Ms, MountPropagationFlags, mount_bind, mount_change, mount_remount,
    };
    let first = dirs.first().cloned().unwrap_or_default();
    // Sound as used: CLONE_NEWNS brings only CLONE_FS with it (this thread's
    // own root, cwd and umask), never CLONE_FILES, the flag that makes
    // `unshare` unsafe for a Rust program.
    #[allow(deprecated)]
    let made = rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNS);
    made.map_err(|e| (first.clone(), format!("no mount namespace of its own: {e}")))?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| {
        (
            first.clone(),
            format!("cannot make its mounts private: {e}"),
        )
    })?;
    for d in dirs {
        let fail = |what: &str, e: rustix::io::Errno| (d.clone(), format!("{what}: {e}"));
        let before = statvfs(d).map_err(|e| fail("cannot read its mount", e))?;
        mount_bind(d, d).map_err(|e| fail("bind mount failed", e))?;
        // A remount sets every flag it is given and clears the others: keep
        // those the mount had (a container may have locked them).
        let mut flags = Ms::BIND | Ms::RDONLY;
        for (st, ms) in [
            (St::NOSUID, Ms::NOSUID),
            (St::NODEV, Ms::NODEV),
            (St::NOEXEC, Ms::NOEXEC),
            (St::NOATIME, Ms::NOATIME),
            (St::NODIRATIME, Ms::NODIRATIME),
            (St::RELATIME, Ms::RELATIME),
        ] {
            if before.f_flag.contains(st) {
                flags |= ms;
            }
        }
        mount_remount(d, flags, "").map_err(|e| fail("read-only remount failed", e))?;
        let after = statvfs(d).map_err(|e| fail("cannot read its mount", e))?;
        if !after.f_flag.contains(St::RDONLY) {
            return Err((d.clone(), "the mount is still writable".into()));
        }
    }
    Ok(())
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
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn captures_exit_code_and_bounded_output() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = StepOptions::in_dir(tmp.path());
        opts.keep_stdout = 10;
        let out = run_step(
            &sh("yes line | head -c 100000; echo oops >&2; exit 3"),
            &opts,
            &Deadline::none(),
        )
        .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.len(), 10);
        assert!(out.stdout_tail.len() <= TAIL);
        assert_eq!(out.last_words(), "oops");
    }

    #[test]
    fn environment_is_minimal() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = StepOptions::in_dir(tmp.path());
        opts.keep_stdout = 4096;
        opts.env.push(("EXTRA".into(), "1".into()));
        let out = run_step(&["env".to_string()], &opts, &Deadline::none()).unwrap();
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('=').next().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["EXTRA", "HOME", "LANG", "PATH", STEP_MARKER.0]);
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let tmp = tempfile::tempdir().unwrap();
        let pidfile = tmp.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let t0 = Instant::now();
        let err = run_step(
            &sh(&script),
            &StepOptions::in_dir(tmp.path()),
            &Deadline::after(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                StepError::Stopped {
                    stop: Stop::TimedOut(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        std::thread::sleep(Duration::from_millis(100));
        // Gone, or a zombie waiting for init to reap it: either way not running.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        assert!(
            state.is_empty() || state == "Z",
            "the grandchild survived (state {state})"
        );
    }

    #[test]
    fn read_only_directories_cannot_be_written_by_the_step_only() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(repo.join("index.1"), "index").unwrap();
        let script = format!(
            "echo changed > {r}/index.1; touch {r}/new; touch {o}/written; test -w {r} && echo writable; true",
            r = repo.display(),
            o = other.display()
        );
        let opts = StepOptions::in_dir(tmp.path());
        let out = match run_read_only(
            &sh(&script),
            &opts,
            std::slice::from_ref(&repo),
            &Deadline::none(),
        ) {
            Ok(out) => out.unwrap(),
            // Not root, and no user namespaces here: refused, never run.
            Err(e) if !rustix::process::geteuid().is_root() => {
                assert!(!other.join("written").exists(), "{e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(out.success(), "{}", out.stderr_tail);
        assert!(
            out.stderr_tail.contains("Read-only file system"),
            "{}",
            out.stderr_tail
        );
        assert!(!out.stdout_tail.contains("writable"));
        assert_eq!(
            std::fs::read_to_string(repo.join("index.1")).unwrap(),
            "index"
        );
        assert!(!repo.join("new").exists());
        // Only the step's view was read-only: the agent and the rest of the
        // tree stay writable.
        assert!(other.join("written").exists());
        std::fs::write(repo.join("after"), "agent").unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&repo.display().to_string()), "{mounts}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = run_step(
            &["no-such-tool-xyz".to_string()],
            &StepOptions::in_dir(tmp.path()),
            &Deadline::none(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot run no-such-tool-xyz"));
    }
}
