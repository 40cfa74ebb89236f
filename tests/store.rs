//! The shared evidence store: agents publish their ledgers to a real
//! PostgreSQL server started by the test; `evidence verify` and `report` read
//! every host's records from it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Two scheduled tar jobs of the fleet's file server, drilled every second.
fn fleet_jobs(prefix: &str) -> String {
    ["1", "2"]
        .iter()
        .map(|n| {
            job(&format!("{prefix}{n}"), "backups/good/share-*.tar").replace(
                "system = \"Fixture file server\"",
                "system = \"Fleet file server\"\nschedule = \"* * * * * *\"",
            )
        })
        .collect()
}

fn with_store(site: &Site, conninfo: &str) {
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{cfg}\n[evidence]\nstore = \"{conninfo}\"\n"),
    )
    .unwrap();
}

/// Records in the store (0 while no agent has made its table).
fn stored(pg: &LivePg) -> usize {
    pg.psql("postgres", "SELECT count(*) FROM restore_verifier_records")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The job names of a system of a JSON report.
fn report_jobs(system: &Value) -> Vec<&str> {
    system["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect()
}

fn local_count(site: &Site) -> usize {
    std::fs::read_to_string(site.path("state/ledger.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn two_agents_publish_to_one_store_for_a_minute_and_every_chain_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = LivePg::start(&tmp.path().join("pg"));
    let conninfo = pg.conninfo("postgres");
    let sites: Vec<Site> = ["a", "b"]
        .iter()
        .map(|p| {
            let site = daemon_site(&fleet_jobs(p), false);
            with_store(&site, &conninfo);
            site
        })
        .collect();
    let daemons: Vec<Daemon> = sites.iter().map(Daemon::start).collect();
    std::thread::sleep(Duration::from_secs(60));
    for d in daemons {
        let (code, _) = d.stop();
        assert_eq!(code, Some(0));
    }
    let (a, b) = (local_count(&sites[0]), local_count(&sites[1]));
    assert!(a > 60 && b > 60, "drills ran: {a} and {b} records");
    let stored = stored(&pg);
    assert_eq!(
        stored,
        a + b,
        "every record of both ledgers is in the store"
    );

    // The auditor's view, from either agent's config.
    let out = sites[0].run(&["evidence", "verify"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(
        said.contains(&format!("chains    2 ({} records)", a + b)),
        "{said}"
    );
    assert!(
        said.contains("OK: every chain in the store holds"),
        "{said}"
    );

    let out = sites[0].run(&["report", "--format", "json", "--since", "2000-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fleet = report_system(&v, "Fleet file server");
    assert_eq!(
        (fleet["drills"].as_u64().unwrap() + fleet["skipped"].as_u64().unwrap()) as usize,
        a + b,
        "the report counts every drill (and skipped run) of both hosts: {fleet}"
    );
    let jobs: BTreeSet<&str> = report_jobs(&fleet).into_iter().collect();
    let host = text(&Command::new("hostname").output().unwrap().stdout)
        .trim()
        .to_string();
    let want: BTreeSet<String> = ["a1", "a2", "b1", "b2"]
        .iter()
        .map(|j| format!("{j}@{host}"))
        .collect();
    assert_eq!(jobs, want.iter().map(String::as_str).collect());
}

#[test]
fn hosts_with_the_same_job_name_stay_apart_in_the_fleet_report() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = LivePg::start(&tmp.path().join("pg"));
    let conninfo = pg.conninfo("postgres");
    let good = Site::new(&job("share", "backups/good/share-*.tar"));
    let bad = Site::new(&job("share", "backups/bad/share-*.tar"));
    with_store(&good, &conninfo);
    with_store(&bad, &conninfo);
    // Host nas2's drill of its job `share` fails...
    let out = Command::new("unshare")
        .args([
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname nas2 && exec \"$0\" \"$@\"",
        ])
        .arg(env!("CARGO_BIN_EXE_restore-verifier"))
        .arg("-c")
        .arg(&bad.config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // ... and this host's job of the same name passes later.
    assert_eq!(good.run(&["run"]).status.code(), Some(0));
    let out = good.run(&["report", "--format", "json", "--since", "2000-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sys = report_system(&v, "Fixture file server");
    let jobs = report_jobs(&sys);
    assert!(jobs.contains(&"share@nas2") && jobs.len() == 2, "{sys}");
    assert_eq!(sys["failures"], 1, "{sys}");
    assert_eq!(
        sys["failure_lines"][0]["closed_by"],
        Value::Null,
        "another host's pass does not close nas2's failure: {sys}"
    );
    assert_eq!(sys["score"], 1, "{sys}");
}

#[test]
fn the_store_catches_up_after_an_outage_and_a_changed_row_breaks_its_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = LivePg::start(&tmp.path().join("pg"));
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let base = std::fs::read_to_string(&site.config).unwrap();
    let set_store = |conninfo: &str| {
        std::fs::write(
            &site.config,
            format!("{base}\n[evidence]\nstore = \"{conninfo}\"\n"),
        )
        .unwrap();
    };
    set_store(&pg.conninfo("postgres"));
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    assert_eq!(stored(&pg), 1);

    // The store is unreachable: the drill still passes and is kept locally.
    set_store(&pg.conninfo("postgres").replace("port=5433", "port=5499"));
    let out = site.run(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Could not publish to the evidence store"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(stored(&pg), 1);
    set_store(&pg.conninfo("postgres"));
    assert_eq!(site.run(&["run"]).status.code(), Some(0));
    assert_eq!(stored(&pg), 3, "the missed record went with the next one");
    let out = site.run(&["evidence", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A record changed in the store.
    pg.psql(
        "postgres",
        "UPDATE restore_verifier_records SET line = replace(line, '\"result\":\"pass\"', '\"result\":\"fail\"') WHERE seq = 2",
    )
    .unwrap();
    let out = site.run(&["evidence", "verify"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("BROKEN at seq 2: record was changed"),
        "{said}"
    );
    assert!(
        said.contains("OK: the hash chain holds for all 3 records"),
        "the host's own ledger still verifies: {said}"
    );

    // A password in the connection string is refused, with where it is.
    set_store("postgres://rv:secret@db.example/evidence");
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("evidence.store: the connection string holds a password")
            && !err.contains("secret"),
        "{err}"
    );
}

/// A CA and a certificate for `localhost` signed by it, made by openssl in `dir`.
fn test_ca(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = "set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=rv-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost\\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null";
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("openssl is missing (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
}

#[test]
fn over_tcp_the_store_is_reached_with_tls_and_a_verified_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    test_ca(&certs);
    let port = free_port();
    let pg = LivePg::start_with(&tmp.path().join("pg"), |data| {
        let (u, g) = postgres_ids();
        for f in ["server.pem", "server.key"] {
            std::fs::copy(certs.join(f), data.join(f)).unwrap();
            std::os::unix::fs::chown(data.join(f), Some(u), Some(g)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        // Plain TCP is refused: a connection that works used TLS.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        [
            "listen_addresses=127.0.0.1",
            "ssl=on",
            "ssl_cert_file=server.pem",
            "ssl_key_file=server.key",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("port={port}")])
        .collect()
    });
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let base = std::fs::read_to_string(&site.config).unwrap();
    let run_with = |evidence: &str| {
        std::fs::write(&site.config, format!("{base}\n[evidence]\n{evidence}")).unwrap();
        let out = site.run(&["run"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let store = format!(
        "store = \"host=localhost port={port} user=postgres dbname=postgres sslmode=require\"\n"
    );
    let store = store.as_str();
    let ca = format!("ca_file = \"{}\"\n", certs.join("ca.pem").display());

    let said = run_with(&format!("{store}{ca}"));
    assert!(!said.contains("Could not publish"), "{said}");
    assert_eq!(stored(&pg), 1, "published over TLS");

    // The test CA is not among the public roots: without ca_file the server's
    // certificate does not verify, and nothing is sent.
    let said = run_with(store);
    assert!(
        said.contains("Could not publish") && said.contains("evidence.ca_file"),
        "{said}"
    );
    // Without TLS the server refuses the connection.
    let said = run_with(&format!("{}{ca}", store.replace("require", "disable")));
    assert!(said.contains("Could not publish"), "{said}");
    assert_eq!(stored(&pg), 1);

    // The records that did not go follow with the next good connection.
    run_with(&format!("{store}{ca}"));
    assert_eq!(stored(&pg), 4);
}

/// The end of a ledger damaged after its records were published (the head
/// file says they were written) is read back from the store: the host keeps
/// one chain, and publishing goes on instead of stopping at "diverged".
#[test]
fn records_lost_from_the_ledger_after_publishing_come_back_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = LivePg::start(&tmp.path().join("pg"));
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    with_store(&site, &pg.conninfo("postgres"));
    for _ in 0..3 {
        assert_eq!(site.run(&["run"]).status.code(), Some(0));
    }
    assert_eq!(stored(&pg), 3);
    let ledger = site.path("state/ledger.jsonl");
    let written = std::fs::read_to_string(&ledger).unwrap();
    let good: Vec<&str> = written.lines().collect();
    // Line 2 is cut short and line 3 is gone.
    std::fs::write(&ledger, &written[..good[0].len() + 1 + 30]).unwrap();

    let out = site.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("read back from the evidence store"),
        "{}",
        text(&out.stderr)
    );
    let now = std::fs::read_to_string(&ledger).unwrap();
    let now: Vec<&str> = now.lines().collect();
    assert_eq!(now[..3], good[..], "the lost records are back as written");
    assert_eq!(now.len(), 4);
    assert_eq!(stored(&pg), 4, "the new record was published after them");
    let out = site.run(&["evidence", "verify"]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("chains    1 (4 records)"), "{said}");
    assert!(!said.contains("repair"), "{said}");
}

/// With a public key, every chain in the store must be signed: this host's
/// chain, signed from a key record, verifies and shows its range; a chain no
/// key signed (another ledger writing to the same store unsigned) does not.
#[test]
fn signed_chains_in_the_store_verify_and_an_unsigned_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = LivePg::start(&tmp.path().join("pg"));
    let site = Site::new(&job("good", "backups/good/share-*.tar"));
    let out = bin()
        .arg("keygen")
        .arg("-o")
        .arg(site.path("evidence.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "timezone = \"Asia/Tokyo\"\n",
        "timezone = \"Asia/Tokyo\"\nsigning_key_file = \"evidence.key\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    with_store(&site, &pg.conninfo("postgres"));
    for _ in 0..2 {
        assert_eq!(site.run(&["run"]).status.code(), Some(0));
    }
    assert_eq!(stored(&pg), 3, "the key record and two drills");
    let key = site.path("evidence.key.pub");
    let verify = || {
        let out = site.run(&["evidence", "verify", "--public-key", key.to_str().unwrap()]);
        (out.status.code(), text(&out.stdout))
    };
    let (code, said) = verify();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("signed    seq 1-3 by key "), "{said}");

    // Another ledger publishes to the same store, unsigned.
    let other = Site::new(&job("good", "backups/good/share-*.tar"));
    with_store(&other, &pg.conninfo("postgres"));
    assert_eq!(other.run(&["run"]).status.code(), Some(0));
    assert_eq!(stored(&pg), 4);
    let (code, said) = verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("UNSIGNED: 1 records and none is signed"),
        "{said}"
    );
}
