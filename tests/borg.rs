//! borg end to end: a good repository, the ways one goes bad, keyfile and
//! unencrypted repositories, archive times.

use super::*;

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
