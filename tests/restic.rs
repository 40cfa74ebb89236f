//! restic end to end: a good repository and the ways one goes bad.

use super::*;

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
