//! Real backup tools, end to end: restic, borg and runbook commands, each with
//! a good backup and the ways a backup goes bad. The tools must be installed
//! (scripts/test.sh does); a missing one fails the test.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

pub(crate) fn need(tool: &str) {
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

pub(crate) fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A site with the fixture source and a config of AGENT + `job_toml`.
pub(crate) fn tool_site() -> Site {
    Site::new("")
}

pub(crate) fn set_jobs(site: &Site, jobs: &str) {
    std::fs::write(&site.config, format!("{AGENT}{jobs}")).unwrap();
}

/// Each test its own secret: tests run in parallel and watch every process.
const SECRET: &str = "correct horse battery staple 42";
const BORG_SECRET: &str = "tr0ub4dor and 3 more words";

/// Flips one byte in the middle of the largest file under `dir`.
fn corrupt_largest(dir: &Path) -> PathBuf {
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
fn run_watching(site: &Site, secret: &str) -> Value {
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
fn drill_leaving(site: &Site, secret: &str, repo: &str) -> Value {
    let before = fingerprint(&site.path(repo));
    let rec = run_watching(site, secret);
    assert_unchanged(&before, &fingerprint(&site.path(repo)), repo, &rec);
    rec
}

fn assert_unchanged(
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
pub(crate) fn assert_clean_pass(r: &Value) {
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

pub(crate) fn reasons(r: &Value) -> String {
    r["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn restic(site: &Site, repo: &str, args: &[&str]) -> String {
    sh(Command::new("restic")
        .args(["--repo", repo, "--password-file"])
        .arg(site.path("pw"))
        .args(["--no-cache"])
        .args(args)
        .current_dir(site.tmp.path()))
}

/// A restic job of `repo` (restore of its latest snapshot) with `pw`.
fn restic_job(name: &str, repo: &str, pw: &str) -> String {
    format!(
        "\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n[job.backup]\ntype = \"restic\"\nrepository = \"{repo}\"\npassword_file = \"{pw}\"\n"
    )
}

/// A site whose restic repository `repo` (password file `pw`) holds one
/// snapshot of the source.
fn restic_site() -> Site {
    restic_site_with(0)
}

/// `restic_site` with `extra` more small files in the source.
fn restic_site_with(extra: usize) -> Site {
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
fn step_tail(rec: &Value, step: &str) -> String {
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

#[test]
fn restic_good_and_broken() {
    let site = restic_site();
    std::fs::write(site.path("wrong-pw"), "not the password\n").unwrap();
    let source = site.path("source").display().to_string();
    // A second repository whose snapshot lacks a file the source has.
    let lacking = site.path("lacking-src");
    copy_tree(&site.path("source"), &lacking);
    std::fs::remove_file(site.path("source/finance/ledger.csv")).unwrap();
    restic(&site, "repo-lacking", &["init"]);
    restic(&site, "repo-lacking", &["backup", &source]);
    // Put it back as it was: older than both snapshots.
    copy_tree_file(
        &lacking.join("finance/ledger.csv"),
        &site.path("source/finance/ledger.csv"),
    );
    let job = restic_job;

    set_jobs(&site, &job("good", "repo", "pw"));
    let rec = drill_leaving(&site, SECRET, "repo");
    assert_clean_pass(&rec);
    assert_eq!(rec["verify"]["files_compared"], 9);
    assert!(
        rec["restore"]["tool"]
            .as_str()
            .unwrap()
            .starts_with("restic "),
        "{}",
        rec["restore"]
    );
    assert_eq!(rec["backup"]["type"], "restic");
    assert!(!rec["restore"]["steps"].as_array().unwrap().is_empty());
    refused_by_the_repository_estimate(
        &site,
        &job("capped", "repo", "pw"),
        "restic restore",
        SECRET,
        "repo",
    );

    set_jobs(&site, &job("wrong-password", "repo", "wrong-pw"));
    let rec = drill_leaving(&site, SECRET, "repo");
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("wrong password"),
        "{}",
        reasons(&rec)
    );

    set_jobs(&site, &job("lacking", "repo-lacking", "pw"));
    let rec = drill_leaving(&site, SECRET, "repo-lacking");
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("missing from the restore: finance/ledger.csv"),
        "{}",
        reasons(&rec)
    );

    set_jobs(&site, &job("no-repo", "no-such-repo", "pw"));
    let rec = drill_leaving(&site, SECRET, "no-such-repo");
    assert!(!site.path("no-such-repo").exists());
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("repository not found"),
        "{}",
        reasons(&rec)
    );

    corrupt_largest(&site.path("repo/data"));
    set_jobs(&site, &job("damaged", "repo", "pw"));
    let rec = drill_leaving(&site, SECRET, "repo");
    assert_eq!(rec["result"], "fail", "{rec}");
    // The blob that failed verification, not restic's complaints about the
    // files it could then not finish.
    let why = reasons(&rec);
    assert!(
        why.contains("restic restore failed (exit code 1): the repository is damaged: ")
            && why.contains(": ciphertext verification failed"),
        "{why}"
    );
    assert!(
        !why.contains("UtimesNano") && !why.contains("There were"),
        "{why}"
    );
    // The record keeps the whole tail.
    let tail = step_tail(&rec, "restore");
    assert!(
        tail.contains("ciphertext verification failed")
            && tail.contains("UtimesNano")
            && tail.contains("Fatal: There were 2 errors"),
        "{tail}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

/// A pack file deleted from the repository: the reason names it, even when
/// restic then complains of more files than the output's tail holds (it names
/// the pack early on). restic 0.14 retries loading it for about 45 s.
#[test]
fn restic_missing_pack_is_named() {
    let site = restic_site_with(120);
    let pack = walkdir::WalkDir::new(site.path("repo/data"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path();
    std::fs::remove_file(&pack).unwrap();
    let name = pack
        .strip_prefix(site.path("repo"))
        .unwrap()
        .display()
        .to_string();
    set_jobs(&site, &restic_job("missing-pack", "repo", "pw"));
    // The damaged repository is left exactly as it was.
    let rec = drill_leaving(&site, SECRET, "repo");
    assert_eq!(rec["result"], "fail", "{rec}");
    let why = reasons(&rec);
    assert!(
        why.contains(&format!(
            "restic restore failed (exit code 1): the repository is damaged: pack file {name} is missing"
        )),
        "{why}"
    );
    assert!(
        !why.contains("UtimesNano") && !why.contains("There were"),
        "{why}"
    );
    let tail = step_tail(&rec, "restore");
    assert!(
        tail.contains("no such file or directory")
            && tail.contains("UtimesNano")
            && tail.contains("Fatal: There were"),
        "{tail}"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

/// With `max_restore_bytes` one byte under the source's size, the drill is
/// refused on the repository's own size figure before `restore_step` runs.
fn refused_by_the_repository_estimate(
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

fn copy_tree_file(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let t = filetime::FileTime::from_system_time(at(TREE_TIME));
    filetime::set_file_mtime(to, t).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn borg(site: &Site, args: &[&str]) -> String {
    borg_with(site, &[], args)
}

/// `borg` with more environment (BORG_KEY_FILE).
fn borg_with(site: &Site, env: &[(&str, &Path)], args: &[&str]) -> String {
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

#[test]
fn borg_good_and_broken() {
    need("borg");
    let site = tool_site();
    std::fs::write(site.path("pp"), format!("{BORG_SECRET}\n")).unwrap();
    std::fs::write(site.path("wrong-pp"), "nope\n").unwrap();
    let source = site.path("source").display().to_string();
    borg(&site, &["init", "-e", "repokey", "repo"]);
    borg(&site, &["create", "-C", "lz4", "repo::first", &source]);
    // A repository whose index borg would rebuild on opening it.
    borg(&site, &["init", "-e", "repokey", "repo-index"]);
    borg(&site, &["create", "repo-index::first", &source]);
    let keep = site.path("keep.csv");
    std::fs::copy(site.path("source/finance/ledger.csv"), &keep).unwrap();
    std::fs::remove_file(site.path("source/finance/ledger.csv")).unwrap();
    borg(&site, &["init", "-e", "repokey", "repo-lacking"]);
    borg(&site, &["create", "repo-lacking::lacking", &source]);
    copy_tree_file(&keep, &site.path("source/finance/ledger.csv"));
    let inner = source.trim_start_matches('/').to_string();
    let job = |name: &str, repo: &str, pp: &str, archive: &str| {
        format!(
            "\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n[job.backup]\ntype = \"borg\"\nrepository = \"{repo}\"\npassphrase_file = \"{pp}\"\narchive = \"{archive}\"\npath = \"{inner}\"\n"
        )
    };

    set_jobs(&site, &job("good", "repo", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "repo");
    assert_clean_pass(&rec);
    assert!(
        rec["restore"]["notes"]
            .to_string()
            .contains("mounted read-only"),
        "{}",
        rec["restore"]
    );
    assert_eq!(rec["verify"]["files_compared"], 9);
    assert!(
        rec["restore"]["tool"]
            .as_str()
            .unwrap()
            .starts_with("borg ")
    );
    assert!(rec["backup"]["id"].as_str().unwrap().starts_with("first"));
    refused_by_the_repository_estimate(
        &site,
        &job("capped", "repo", "pp", "latest"),
        "borg extract",
        BORG_SECRET,
        "repo",
    );

    set_jobs(&site, &job("by-glob", "repo", "pp", "fir*"));
    assert_eq!(drill_leaving(&site, BORG_SECRET, "repo")["result"], "pass");

    set_jobs(
        &site,
        &job("wrong-passphrase", "repo", "wrong-pp", "latest"),
    );
    let rec = drill_leaving(&site, BORG_SECRET, "repo");
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("wrong passphrase"),
        "{}",
        reasons(&rec)
    );

    set_jobs(&site, &job("lacking", "repo-lacking", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "repo-lacking");
    assert!(
        reasons(&rec).contains("missing from the restore: finance/ledger.csv"),
        "{}",
        reasons(&rec)
    );

    set_jobs(&site, &job("no-repo", "no-such-repo", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "no-such-repo");
    assert_eq!(rec["result"], "fail");
    assert!(reasons(&rec).contains("not found"), "{}", reasons(&rec));
    assert!(!site.path("no-such-repo").exists());

    // Pins: borg rebuilt a truncated index on opening the repository (new
    // index, hints and integrity files, one more segment): a drill wrote to
    // the backup. Now borg cannot write, and the drill says why it stopped.
    let index = std::fs::read_dir(site.path("repo-index"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("index.")
        })
        .unwrap();
    let cut = std::fs::read(&index).unwrap();
    std::fs::write(&index, &cut[..10]).unwrap();
    set_jobs(&site, &job("cut-index", "repo-index", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "repo-index");
    assert_eq!(rec["result"], "error", "{rec}");
    let why = reasons(&rec);
    assert!(
        why.contains("borg list cannot read the repository without writing to it: its index is missing or damaged")
            && why.contains("A drill never writes to a backup, so nothing was changed")
            && why.contains("borg check --repository-only"),
        "{why}"
    );
    assert!(!why.contains("Traceback"), "{why}");
    assert!(is_empty_dir(&site.path("sandbox")));
    // The same repository named in other ways: borg is given the directory
    // that is mounted, so its refusal is still told as such.
    for other in ["./repo-index", "sandbox/../repo-index"] {
        set_jobs(&site, &job("cut-index", other, "pp", "latest"));
        let rec = drill_leaving(&site, BORG_SECRET, "repo-index");
        assert_eq!(rec["result"], "error", "{other}: {}", reasons(&rec));
    }

    // A repository on a filesystem mounted read-only already (a `:ro`
    // volume, ProtectSystem=strict): nothing more to mount, and a drill
    // there needs no mount namespace of its own.
    set_jobs(&site, &job("ro", "repo", "pp", "latest"));
    let repo = site.path("repo").display().to_string();
    let out = site
        .under(
            "unshare",
            &[
                "-m",
                "sh",
                "-c",
                "mount --bind \"$1\" \"$1\" && mount -o remount,ro,bind \"$1\" && shift && exec \"$@\"",
                "sh",
                &repo,
            ],
        )
        .args(["run", "--json"])
        .output()
        .unwrap();
    let rec = records(&out).remove(0);
    assert_clean_pass(&rec);
    assert!(
        rec["restore"]["notes"]
            .to_string()
            .contains("is on a filesystem mounted read-only: borg could not write to it"),
        "{}",
        rec["restore"]
    );

    corrupt_largest(&site.path("repo/data"));
    set_jobs(&site, &job("damaged", "repo", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "repo");
    assert_eq!(rec["result"], "fail", "{rec}");
    // The traceback's exception line, not its first line.
    let why = reasons(&rec);
    assert!(
        why.contains("borg extract failed (exit code 2): the repository is damaged: IntegrityError: Data integrity error: Segment entry checksum mismatch [segment "),
        "{why}"
    );
    assert!(
        !why.contains("Traceback") && !why.contains("borg.helpers"),
        "{why}"
    );
    // The record keeps the whole tail.
    let tail = step_tail(&rec, "extract");
    assert!(
        tail.contains("borg.helpers.errors.IntegrityError: Data integrity error: Segment entry checksum mismatch")
            && tail.contains("sys.argv: "),
        "{tail}"
    );
    assert!(
        !site.path("repo/lock.exclusive").exists() && !site.path("repo/lock.roster").exists(),
        "the drill took a lock in the repository"
    );
    assert!(is_empty_dir(&site.path("sandbox")));

    // A segment file deleted: the exception borg ended with names it.
    let segment = walkdir::WalkDir::new(site.path("repo-lacking/data"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path();
    std::fs::remove_file(&segment).unwrap();
    set_jobs(&site, &job("no-segment", "repo-lacking", "pp", "latest"));
    let rec = drill_leaving(&site, BORG_SECRET, "repo-lacking");
    assert_eq!(rec["result"], "fail", "{rec}");
    let why = reasons(&rec);
    assert!(
        why.contains(&format!(
            "the repository is damaged: FileNotFoundError: [Errno 2] No such file or directory: '{}'",
            segment.display()
        )),
        "{why}"
    );
    assert!(!why.contains("KeyError"), "{why}");
    assert!(is_empty_dir(&site.path("sandbox")));
}

// Pins: borg ran with a minimal environment and no key for a keyfile
// repository (BORG_KEY_FILE was dropped), so such a repository could not be
// drilled at all. Also: every encryption mode (repokey in
// borg_good_and_broken, keyfile and none here) and both of borg's usual
// compressions (lz4 there, zstd here) restore in a passing drill.
#[test]
fn borg_keyfile_and_unencrypted_repositories() {
    need("borg");
    let site = tool_site();
    std::fs::write(site.path("pp"), format!("{BORG_SECRET}\n")).unwrap();
    let source = site.path("source").display().to_string();
    // The key lives in the site, not in any borg keys directory.
    std::fs::create_dir(site.path("keys")).unwrap();
    let key = site.path("keys/share.key");
    let with_key = [("BORG_KEY_FILE", key.as_path())];
    borg_with(&site, &with_key, &["init", "-e", "keyfile", "repo-key"]);
    borg_with(
        &site,
        &with_key,
        &["create", "-C", "zstd", "repo-key::zstd", &source],
    );
    assert!(key.is_file());
    assert!(
        !site.path("borg-home/.config/borg/keys").exists()
            || is_empty_dir(&site.path("borg-home/.config/borg/keys"))
    );
    borg(&site, &["init", "-e", "none", "repo-none"]);
    borg(
        &site,
        &["create", "-C", "zstd,9", "repo-none::plain", &source],
    );
    let inner = source.trim_start_matches('/').to_string();
    let job = |name: &str, repo: &str, extra: &str| {
        format!(
            "\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n[job.backup]\ntype = \"borg\"\nrepository = \"{repo}\"\npath = \"{inner}\"\n{extra}"
        )
    };

    let keyed = job(
        "keyfile",
        "repo-key",
        "passphrase_file = \"pp\"\nkey_file = \"keys/share.key\"\n",
    );
    set_jobs(&site, &keyed);
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = drill_leaving(&site, BORG_SECRET, "repo-key");
    assert_clean_pass(&rec);
    assert!(rec["backup"]["id"].as_str().unwrap().starts_with("zstd"));
    assert!(is_empty_dir(&site.path("sandbox")));

    // Without key_file: borg finds no key, and the reason says what to set.
    set_jobs(
        &site,
        &job("no-key", "repo-key", "passphrase_file = \"pp\"\n"),
    );
    let rec = drill_leaving(&site, BORG_SECRET, "repo-key");
    assert_eq!(rec["result"], "fail", "{rec}");
    let why = reasons(&rec);
    assert!(
        why.contains("no key file for this repository") && why.contains("set `key_file`"),
        "{why}"
    );
    assert!(!why.contains("Traceback"), "{why}");

    // A key file that is not there: refused before borg runs, and by
    // config check.
    let gone = keyed.replace("keys/share.key", "keys/gone.key");
    set_jobs(&site, &gone);
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("key_file") && text(&out.stderr).contains("gone.key"),
        "{}",
        text(&out.stderr)
    );
    let rec = drill_leaving(&site, BORG_SECRET, "repo-key");
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains("key_file") && reasons(&rec).contains("not readable"),
        "{}",
        reasons(&rec)
    );

    // key_file is borg's: another backup type refuses it.
    set_jobs(
        &site,
        &format!(
            "{}key_file = \"keys/share.key\"\n",
            restic_job("restic-key", "repo-key", "pp")
        ),
    );
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`key_file` does not apply to backup type \"restic\""),
        "{}",
        text(&out.stderr)
    );

    // Unencrypted: no passphrase, no key.
    set_jobs(&site, &job("none", "repo-none", ""));
    let rec = drill_leaving(&site, BORG_SECRET, "repo-none");
    assert_clean_pass(&rec);
    assert!(rec["backup"]["id"].as_str().unwrap().starts_with("plain"));
}

/// The short id of the newest snapshot in `repo` whose only path ends in `dir`.
fn snapshot_of(site: &Site, repo: &str, dir: &str) -> String {
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

// Pins: `snapshot = "latest"` was the host's newest snapshot whatever `path`
// named: with srcB backed up after srcA, a job of srcA restored nothing.
#[test]
fn restic_latest_is_the_newest_snapshot_of_its_path() {
    need("restic");
    let site = tool_site();
    std::fs::write(site.path("pw"), format!("{SECRET}\n")).unwrap();
    copy_tree(&site.path("source"), &site.path("srcA"));
    copy_tree(&site.path("source/docs"), &site.path("srcB"));
    let abs = |d: &str| site.path(d).display().to_string();
    // Run from the site with relative paths (the snapshots' paths are
    // absolute, their trees hold srcA/…), and with absolute ones.
    restic(&site, "repo", &["init"]);
    restic(&site, "repo", &["backup", "srcA"]);
    restic(&site, "repo", &["backup", "srcB"]);
    restic(&site, "repo-abs", &["init"]);
    restic(&site, "repo-abs", &["backup", &abs("srcA")]);
    restic(&site, "repo-abs", &["backup", &abs("srcB")]);
    for (repo, path) in [("repo", "srcA".to_string()), ("repo-abs", abs("srcA"))] {
        let want = snapshot_of(&site, repo, "srcA");
        assert_ne!(want, snapshot_of(&site, repo, "srcB"));
        set_jobs(
            &site,
            &format!(
                "{}path = \"{path}\"\n",
                restic_job("of-a", repo, "pw").replace("source = \"source\"", "source = \"srcA\"")
            ),
        );
        let rec = drill_leaving(&site, SECRET, repo);
        assert_clean_pass(&rec);
        assert_eq!(rec["backup"]["id"], want.as_str(), "{repo}: {rec}");
        assert_eq!(rec["verify"]["files_compared"], 9, "{repo}");
    }
}

#[test]
fn command_runbook_good_failing_and_hanging() {
    let site = tool_site();
    copy_tree(&site.path("source"), &site.path("mirror"));
    let job = |name: &str, restore: &str, extra: &str| {
        format!(
            "\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n{extra}[job.backup]\ntype = \"command\"\npath = \"mirror\"\nbackup_time = \"2026-06-01T00:00:00Z\"\nrestore = {restore}\n"
        )
    };
    set_jobs(
        &site,
        &job(
            "good",
            r#"[["cp", "-a", "{backup}/.", "{sandbox}/"], ["true"]]"#,
            "",
        ),
    );
    let out = site.run(&["run", "--json"]);
    let rec = records(&out).remove(0);
    assert_clean_pass(&rec);
    assert_eq!(rec["restore"]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(rec["restore"]["steps"][0]["exit_code"], 0);
    assert_eq!(rec["backup"]["created_at"], "2026-06-01T09:00:00+09:00");

    set_jobs(
        &site,
        &job(
            "failing",
            r#"[["sh", "-c", "echo cannot reach the share >&2; exit 7"]]"#,
            "",
        ),
    );
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("step 1 (sh) failed (exit code 7): cannot reach the share"),
        "{}",
        reasons(&rec)
    );
    assert_eq!(rec["restore"]["steps"][0]["exit_code"], 7);

    set_jobs(
        &site,
        &job("missing-backup", r#"["true"]"#, "")
            .replace("path = \"mirror\"", "path = \"no-such-mirror\""),
    );
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("backup not found"),
        "{}",
        reasons(&rec)
    );

    let marker = format!("hang-marker-{}", std::process::id());
    set_jobs(
        &site,
        &job(
            "hangs",
            &format!(r#"[["sh", "-c", "sleep 600; echo {marker}"]]"#),
            "timeout = \"2s\"\n",
        ),
    );
    let t0 = Instant::now();
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("step 1 (sh) timed out after 2s"),
        "{}",
        reasons(&rec)
    );
    std::thread::sleep(Duration::from_millis(200));
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmd).contains(&marker) || state.contains(") Z"),
            "a runbook process survived the timeout"
        );
    }
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn manifest_create_check_and_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(&tmp.path().join("src"));
    let m = tmp.path().join("share.manifest");
    let out = bin()
        .args(["manifest", "create"])
        .arg(&src)
        .arg("-o")
        .arg(&m)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("15 entries, 8 files"),
        "{}",
        text(&out.stdout)
    );
    let copy = tmp.path().join("copy");
    copy_tree(&src, &copy);
    let check = |dir: &Path| {
        bin()
            .args(["manifest", "check"])
            .arg(dir)
            .arg(&m)
            .output()
            .unwrap()
    };
    let out = check(&copy);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Same size, one byte changed: only the hash can tell.
    let f = copy.join("drawings/part-0001.bin");
    let mut d = std::fs::read(&f).unwrap();
    d[100] ^= 1;
    std::fs::write(&f, d).unwrap();
    let out = check(&copy);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "drawings/part-0001.bin  (content differs (its SHA-256 is not the manifest's))"
        ),
        "{}",
        text(&out.stdout)
    );
    // A manifest edited by hand is refused by its own checksum.
    let edited =
        std::fs::read_to_string(&m)
            .unwrap()
            .replacen("\"size\":20000", "\"size\":20001", 1);
    std::fs::write(&m, edited).unwrap();
    let out = check(&src);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("changed after it was made"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn drill_against_a_manifest_is_exact() {
    let site = tool_site();
    let m = site.path("share.manifest");
    assert!(
        bin()
            .args(["manifest", "create"])
            .arg(site.path("source"))
            .arg("-o")
            .arg(&m)
            .output()
            .unwrap()
            .status
            .success()
    );
    let job = |name: &str, glob: &str| {
        format!(
            "\n[[job]]\nname = \"{name}\"\n[job.backup]\ntype = \"tar\"\npath = \"{glob}\"\n[job.verify]\nmanifest = \"share.manifest\"\n"
        )
    };
    set_jobs(
        &site,
        &format!(
            "{}{}",
            job("good", "backups/good/share-*.tar"),
            job("bad", "backups/bad/share-*.tar")
        ),
    );
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recs = records(&site.run(&["run", "--json"]));
    assert_eq!(recs[0]["result"], "pass", "{}", reasons(&recs[0]));
    assert_eq!(recs[0]["verify"]["against"], "manifest");
    assert_eq!(recs[0]["verify"]["content_checked"], 8);
    assert_eq!(recs[1]["result"], "fail");
    assert!(
        reasons(&recs[1]).contains("content mismatch: finance/ledger.csv"),
        "{}",
        reasons(&recs[1])
    );
    // An extra file fails against a manifest (it does not against a live source).
    let renamed = archive("renamed-member.tar", &site.path("backups/renamed"));
    let _ = renamed;
    set_jobs(&site, &job("renamed", "backups/renamed/*.tar"));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert!(
        reasons(&rec).contains("not in the manifest: docs/report-old.txt"),
        "{}",
        reasons(&rec)
    );
    // A hand-edited manifest is refused before any drill trusts it.
    let text_m = std::fs::read_to_string(&m)
        .unwrap()
        .replacen("0644", "0600", 1);
    std::fs::write(&m, text_m).unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("job[0].verify.manifest: manifest"),
        "{}",
        text(&out.stderr)
    );
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "error");
    assert!(
        reasons(&rec).contains("changed after it was made"),
        "{}",
        reasons(&rec)
    );
}

#[test]
fn post_restore_checks_with_sqlite() {
    need("sqlite3");
    let site = tool_site();
    let mirror = site.path("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    sh(Command::new("sqlite3").arg(mirror.join("app.db")).arg(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, part TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO orders(part) SELECT 'part-' || i FROM n;",
    ));
    let jobs = r#"
[[job]]
name = "app"
[job.backup]
type = "command"
path = "mirror"
restore = ["cp", "-a", "{backup}/.", "{sandbox}/"]
[[job.check]]
run = ["sqlite3", "{sandbox}/app.db", "PRAGMA integrity_check"]
expect_stdout = "ok"
[[job.check]]
run = ["sqlite3", "{sandbox}/app.db", "SELECT count(*) FROM orders"]
expect_stdout = { regex = "^2000\\s*$" }
"#;
    set_jobs(&site, jobs);
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    assert_eq!(rec["checks"].as_array().unwrap().len(), 2);
    assert_eq!(rec["checks"][0]["passed"], true);

    // Damage the database in the backup: the integrity check catches it.
    let db = mirror.join("app.db");
    let mut d = std::fs::read(&db).unwrap();
    for b in &mut d[4096..8192] {
        *b = 0xff;
    }
    std::fs::write(&db, d).unwrap();
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains("check 1 (sqlite3) failed"),
        "{}",
        reasons(&rec)
    );
    assert_eq!(rec["checks"][0]["passed"], false);
}

/// The uid and gid of the `postgres` account (PostgreSQL will not run as root).
pub fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "postgres").then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("no postgres user: install Debian's postgresql package (scripts/test.sh does)")
}

/// The line pg_dump ends a plain dump with, for dumps a test writes by hand.
const PG_DUMP_COMPLETE: &str = "\n--\n-- PostgreSQL database dump complete\n--\n\n";

pub(crate) fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server is missing: install Debian's postgresql package (scripts/test.sh does)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.pop().unwrap().join(name)
}

/// A live PostgreSQL for the test: socket only, in `dir`, stopped on drop.
pub struct LivePg {
    child: std::process::Child,
    sock: PathBuf,
    port: u16,
}

impl Drop for LivePg {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl LivePg {
    pub fn start(dir: &Path) -> LivePg {
        LivePg::start_with(dir, |_| Vec::new())
    }

    /// Like `start`; `setup` may write into the fresh data directory (as the
    /// server's account owns it, after initdb) and returns extra server
    /// settings (`name=value`).
    pub fn start_with(dir: &Path, setup: impl FnOnce(&Path) -> Vec<String>) -> LivePg {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let (u, g) = postgres_ids();
        std::fs::create_dir_all(dir).unwrap();
        let mut p = dir.to_path_buf();
        while p.parent().is_some() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o001)).unwrap();
            p.pop();
        }
        let (data, sock) = (dir.join("pgdata"), dir.join("pgsock"));
        for d in [&data, &sock] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::chown(d, Some(u), Some(g)).unwrap();
        }
        let st = Command::new(pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .uid(u)
            .gid(g)
            .current_dir(&sock)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(st.status.success(), "initdb: {}", text(&st.stderr));
        let extra = setup(&data);
        // A `port=` setting moves the server (socket name included).
        let port: u16 = extra
            .iter()
            .find_map(|a| a.strip_prefix("port=")?.parse().ok())
            .unwrap_or(5433);
        let mut args: Vec<String> = vec!["listen_addresses=".into()];
        args.extend(extra.into_iter().filter(|a| !a.starts_with("port=")));
        let child = Command::new(pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(args.iter().flat_map(|a| ["-c".to_string(), a.clone()]))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sock.display()))
            .uid(u)
            .gid(g)
            .current_dir(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = LivePg { child, sock, port };
        let t0 = Instant::now();
        while !pg
            .psql("postgres", "SELECT 1")
            .is_ok_and(|o| o.trim() == "1")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the test's PostgreSQL did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.sock.display(),
            self.port
        )
    }

    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.conninfo(db),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    }

    pub fn dump(&self, db: &str, format: &str, out: &Path) {
        self.dump_with(db, &["-F", format], out)
    }

    /// `pg_dump` of `db` with `args` into `out`.
    pub fn dump_with(&self, db: &str, args: &[&str], out: &Path) {
        let o = Command::new("pg_dump")
            .args(args)
            .arg("-f")
            .arg(out)
            .arg("-d")
            .arg(self.conninfo(db))
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_dump {args:?}: {}", text(&o.stderr));
    }

    /// `manifest create --postgres` of `db` into `out`; returns the manifest.
    pub fn manifest(&self, db: &str, out: &Path) -> String {
        let o = bin()
            .args(["manifest", "create", "--postgres", &self.conninfo(db), "-o"])
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        std::fs::read_to_string(out).unwrap()
    }
}

/// Runs `run --json` on the site's config and calls `each` every few
/// milliseconds while it runs (to watch what the drill starts).
pub(crate) fn run_while(site: &Site, mut each: impl FnMut()) -> Output {
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
fn tcp_listeners_of(needle: &str) -> (usize, bool) {
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

/// A site with a live database `app`: 2,000 `orders`, 300 `billing.invoices`.
pub(crate) fn orders_site() -> (Site, LivePg) {
    need("pg_dump");
    let site = tool_site();
    let live = LivePg::start(&site.path("live"));
    live.psql("postgres", "CREATE DATABASE app").unwrap();
    live.psql(
        "app",
        "CREATE TABLE orders(id serial PRIMARY KEY, part text NOT NULL); \
         INSERT INTO orders(part) SELECT 'part-' || i FROM generate_series(1, 2000) i; \
         CREATE SCHEMA billing; CREATE TABLE billing.invoices(id int PRIMARY KEY, total numeric); \
         INSERT INTO billing.invoices SELECT i, i * 1.5 FROM generate_series(1, 300) i;",
    )
    .unwrap();
    (site, live)
}

#[test]
fn postgres_dump_restores_into_a_throwaway_cluster() {
    let (site, live) = orders_site();
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    live.dump("app", "c", &site.path("dumps/app-1.dump"));
    live.dump("app", "p", &site.path("dumps/app-1.sql"));
    let m = live.manifest("app", &site.path("app.pgmanifest"));
    assert!(
        m.contains("\"path\":\"public.orders\",\"type\":\"table\",\"size\":2000"),
        "{m}"
    );

    let job = |name: &str, glob: &str, manifest: bool| {
        let verify = if manifest {
            "[job.verify]\nmanifest = \"app.pgmanifest\"\n"
        } else {
            ""
        };
        format!(
            "\n[[job]]\nname = \"{name}\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"{glob}\"\ntables = [\"public.orders\", \"billing.invoices\"]\n{verify}[[job.check]]\nrun = [\"psql\", \"-X\", \"-tAc\", \"SELECT count(*) FROM orders WHERE part LIKE 'part-%'\"]\nexpect_stdout = \"2000\"\n"
        )
    };
    set_jobs(&site, &job("custom", "dumps/app-*.dump", true));
    let sandbox = site.path("sandbox").display().to_string();
    let mut saw_server = false;
    let out = run_while(&site, || {
        let (listening, alive) = tcp_listeners_of(&sandbox);
        assert_eq!(listening, 0, "the throw-away cluster opened a TCP port");
        saw_server |= alive;
    });
    let rec = records(&out).remove(0);
    assert!(saw_server, "never saw the throw-away server running");
    assert_clean_pass(&rec);
    assert_eq!(rec["verify"]["against"], "manifest");
    assert_eq!(
        rec["verify"]["files_compared"], 3,
        "both tables' row counts, and the number of large objects, compared"
    );
    assert_eq!(rec["checks"][0]["passed"], true, "{}", rec["checks"]);
    assert!(
        rec["restore"]["tool"]
            .as_str()
            .unwrap()
            .starts_with("pg_restore")
    );
    assert!(
        !tcp_listeners_of(&sandbox).1,
        "the throw-away cluster is still running"
    );
    assert!(is_empty_dir(&site.path("sandbox")));

    set_jobs(&site, &job("plain", "dumps/app-*.sql", true));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));

    // Rows lost between the manifest and the dump.
    live.psql("app", "DELETE FROM orders WHERE id % 200 = 0")
        .unwrap();
    live.dump("app", "c", &site.path("dumps/app-2.dump"));
    set_jobs(&site, &job("fewer-rows", "dumps/app-2.dump", true));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec)
            .contains("rows mismatch: public.orders (rows: 2000 in the manifest, 1990 restored)"),
        "{}",
        reasons(&rec)
    );

    // Against the live database instead: fewer rows now is drift, not failure.
    let live_job = job("live", "dumps/app-1.dump", false).replace(
        "tables = [",
        &format!("live = \"{}\"\ntables = [", live.conninfo("app")),
    );
    set_jobs(&site, &live_job);
    // The live database and the dumps are only read: the same before and after.
    let live_content = |name: &str| {
        let p = site.path(name);
        live.dump("app", "p", &p);
        std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let before = live_content("live-before.sql");
    let dumps = fingerprint(&site.path("dumps"));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    assert!(
        before == live_content("live-after.sql"),
        "the drill changed the live database"
    );
    assert!(
        dumps == fingerprint(&site.path("dumps")),
        "the drill changed the dumps"
    );
    assert_eq!(
        rec["verify"]["changed_since_backup"]["items"][0]["what"],
        "rows: 1990 live now, 2000 restored"
    );
    // A password in a connection string is refused: it would show in `ps`.
    set_jobs(
        &site,
        &live_job.replace("user=postgres", "user=postgres password=hunter2"),
    );
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("backup.live: do not put a password"),
        "{}",
        text(&out.stderr)
    );

    // Regression: one early failed statement among many harmless ownership
    // errors was pushed out of the output tail and the drill passed.
    let mut sql = String::from(
        "CREATE TABLE public.orders(id int); CREATE SCHEMA billing; CREATE TABLE billing.invoices(id int);\nINSERT INTO no_such_table VALUES (1);\n",
    );
    for _ in 0..200 {
        sql.push_str("ALTER TABLE public.orders OWNER TO ghost_owner_role_with_a_long_name;\n");
    }
    sql.push_str(PG_DUMP_COMPLETE);
    std::fs::write(site.path("dumps/noisy.sql"), sql).unwrap();
    // The job without its row-count check (this dump has no rows).
    let noisy = job("noisy", "dumps/noisy.sql", false);
    set_jobs(&site, noisy.split("[[job.check]]").next().unwrap());
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(reasons(&rec).contains("no_such_table"), "{}", reasons(&rec));

    set_jobs(&site, &job("missing", "dumps/none-*.dump", false));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail");
    assert!(
        reasons(&rec).contains("backup not found"),
        "{}",
        reasons(&rec)
    );

    let broken = site.path("dumps/broken.dump");
    std::fs::copy(site.path("dumps/app-1.dump"), &broken).unwrap();
    let mut d = std::fs::read(&broken).unwrap();
    let n = d.len();
    for b in &mut d[n / 2..n / 2 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&broken, d).unwrap();
    set_jobs(&site, &job("damaged", "dumps/broken.dump", false));
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "fail", "{rec}");
    // The reason starts from pg_restore's own error line.
    assert!(
        reasons(&rec).contains("pg_restore failed (exit code 1): pg_restore: error: "),
        "{}",
        reasons(&rec)
    );
    assert!(
        !tcp_listeners_of(&sandbox).1,
        "the throw-away cluster is still running"
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

/// No live process mentions `needle` any more.
fn none_running(needle: &str) -> bool {
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

#[test]
fn hanging_tools_are_killed_at_the_timeout() {
    need("restic");
    need("borg");
    need("pg_dump");
    let site = tool_site();
    std::fs::write(site.path("pw"), "pw\n").unwrap();
    // restic: a REST server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // borg: a repository whose config is a FIFO: borg blocks reading it.
    std::fs::create_dir_all(site.path("hang-borg")).unwrap();
    sh(Command::new("mkfifo").arg(site.path("hang-borg/config")));
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    std::fs::write(
        site.path("dumps/hang.sql"),
        format!("SELECT pg_sleep(600);\n{PG_DUMP_COMPLETE}"),
    )
    .unwrap();
    let jobs = r#"
[[job]]
name = "restic"
timeout = "3s"
source = "source"
[job.backup]
type = "restic"
repository = "rest:http://127.0.0.1:PORT/hang-restic"
password_file = "pw"

[[job]]
name = "borg"
timeout = "3s"
source = "source"
[job.backup]
type = "borg"
repository = "hang-borg"

[[job]]
name = "postgres"
timeout = "8s"
[job.backup]
type = "postgres"
path = "dumps/hang.sql"
"#;
    set_jobs(&site, &jobs.replace("PORT", &port.to_string()));
    let t0 = Instant::now();
    let out = site.run(&["run", "--json"]);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    drop(silent);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{}", text(&out.stderr));
    for (rec, step) in recs.iter().zip(["restic snapshots", "borg list", "psql"]) {
        assert_eq!(rec["result"], "fail", "{rec}");
        assert!(
            reasons(rec).contains(&format!("{step} timed out after")),
            "{}",
            reasons(rec)
        );
        assert!(reasons(rec).contains("its processes were killed"));
        // Which limit it was: the job's `timeout`.
        assert!(
            reasons(rec).contains("(the job's timeout)"),
            "{}",
            reasons(rec)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for needle in [
        "hang-restic",
        "hang-borg",
        &site.path("sandbox").display().to_string(),
    ] {
        assert!(
            none_running(needle),
            "a process mentioning {needle} survived"
        );
    }
    assert!(is_empty_dir(&site.path("sandbox")));
}

#[test]
fn a_plain_dump_cannot_run_programs_as_the_agent() {
    use std::os::unix::fs::MetadataExt;
    let (pg_uid, _) = postgres_ids();
    let site = tool_site();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // What a compromised host could put in a plain-format dump: psql
    // meta-commands that run programs.
    let probe = std::env::temp_dir().join(format!("rv-meta-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    std::fs::write(
        site.path("dumps/app.sql"),
        format!(
            "CREATE TABLE orders(id int);\nINSERT INTO orders VALUES (1), (2);\n\
             \\! id -u > {p}\n\
             \\! bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo reached >> {p}\n\
             \\! setsid sleep 3220 >/dev/null 2>&1 &\n{PG_DUMP_COMPLETE}",
            p = probe.display()
        ),
    )
    .unwrap();
    set_jobs(
        &site,
        "\n[[job]]\nname = \"app\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app-*.sql\"\n"
            .replace("app-*.sql", "app.sql")
            .as_str(),
    );
    let out = site.run(&["run", "--json"]);
    let rec = records(&out).remove(0);
    assert_eq!(rec["result"], "pass", "{rec}\n{}", text(&out.stderr));
    let said = std::fs::read_to_string(&probe).expect("the meta-command ran");
    let _ = std::fs::remove_file(&probe);
    assert_eq!(
        said.trim(),
        pg_uid.to_string(),
        "the dump's commands ran as the server's account, not the agent's"
    );
    assert_eq!(std::fs::metadata("/proc/self").unwrap().uid(), 0);
    assert_eq!(
        std::iter::from_fn(|| listener.accept().ok()).count(),
        0,
        "no network"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        running(&["sleep", "3220"]),
        0,
        "what the dump started ended with the restore"
    );
}

// Pins: borg prints archive times in local time without an offset, and they
// were read in the agent's zone: an agent with TZ=Asia/Tokyo on a UTC host
// dated the backup 9 hours early.
#[test]
fn borg_archive_times_do_not_depend_on_the_agents_zone() {
    need("borg");
    let site = tool_site();
    std::fs::write(site.path("pp"), format!("{BORG_SECRET}\n")).unwrap();
    let source = site.path("source").display().to_string();
    borg(&site, &["init", "-e", "repokey", "repo"]);
    borg(&site, &["create", "repo::now", &source]);
    let inner = source.trim_start_matches('/');
    set_jobs(
        &site,
        &format!(
            "\n[[job]]\nname = \"zone\"\nsource = \"source\"\nrpo = \"1h\"\n[job.backup]\ntype = \"borg\"\nrepository = \"repo\"\npassphrase_file = \"pp\"\npath = \"{inner}\"\n"
        ),
    );
    for tz in ["Asia/Tokyo", "America/New_York", "UTC"] {
        let out = crate::bin()
            .arg("-c")
            .arg(&site.config)
            .args(["run", "--json", "--quiet"])
            .env("TZ", tz)
            .current_dir(site.tmp.path())
            .output()
            .unwrap();
        let rec = records(&out).remove(0);
        let age = rec["backup"]["age_seconds"].as_i64().unwrap();
        assert!((0..600).contains(&age), "TZ={tz}: age {age} s: {rec}");
        assert_eq!(rec["result"], "pass", "TZ={tz}: {rec}");
    }
}
