//! Runbook commands, manifests, post-restore checks, and restore tools that
//! hang.

use super::*;

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
