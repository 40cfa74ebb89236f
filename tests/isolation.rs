//! Isolation of a job's restore commands and checks: `run_as` and
//! `network = "none"`. The tests run as root, as scripts/test.sh does; the
//! agent is also run as an unprivileged account to show the user-namespace
//! path.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn need_root() {
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()),
        0,
        "the isolation tests change user: run them as root (scripts/test.sh does)"
    );
}

/// A loopback listener, and how many connections it has had.
struct Listener(TcpListener);

impl Listener {
    fn new() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Listener(l)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn accepted(&self) -> usize {
        std::iter::from_fn(|| self.0.accept().ok()).count()
    }

    /// bash connecting to it: exit 0 when a TCP connection was made.
    fn reach(&self) -> String {
        format!("exec 3<>/dev/tcp/127.0.0.1/{}", self.port())
    }
}

/// Copies the mirror, then tries the network from the restore step; a check
/// tries it again.
fn reaching_site(l: &Listener, network: &str) -> Site {
    command_site(
        &format!(
            "cp -a \"$1/.\" \"$2\" && {{ bash -c '{}' 2>/dev/null || true; }}",
            l.reach()
        ),
        &format!(
            "network = \"{network}\"\n[[job.check]]\nrun = [\"bash\", \"-c\", \"{}\"]\n",
            l.reach()
        ),
    )
}

