//! Tests of running steps: exit code and bounded output, the minimal
//! environment, the group killed on timeout, read-only directories, and a
//! missing program.

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
