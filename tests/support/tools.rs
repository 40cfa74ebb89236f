//! Real backup tools for the tests: each must be installed (scripts/test.sh
//! does), and a missing one fails the test. Drills watched while they run,
//! and what a good drill must show.

use super::*;

pub fn need(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is missing: install it (scripts/test.sh installs restic and borgbackup)"
    );
}

pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A site with the fixture source and a config of AGENT + `job_toml`.
pub fn tool_site() -> Site {
    Site::new("")
}

pub fn set_jobs(site: &Site, jobs: &str) {
    std::fs::write(&site.config, format!("{AGENT}{jobs}")).unwrap();
}

/// Each test its own secret: tests run in parallel and watch every process.
pub const SECRET: &str = "correct horse battery staple 42";

pub const BORG_SECRET: &str = "tr0ub4dor and 3 more words";

/// Flips one byte in the middle of the largest file under `dir`.
pub fn corrupt_largest(dir: &Path) -> PathBuf {
    let f = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = std::fs::read(&f).unwrap();
    let mid = d.len() / 2;
    d[mid] ^= 0x01;
    std::fs::write(&f, d).unwrap();
    f
}

/// Runs `restore-verifier run` and, while it runs, looks for `secret` in every
/// process's command line and environment. Returns the JSON record.
pub fn run_watching(site: &Site, secret: &str) -> Value {
    let before = fingerprint(&site.path("source"));
    let child = bin()
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .env("RESTORE_VERIFIER_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = 0;
    while Path::new(&format!("/proc/{pid}")).exists() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            for f in ["cmdline", "environ"] {
                if let Ok(b) = std::fs::read(e.path().join(f)) {
                    assert!(
                        !String::from_utf8_lossy(&b).contains(secret),
                        "the secret is visible in {}/{f}",
                        e.path().display()
                    );
                    seen += 1;
                }
            }
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z") {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(seen > 0);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(secret), "the secret is in the output or logs");
    let ledger = std::fs::read_to_string(site.path("state/ledger.jsonl")).unwrap();
    assert!(!ledger.contains(secret), "the secret is in the ledger");
    assert!(
        before == fingerprint(&site.path("source")),
        "the drill changed the source"
    );
    let mut recs = records(&out);
    assert_eq!(recs.len(), 1, "{}", text(&out.stderr));
    recs.remove(0)
}

/// `run_watching`, and the drill left the repository `repo` (a directory of
/// the site) byte-identical: the same names, modes, mtimes and contents.
pub fn drill_leaving(site: &Site, secret: &str, repo: &str) -> Value {
    let before = fingerprint(&site.path(repo));
    let rec = run_watching(site, secret);
    assert_unchanged(&before, &fingerprint(&site.path(repo)), repo, &rec);
    rec
}

pub fn assert_unchanged(
    before: &std::collections::BTreeMap<PathBuf, (u32, std::time::SystemTime, String)>,
    after: &std::collections::BTreeMap<PathBuf, (u32, std::time::SystemTime, String)>,
    repo: &str,
    rec: &Value,
) {
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| p.display().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        changed.is_empty(),
        "the drill wrote to the repository {repo}: {changed:?}\n{}",
        reasons(rec)
    );
}

/// The conformance rule for a good backup: a pass with no finding at all.
pub fn assert_clean_pass(r: &Value) {
    assert_eq!(r["result"], "pass", "{}", reasons(r));
    for list in [
        "missing",
        "mismatched",
        "extra",
        "changed_since_backup",
        "new_since_backup",
        "unreadable",
        "source_unreadable",
    ] {
        assert_eq!(
            r["verify"][list]["count"], 0,
            "{list}: {}",
            r["verify"][list]
        );
    }
    assert!(r["verify"]["files_compared"].as_u64().unwrap() > 0);
}

