//! PostgreSQL dumps as pg_dump writes them, in every format, and the ways a
//! dump lacks data: cut short, schema only, without its large objects, half
//! a table behind the live database. And one policy on restore errors for
//! every format, in UTF-8 and EUC_JP databases.

use super::*;

/// SQL sent in UTF-8, whatever the database's encoding.
fn psql_utf8(live: &LivePg, db: &str, sql: &str) {
    let o = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &live.conninfo(db),
        ])
        .args(["-c", sql])
        .env("PGCLIENTENCODING", "UTF8")
        .output()
        .unwrap();
    assert!(o.status.success(), "{sql}: {}", text(&o.stderr));
}

fn pg_job(name: &str, path: &str, extra: &str) -> String {
    format!(
        "\n[[job]]\nname = \"{name}\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"{path}\"\n{extra}"
    )
}

fn drill(site: &Site, job: &str) -> Value {
    set_jobs(site, job);
    let out = site.run(&["run", "--json"]);
    let mut recs = records(&out);
    assert_eq!(recs.len(), 1, "{}", text(&out.stderr));
    recs.remove(0)
}

const MANIFEST: &str = "[job.verify]\nmanifest = \"app.pgmanifest\"\n";

// Items 4, 5, 11 and 18 of the repository-and-database issue: each of these
// dumps passed, or errored, before.
#[test]
fn postgres_dumps_without_their_data_fail_and_whole_ones_pass_in_every_format() {
    let (site, live) = orders_site();
    live.psql(
        "app",
        "SELECT lo_from_bytea(0, 'drawing-1'::bytea), lo_from_bytea(0, 'drawing-2'::bytea)",
    )
    .unwrap();
    let m = live.manifest("app", &site.path("app.pgmanifest"));
    assert!(
        m.contains(
            "\"path\":\"pg_catalog.pg_largeobject_metadata\",\"type\":\"large objects\",\"size\":2"
        ),
        "the manifest counts large objects: {m}"
    );
    let d = site.path("dumps");
    std::fs::create_dir_all(&d).unwrap();
    for (file, args) in [
        ("app.dump", &["-Fc"][..]),
        ("app.dir", &["-Fd"]),
        ("app.tar", &["-Ft"]),
        ("app.sql", &["-Fp"]),
        ("app-create.sql", &["-Fp", "-C"]),
        ("app-clean.sql", &["-Fp", "--clean"]),
        ("app-nolo.dump", &["-Fc", "--no-blobs"]),
        ("app-schema.sql", &["-Fp", "--schema-only"]),
        ("app-schema.dump", &["-Fc", "--schema-only"]),
    ] {
        live.dump_with("app", args, &d.join(file));
    }
    // `pg_dump | gzip`, the most common plain dump of all.
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(d.join("app.sql"))
        .output()
        .unwrap();
    std::fs::write(d.join("app.sql.gz"), gz.stdout).unwrap();
    // A plain dump cut at a line boundary inside the orders' data: half the
    // rows, no indexes, no closing line.
    let plain = std::fs::read_to_string(d.join("app.sql")).unwrap();
    let cut = plain.find("1000\tpart-1000\n").unwrap();
    std::fs::write(d.join("app-cut.sql"), &plain[..cut]).unwrap();
    // pg_dumpall: every database and role in one script.
    let o = Command::new("pg_dumpall")
        .arg("-f")
        .arg(d.join("cluster.sql"))
        .arg("-d")
        .arg(live.conninfo("postgres"))
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_dumpall: {}", text(&o.stderr));

    let check = "[[job.check]]\nrun = [\"psql\", \"-X\", \"-tAc\", \"SELECT count(*) FROM orders\"]\nexpect_stdout = \"2000\"\n";
    for file in [
        "app.dump",
        "app.dir",
        "app.tar",
        "app.sql",
        "app-create.sql",
        "app-clean.sql",
        "app.sql.gz",
    ] {
        let rec = drill(
            &site,
            &pg_job(
                "whole",
                &format!("dumps/{file}"),
                &format!("{MANIFEST}{check}"),
            ),
        );
        assert_eq!(rec["result"], "pass", "{file}: {}", reasons(&rec));
        assert_eq!(
            rec["verify"]["files_compared"], 3,
            "{file}: two tables and the large objects: {}",
            rec["verify"]
        );
        // The check runs against the database the data is in (`-C` makes
        // its own).
        assert_eq!(
            rec["checks"][0]["passed"], true,
            "{file}: {}",
            rec["checks"]
        );
    }
    // The same reason on every run of a compressed dump: here, a pass, and
    // the summary speaks of tables and rows.
    set_jobs(&site, &pg_job("whole", "dumps/app.sql.gz", MANIFEST));
    let out = site.run(&["run"]);
    let summary = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    for want in [
        "whole: PASS",
        "restore  2 tables, 2300 rows in ",
        "verify   3 row counts compared against manifest in ",
    ] {
        assert!(summary.contains(want), "{want:?} not in {summary}");
    }

    // A config named by a relative path (`-c rv.toml`): the dump's path is
    // resolved to an absolute one, which pg_restore, run in the sandbox,
    // still finds.
    set_jobs(&site, &pg_job("relative", "dumps/app.dump", MANIFEST));
    let out = bin()
        .current_dir(site.config.parent().unwrap())
        .arg("-c")
        .arg(site.config.file_name().unwrap())
        .args(["run", "--json"])
        .output()
        .unwrap();
    let rec = records(&out).remove(0);
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    // `evidence show` gives every step the operator guide promises: the
    // tool, argv, exit code, time and the end of the output.
    let out = site.run(&["evidence", "show", rec["id"].as_str().unwrap()]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("  tool     pg_restore (PostgreSQL) 1")
            && shown
                .contains("pg_restore --no-owner --no-privileges --no-tablespaces -d restored ")
            && shown.contains(" (exit 0, ")
            && shown.contains("      | public.orders\\t2000"),
        "{shown}"
    );

    // Without a manifest, a dump cut short, or one with no data, is not a pass.
    let rec = drill(&site, &pg_job("cut", "dumps/app-cut.sql", ""));
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains("the plain dump is incomplete: it does not end with pg_dump's closing line `-- PostgreSQL database dump complete`"),
        "{}",
        reasons(&rec)
    );
    for (file, says) in [
        (
            "app-schema.sql",
            "the dump holds no table data: 2 tables restored, not one row",
        ),
        (
            "app-schema.dump",
            "its table of contents has no TABLE DATA: a schema-only dump",
        ),
    ] {
        let rec = drill(&site, &pg_job("schema", &format!("dumps/{file}"), ""));
        assert_eq!(rec["result"], "fail", "{file}: {rec}");
        assert!(reasons(&rec).contains(says), "{file}: {}", reasons(&rec));
    }

    // Large objects left out of the dump.
    let rec = drill(&site, &pg_job("nolo", "dumps/app-nolo.dump", MANIFEST));
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains(
            "large objects mismatch: pg_catalog.pg_largeobject_metadata (large objects: 2 in the manifest, 0 restored)"
        ),
        "{}",
        reasons(&rec)
    );
    let live_key = format!("live = \"{}\"\n", live.conninfo("app"));
    let rec = drill(
        &site,
        &pg_job("nolo-live", "dumps/app-nolo.dump", &live_key),
    );
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains("(large objects: 2 live now, none restored)"),
        "{}",
        reasons(&rec)
    );

    // A dump that lacks half of a table the live database has: beyond the
    // default tolerance a failure, within a wider one drift.
    live.psql("app", "DELETE FROM orders WHERE id > 1000")
        .unwrap();
    live.dump_with("app", &["-Fc"], &d.join("app-half.dump"));
    live.psql(
        "app",
        "INSERT INTO orders SELECT i, 'part-' || i FROM generate_series(1001, 2000) i",
    )
    .unwrap();
    let rec = drill(&site, &pg_job("half", "dumps/app-half.dump", &live_key));
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains(
            "rows mismatch: public.orders (rows: 2000 live now, 1000 restored: 50.0% fewer, beyond live_tolerance 10%)"
        ),
        "{}",
        reasons(&rec)
    );
    let rec = drill(
        &site,
        &pg_job(
            "half",
            "dumps/app-half.dump",
            &format!("{live_key}live_tolerance = \"60%\"\n"),
        ),
    );
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    assert_eq!(rec["verify"]["against"], "live");
    assert_eq!(
        rec["verify"]["changed_since_backup"]["items"][0]["path"], "public.orders",
        "{}",
        rec["verify"]
    );
    // The tolerance is for live comparisons only.
    set_jobs(
        &site,
        &pg_job(
            "t",
            "dumps/app.dump",
            &format!("live_tolerance = \"5%\"\n{MANIFEST}"),
        ),
    );
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("backup.live_tolerance: only means something with `live`"),
        "{}",
        text(&out.stderr)
    );

    // A cluster dump is named as such, with what to do; it is not damage.
    let rec = drill(&site, &pg_job("cluster", "dumps/cluster.sql", ""));
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains("is a pg_dumpall cluster dump (every database and role); restore-verifier restores one database's dump: dump each database with pg_dump"),
        "{}",
        reasons(&rec)
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

