//! The driver conformance suite: every backup type the config accepts,
//! drilled through the real binary on a backup the real tool wrote. A good
//! backup passes with no finding at all and is left exactly as it was; a
//! broken one fails with the finding that names what is wrong. A backup type
//! the config accepts is drilled here as soon as it is added, and fails
//! until the suite knows how the real tool writes a good and a broken
//! backup of it.

use std::os::unix::fs::FileExt;

use super::*;

const PASSWORD: &str = "conformance suite password 7";

/// The file a broken backup holds other bytes of.
const CHANGED: &str = "finance/ledger.csv";

/// A backup of the site's source written by the real tool of `kind`, and the
/// job that drills it; with `broken`, one byte of [`CHANGED`] differs in the
/// backup (same size, same mtime: only its content can tell). Returns the
/// job and the backup's path, which the drill must leave as it was.
fn file_backup(site: &Site, kind: &str, broken: bool) -> (String, PathBuf) {
    let source = site.path("source");
    let changed = source.join(CHANGED);
    let original = std::fs::read(&changed).unwrap();
    let mtime =
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(&changed).unwrap());
    if broken {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&changed)
            .unwrap();
        let mid = original.len() as u64 / 2;
        f.write_all_at(&[original[mid as usize] ^ 0x20], mid)
            .unwrap();
        filetime::set_file_mtime(&changed, mtime).unwrap();
    }
    let abs = source.display().to_string();
    std::fs::create_dir_all(site.path("backups")).unwrap();
    let (backup, job) = match kind {
        "dir" => {
            sh(Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(site.path("backups/copy")));
            (
                "backups/copy",
                "type = \"dir\"\npath = \"backups/copy\"\n".to_string(),
            )
        }
        "tar" => {
            sh(Command::new("tar")
                .arg("-cf")
                .arg(site.path("backups/share.tar"))
                .arg("-C")
                .arg(&source)
                .arg("."));
            (
                "backups/share.tar",
                "type = \"tar\"\npath = \"backups/*.tar\"\n".to_string(),
            )
        }
        "restic" => {
            need("restic");
            std::fs::write(site.path("pw"), format!("{PASSWORD}\n")).unwrap();
            restic(site, "repo", &["init"]);
            restic(site, "repo", &["backup", &abs]);
            (
                "repo",
                "type = \"restic\"\nrepository = \"repo\"\npassword_file = \"pw\"\n".to_string(),
            )
        }
        "borg" => {
            need("borg");
            std::fs::write(site.path("pp"), format!("{PASSWORD}\n")).unwrap();
            borg(site, &["init", "-e", "repokey", "repo"]);
            borg(site, &["create", "repo::share", &abs]);
            (
                "repo",
                format!(
                    "type = \"borg\"\nrepository = \"repo\"\npassphrase_file = \"pp\"\npath = \"{}\"\n",
                    abs.trim_start_matches('/')
                ),
            )
        }
        "command" => {
            sh(Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(site.path("backups/mirror")));
            (
                "backups/mirror",
                "type = \"command\"\npath = \"backups/mirror\"\nrestore = [[\"cp\", \"-a\", \"{backup}/.\", \"{sandbox}/\"]]\n"
                    .to_string(),
            )
        }
        other => panic!(
            "backup type {other:?} has no place in the conformance suite: add how its real tool writes a good and a broken backup"
        ),
    };
    if broken {
        std::fs::write(&changed, &original).unwrap();
        filetime::set_file_mtime(&changed, mtime).unwrap();
    }
    let name = if broken { "broken" } else { "good" };
    (
        format!("\n[[job]]\nname = \"{name}\"\nsource = \"source\"\n[job.backup]\n{job}"),
        site.path(backup),
    )
}

/// A pg_dump of a live database and its manifest; with `broken`, rows were
/// lost between the manifest and the dump.
fn postgres_backup(site: &Site, live: &LivePg, broken: bool) -> (String, PathBuf) {
    live.manifest("app", &site.path("app.pgmanifest"));
    if broken {
        live.psql("app", "DELETE FROM orders WHERE id % 200 = 0")
            .unwrap();
    }
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    live.dump("app", "c", &site.path("dumps/app.dump"));
    let name = if broken { "broken" } else { "good" };
    (
        format!(
            "\n[[job]]\nname = \"{name}\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app.dump\"\n[job.verify]\nmanifest = \"app.pgmanifest\"\n"
        ),
        site.path("dumps"),
    )
}

/// Drills the backup of `kind`; the backup is left exactly as it was.
fn drill(kind: &str, broken: bool) -> Value {
    let (site, _live, (job, backup)) = if kind == "postgres" {
        let (site, live) = orders_site();
        let b = postgres_backup(&site, &live, broken);
        (site, Some(live), b)
    } else {
        let site = tool_site();
        let b = file_backup(&site, kind, broken);
        (site, None, b)
    };
    set_jobs(&site, &job);
    let before = fingerprint(&backup);
    let out = site.run(&["run", "--json"]);
    let rec = records(&out).pop().unwrap_or_else(|| {
        panic!("no record: {}", text(&out.stderr));
    });
    assert_eq!(rec["backup"]["type"], kind, "{rec}");
    assert!(
        before == fingerprint(&backup),
        "the {kind} drill changed its backup"
    );
    assert!(is_empty_dir(&site.path("sandbox")), "the sandbox is left");
    rec
}

/// The finding a broken backup of `kind` gives.
fn finding(kind: &str) -> &'static str {
    match kind {
        "postgres" => "rows mismatch: public.orders (rows: 2000 in the manifest, 1990 restored)",
        _ => "content mismatch: finance/ledger.csv",
    }
}

/// Drills every backup type the config accepts, each on its own thread.
fn each_type(check: impl Fn(&str) + Sync) {
    let kinds: Vec<&str> = restore_verifier::config::backup_types().collect();
    assert!(
        kinds.len() >= 6,
        "dir, tar, restic, borg, postgres and command at least: {kinds:?}"
    );
    std::thread::scope(|s| {
        let runs: Vec<_> = kinds
            .iter()
            .map(|kind| (kind, s.spawn(|| check(kind))))
            .collect();
        let failed: Vec<&str> = runs
            .into_iter()
            .filter_map(|(kind, h)| h.join().is_err().then_some(*kind))
            .collect();
        assert!(
            failed.is_empty(),
            "failed for {failed:?} (their panics are above)"
        );
    });
}

#[test]
fn a_good_backup_of_every_type_passes_with_no_finding() {
    each_type(|kind| {
        let rec = drill(kind, false);
        assert_clean_pass(&rec);
        assert!(
            rec["reasons"].as_array().unwrap().is_empty(),
            "{kind}: {rec}"
        );
    });
}

#[test]
fn a_broken_backup_of_every_type_fails_naming_what_is_wrong() {
    each_type(|kind| {
        let rec = drill(kind, true);
        assert_eq!(rec["result"], "fail", "{kind}: {}", reasons(&rec));
        assert!(
            reasons(&rec).contains(finding(kind)),
            "{kind}: {:?} not in:\n{}",
            finding(kind),
            reasons(&rec)
        );
    });
}
