//! PostgreSQL dumps end to end: a throw-away cluster, and a plain dump that
//! cannot run programs as the agent.

use super::*;

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