pub fn reasons(r: &Value) -> String {
    r["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn restic(site: &Site, repo: &str, args: &[&str]) -> String {
    sh(Command::new("restic")
        .args(["--repo", repo, "--password-file"])
        .arg(site.path("pw"))
        .args(["--no-cache"])
        .args(args)
        .current_dir(site.tmp.path()))
}

/// A restic job of `repo` (restore of its latest snapshot) with `pw`.
pub fn restic_job(name: &str, repo: &str, pw: &str) -> String {
    format!(
        "\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n[job.backup]\ntype = \"restic\"\nrepository = \"{repo}\"\npassword_file = \"{pw}\"\n"
    )
}

/// A site whose restic repository `repo` (password file `pw`) holds one
/// snapshot of the source.
pub fn restic_site() -> Site {
    restic_site_with(0)
}

/// `restic_site` with `extra` more small files in the source.
pub fn restic_site_with(extra: usize) -> Site {
    need("restic");
    let site = tool_site();
    for i in 0..extra {
        let p = site.path(&format!("source/many/file-{i:03}.txt"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{i}\n")).unwrap();
    }
    std::fs::write(site.path("pw"), format!("{SECRET}\n")).unwrap();
    let source = site.path("source").display().to_string();
    restic(&site, "repo", &["init"]);
    restic(&site, "repo", &["backup", &source]);
    site
}

/// The output tail the record keeps of the step `step` (e.g. "restore").
pub fn step_tail(rec: &Value, step: &str) -> String {
    rec["restore"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["argv"].as_array().unwrap().iter().any(|a| a == step))
        .unwrap_or_else(|| panic!("no {step} step: {}", rec["restore"]))["output_tail"]
        .as_str()
        .unwrap()
        .to_string()
}

/// With `max_restore_bytes` one byte under the source's size, the drill is
/// refused on the repository's own size figure before `restore_step` runs.
pub fn refused_by_the_repository_estimate(
    site: &Site,
    job: &str,
    restore_step: &str,
    secret: &str,
    repo: &str,
) {
    let size: u64 = walkdir::WalkDir::new(site.path("source"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let capped = job.replace(
        "source = \"source\"\n",
        &format!(
            "source = \"source\"\nmax_restore_bytes = \"{}\"\n",
            size - 1
        ),
    );
    set_jobs(site, &capped);
    let rec = drill_leaving(site, secret, repo);
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains(&format!(
            "the restore would write about {}, more than max_restore_bytes",
            verifier::human_bytes(size)
        )),
        "{}",
        reasons(&rec)
    );
    assert!(
        !rec["restore"]["steps"].to_string().contains(restore_step),
        "the restore ran: {rec}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

pub fn copy_tree_file(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let t = filetime::FileTime::from_system_time(at(TREE_TIME));
    filetime::set_file_mtime(to, t).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644)).unwrap();
}

pub fn borg(site: &Site, args: &[&str]) -> String {
    borg_with(site, &[], args)
}

/// `borg` with more environment (BORG_KEY_FILE).
pub fn borg_with(site: &Site, env: &[(&str, &Path)], args: &[&str]) -> String {
    sh(Command::new("borg")
        .args(args)
        .envs(env.iter().copied())
        .env(
            "BORG_PASSCOMMAND",
            format!("cat {}", site.path("pp").display()),
        )
        .env("BORG_BASE_DIR", site.path("borg-home"))
        .current_dir(site.tmp.path()))
}

/// The short id of the newest snapshot in `repo` whose only path ends in `dir`.
pub fn snapshot_of(site: &Site, repo: &str, dir: &str) -> String {
    let list: Value = serde_json::from_str(&restic(site, repo, &["snapshots", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .rfind(|s| {
            s["paths"][0]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{dir}"))
        })
        .unwrap()["short_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs `run --json` on the site's config and calls `each` every few
/// milliseconds while it runs (to watch what the drill starts).
pub fn run_while(site: &Site, mut each: impl FnMut()) -> Output {
    let child = bin()
        .arg("-c")
        .arg(&site.config)
        .args(["run", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        each();
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Sockets of processes whose command line mentions `needle` that are TCP
/// listeners; and whether any such process is alive at all.
pub fn tcp_listeners_of(needle: &str) -> (usize, bool) {
    let mut inodes = Vec::new();
    let mut alive = false;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        if !cmd.contains(needle) {
            continue;
        }
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if state.contains(") Z") {
            continue;
        }
        alive = true;
        if let Ok(fds) = std::fs::read_dir(e.path().join("fd")) {
            for fd in fds.flatten() {
                if let Ok(t) = std::fs::read_link(fd.path()) {
                    let t = t.display().to_string();
                    if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                        inodes.push(i.to_string());
                    }
                }
            }
        }
    }
    let mut listening = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                listening += 1;
            }
        }
    }
    (listening, alive)
}

/// No live process mentions `needle` any more.
pub fn none_running(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        let cmd =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        !cmd.contains(needle)
            || state.contains(") Z")
            || e.file_name() == std::process::id().to_string().as_str()
    })
}