// Items 1, 6, 12 and 18: a failed statement that only gives an owner or a
// privilege is harmless in every format, any other fails in every format,
// and an EUC_JP database is counted, and read, in its own names.
#[test]
fn postgres_restore_errors_follow_one_policy_in_every_format_and_encoding() {
    need("pg_dump");
    let site = tool_site();
    let live = LivePg::start(&site.path("live"));
    live.psql("postgres", "CREATE ROLE ghost").unwrap();
    live.psql("postgres", "CREATE DATABASE app").unwrap();
    live.psql(
        "app",
        "CREATE TABLE t(id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO ghost; \
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i; \
         GRANT SELECT ON t TO ghost;",
    )
    .unwrap();
    let d = site.path("dumps");
    std::fs::create_dir_all(&d).unwrap();
    live.dump_with("app", &["-Fp"], &d.join("owned.sql"));
    live.dump_with("app", &["-Fc"], &d.join("owned.dump"));
    live.psql(
        "app",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON t TO ghost USING (true)",
    )
    .unwrap();
    live.dump_with("app", &["-Fp"], &d.join("policy.sql"));
    live.dump_with("app", &["-Fc"], &d.join("policy.dump"));

    // The fresh server has no role `ghost`: its ownership and grants are
    // not data, in a plain dump as in a custom one.
    for file in ["owned.sql", "owned.dump"] {
        let rec = drill(&site, &pg_job("owned", &format!("dumps/{file}"), ""));
        assert_eq!(rec["result"], "pass", "{file}: {}", reasons(&rec));
    }
    // The record says what was let go (pg_restore runs with --no-owner and
    // --no-privileges, so only psql has such errors).
    let rec = drill(&site, &pg_job("owned", "dumps/owned.sql", ""));
    let notes = rec["restore"]["notes"].to_string();
    assert!(
        notes.contains("1 statement that only gives an owner or privileges, or only removes, failed on the throw-away server")
            && notes.contains("role \\\"ghost\\\" does not exist"),
        "{notes}"
    );
    // A policy for the missing role is a statement of another kind: both
    // formats fail, for the same reason.
    for file in ["policy.sql", "policy.dump"] {
        let rec = drill(&site, &pg_job("policy", &format!("dumps/{file}"), ""));
        assert_eq!(rec["result"], "fail", "{file}: {rec}");
        let why = reasons(&rec);
        assert!(
            why.contains("ERROR:  role \"ghost\" does not exist"),
            "{file}: {why}"
        );
        assert!(!why.contains("OWNER TO"), "{file}: {why}");
        // psql exits 0 after a failed statement: never "failed (exit code 0)".
        assert!(!why.contains("(exit code 0)"), "{file}: {why}");
    }
    let rec = drill(&site, &pg_job("policy", "dumps/policy.sql", ""));
    assert!(
        reasons(&rec).contains("psql failed (1 error reported): psql:<stdin>:"),
        "{}",
        reasons(&rec)
    );

    // EUC_JP: a table and its owner role with Japanese names.
    live.psql(
        "postgres",
        "CREATE DATABASE j ENCODING 'EUC_JP' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    .unwrap();
    // A role's name is stored in the bytes of the database it was made in.
    psql_utf8(&live, "j", "CREATE ROLE \"経理部\"");
    psql_utf8(
        &live,
        "j",
        "CREATE TABLE \"元帳\"(id int PRIMARY KEY, \"摘要\" text); ALTER TABLE \"元帳\" OWNER TO \"経理部\"; \
         INSERT INTO \"元帳\" SELECT i, '売上' || i FROM generate_series(1, 2000) i;",
    );
    let m = live.manifest("j", &site.path("j.pgmanifest"));
    assert!(
        m.contains("\"path\":\"public.元帳\",\"type\":\"table\",\"size\":2000"),
        "table names are stored exactly: {m}"
    );
    live.dump_with("j", &["-Fp"], &d.join("j.sql"));
    live.dump_with("j", &["-Fc"], &d.join("j.dump"));
    let jm = "[job.verify]\nmanifest = \"j.pgmanifest\"\n";
    for file in ["j.sql", "j.dump"] {
        let rec = drill(&site, &pg_job("euc", &format!("dumps/{file}"), jm));
        assert_eq!(rec["result"], "pass", "{file}: {}", reasons(&rec));
        assert_eq!(rec["verify"]["files_compared"], 2, "{}", rec["verify"]);
    }
    // One malformed value in the EUC_JP data: the COPY fails and restores
    // none of the 2,000 rows. The owner's error before it, in EUC_JP bytes
    // that are not UTF-8, does not hide it.
    let mut dump = std::fs::read(d.join("j.sql")).unwrap();
    let copy = dump
        .windows(5)
        .position(|w| w == b"COPY ")
        .expect("a COPY in the dump");
    let row = copy + dump[copy..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let value = row + dump[row..].iter().position(|b| *b == b'\t').unwrap() + 1;
    dump[value] = 0xff;
    dump[value + 1] = 0xfe;
    std::fs::write(d.join("j-bad.sql"), dump).unwrap();
    let rec = drill(&site, &pg_job("euc-bad", "dumps/j-bad.sql", ""));
    assert_eq!(rec["result"], "fail", "{rec}");
    assert!(
        reasons(&rec).contains("invalid byte sequence for encoding \"EUC_JP\": 0xff"),
        "{}",
        reasons(&rec)
    );
    assert!(is_empty_dir(&site.path("sandbox")));
}

// What production has and a throw-away server lacks is not a failure of the
// backup: a tablespace, a foreign server's user mapping, a temporary table
// in a live session. What the drill host lacks (an extension) is an error,
// and so is a live role that row-level security would let count only part
// of a table (before, a short count and a false pass).
#[test]
fn postgres_drills_tell_what_production_has_from_what_the_dump_lacks() {
    need("pg_dump");
    let (site, live) = orders_site();
    let (u, g) = postgres_ids();
    let ts = site.path("fastspace");
    std::fs::create_dir_all(&ts).unwrap();
    std::os::unix::fs::chown(&ts, Some(u), Some(g)).unwrap();
    live.psql("postgres", "CREATE ROLE app_owner").unwrap();
    live.psql(
        "postgres",
        &format!("CREATE TABLESPACE fastspace LOCATION '{}'", ts.display()),
    )
    .unwrap();
    live.psql(
        "app",
        "CREATE TABLE fast(id int) TABLESPACE fastspace; INSERT INTO fast VALUES (1), (2); \
         CREATE EXTENSION postgres_fdw; CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw; \
         CREATE USER MAPPING FOR app_owner SERVER s OPTIONS (user 'x');",
    )
    .unwrap();
    let d = site.path("dumps");
    std::fs::create_dir_all(&d).unwrap();
    live.dump_with("app", &["-Fp"], &d.join("app.sql"));
    live.dump_with("app", &["-Fc"], &d.join("app.dump"));
    live.manifest("app", &site.path("app.pgmanifest"));
    for file in ["app.sql", "app.dump"] {
        let rec = drill(&site, &pg_job("prod", &format!("dumps/{file}"), MANIFEST));
        assert_eq!(rec["result"], "pass", "{file}: {}", reasons(&rec));
        assert_eq!(
            rec["verify"]["files_compared"], 4,
            "{file}: {}",
            rec["verify"]
        );
    }

    // A custom-format dump compressed again is named as such, with what to do.
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(d.join("app.dump"))
        .output()
        .unwrap();
    std::fs::write(d.join("app.dump.gz"), gz.stdout).unwrap();
    let rec = drill(&site, &pg_job("gz", "dumps/app.dump.gz", MANIFEST));
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains("is a pg_dump archive (custom or tar format) compressed with gzip"),
        "{}",
        reasons(&rec)
    );

    // An extension the drill host does not have.
    let sql = std::fs::read_to_string(d.join("app.sql")).unwrap().replace(
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw",
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw_x",
    );
    std::fs::write(d.join("app-ext.sql"), sql).unwrap();
    let rec = drill(&site, &pg_job("ext", "dumps/app-ext.sql", MANIFEST));
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains("this host lacks what the dump needs: ")
            && reasons(&rec).contains("postgres_fdw_x"),
        "{}",
        reasons(&rec)
    );

    // Live: a temporary table in another session is not counted; a table
    // under row-level security the live role cannot see all of is an error,
    // never a short count.
    let mut holder = Command::new("psql")
        .args(["-X", "-q", "-d", &live.conninfo("app")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = holder.stdin.as_mut().unwrap();
        stdin
            .write_all(b"CREATE TEMP TABLE scratch(id int);\nSELECT pg_sleep(60);\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let live_key = format!("live = \"{}\"\n", live.conninfo("app"));
    let rec = drill(&site, &pg_job("live", "dumps/app.dump", &live_key));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    live.psql(
        "app",
        "CREATE ROLE monitor LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public, billing TO monitor; \
         GRANT USAGE ON SCHEMA billing TO monitor; ALTER TABLE orders ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY few ON orders TO monitor USING (id <= 5);",
    )
    .unwrap();
    let as_monitor = format!(
        "live = \"{}\"\n",
        live.conninfo("app")
            .replace("user=postgres", "user=monitor")
    );
    let rec = drill(&site, &pg_job("rls", "dumps/app.dump", &as_monitor));
    assert_eq!(rec["result"], "error", "{rec}");
    assert!(
        reasons(&rec).contains("row-level security")
            && reasons(&rec).contains("connect as the tables' owner or a role with BYPASSRLS"),
        "{}",
        reasons(&rec)
    );
}