#[test]
fn network_none_keeps_restore_steps_and_checks_off_the_network() {
    let l = Listener::new();
    // The control: with the host's network both the step and the check connect.
    let site = reaching_site(&l, "host");
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "pass", "{rec}");
    assert_eq!(l.accepted(), 2, "the step and the check both connected");

    let site = reaching_site(&l, "none");
    let out = site.run(&["run", "--json"]);
    let rec = one_record(&out);
    assert_eq!(l.accepted(), 0, "nothing reached the listener");
    assert_eq!(rec["result"], "fail", "{rec}");
    assert_eq!(rec["checks"][0]["passed"], false, "{rec}");
    assert!(
        rec["reasons"][0].as_str().unwrap().contains("check 1"),
        "{rec}"
    );
    assert_eq!(
        rec["verify"]["missing"]["count"], 0,
        "the restore itself worked without network: {rec}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn run_as_runs_restore_steps_and_checks_as_that_account() {
    need_root();
    let extra = "run_as = \"nobody\"\n\
        [[job.check]]\nrun = [\"id\", \"-u\"]\nexpect_stdout = \"65534\"\n\
        [[job.check]]\nrun = [\"sh\", \"-c\", \"touch ../../private/intruder\"]\nexpect_exit = 1\n\
        [[job.check]]\nrun = [\"cat\", \".owner\"]\nexpect_stdout = \"nobody\"\n";
    let site = command_site(
        "cp -r \"$1/.\" \"$2\" && stat -c %U \"$2/docs/report.txt\" > \"$2/.owner\"",
        extra,
    );
    // The account must reach the sandbox: the site is a private temp dir.
    std::fs::set_permissions(site.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root may write here; the account may not.
    std::fs::create_dir(site.path("private")).unwrap();
    std::fs::set_permissions(site.path("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = site.run(&["run", "--json"]);
    let rec = one_record(&out);
    assert_eq!(rec["result"], "pass", "{rec}\n{}", text(&out.stderr));
    assert_eq!(rec["checks"][0]["passed"], true, "{rec}");
    assert_eq!(rec["checks"][1]["exit_code"], 1, "{rec}");
    assert!(
        rec["checks"][1]["output_tail"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{rec}"
    );
    assert_eq!(
        rec["checks"][2]["passed"], true,
        "the restore step wrote its files as nobody: {rec}"
    );
    assert!(!site.path("private/intruder").exists());
    assert!(is_empty_dir(&site.path("sandbox")));

    // Both at once: the account without network.
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "run_as = \"nobody\"\n",
        "run_as = \"nobody\"\nnetwork = \"none\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "pass", "{rec}");
    assert_eq!(rec["checks"][0]["passed"], true, "{rec}");
}

#[test]
fn a_sandbox_the_account_cannot_reach_is_an_error_that_says_why() {
    need_root();
    let site = command_site("cp -r \"$1/.\" \"$2\"", "run_as = \"nobody\"\n");
    // The site is 0700 and owned by root: nobody cannot reach sandbox_dir.
    std::fs::set_permissions(site.path(""), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = site.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let rec = one_record(&out);
    assert_eq!(rec["result"], "error", "{rec}");
    let why = rec["reasons"][0].as_str().unwrap();
    assert!(
        why.contains("as nobody (uid 65534)") && why.contains("search permission"),
        "{why}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));

    // An unknown account is a config error with its position.
    let cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("\"nobody\"", "\"no-such-account-xyz\"");
    std::fs::write(&site.config, cfg).unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run_as: there is no user `no-such-account-xyz`"),
        "{}",
        text(&out.stderr)
    );
}

/// `run --json` by the agent as `nobody` (with `setpriv` options `extra`, e.g.
/// capabilities), on a site handed to that account.
fn run_as_nobody(site: &Site, extra: &[&str]) -> Output {
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(site.path(""))
        .status()
        .unwrap();
    assert!(chown.success());
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(extra)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_restore-verifier"))
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

#[test]
fn network_none_works_for_an_agent_that_is_not_root() {
    need_root();
    let l = Listener::new();
    let site = command_site(
        "cp -r \"$1/.\" \"$2\"",
        &format!(
            "network = \"none\"\n[[job.check]]\nrun = [\"true\"]\n[[job.check]]\nrun = [\"bash\", \"-c\", \"{}\"]\n",
            l.reach()
        ),
    );
    let out = run_as_nobody(&site, &[]);
    let rec = one_record(&out);
    assert_eq!(
        rec["checks"][0]["passed"], true,
        "a new user and network namespace was made: {rec}"
    );
    assert_eq!(rec["checks"][1]["passed"], false, "{rec}");
    assert_eq!(l.accepted(), 0);
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn an_isolated_step_cannot_leave_anything_running() {
    // Out of the sandbox and out of the process group: only the step's own
    // PID namespace catches it.
    let marker = "3218";
    let site = command_site(
        &format!("cp -a \"$1/.\" \"$2\"; (cd / && setsid sleep {marker} >/dev/null 2>&1 &)"),
        "network = \"none\"\n",
    );
    let rec = one_record(&site.run(&["run", "--json"]));
    assert_eq!(rec["result"], "pass", "{rec}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        running(&["sleep", marker]),
        0,
        "the escaped process still runs"
    );
}

#[test]
fn run_as_checks_of_a_tar_restore_run_after_the_compare() {
    need_root();
    let site = Site::new(&format!(
        "{}[[job.check]]\nrun = [\"id\", \"-u\"]\nexpect_stdout = \"65534\"\n[[job.check]]\nrun = [\"cat\", \"docs/report.txt\"]\n",
        job("good", "backups/good/share-*.tar").replace(
            "source = \"source\"\n",
            "source = \"source\"\nrun_as = \"nobody\"\n"
        )
    ));
    std::fs::set_permissions(site.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = site.run(&["run", "--json"]);
    let rec = one_record(&out);
    assert_eq!(rec["result"], "pass", "{rec}\n{}", text(&out.stderr));
    assert_eq!(rec["verify"]["files_compared"], 9, "{rec}");
    assert_eq!(rec["checks"][0]["passed"], true, "{rec}");
    assert_eq!(
        rec["checks"][1]["passed"], true,
        "the account reads the restored files: {rec}"
    );
}

#[test]
fn runbooks_and_checks_do_not_get_the_agents_ambient_capabilities() {
    need_root();
    // The agent as a systemd unit with AmbientCapabilities=CAP_DAC_READ_SEARCH
    // runs it: an unprivileged account that may read every file.
    let site = command_site(
        "cp -r \"$1/.\" \"$2\"; if head -c1 /etc/shadow >/dev/null 2>&1; then touch \"$2/READ-SHADOW\"; fi",
        "[[job.check]]\nrun = [\"sh\", \"-c\", \"head -c1 /etc/shadow\"]\nexpect_exit = 1\n",
    );
    let out = run_as_nobody(
        &site,
        &[
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
        ],
    );
    let rec = one_record(&out);
    // The agent itself read the source and backup with the capability...
    assert_eq!(rec["result"], "pass", "{rec}\n{}", text(&out.stderr));
    // ... the runbook and the check did not have it.
    assert_eq!(rec["checks"][0]["passed"], true, "{rec}");
    assert!(
        !rec["verify"]["extra"].to_string().contains("READ-SHADOW"),
        "the runbook read /etc/shadow: {rec}"
    );
}
