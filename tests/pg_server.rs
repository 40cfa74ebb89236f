//! The throw-away PostgreSQL server a `postgres` drill restores into: where
//! its socket goes, whether its account can reach the sandbox, and a cut dump
//! against the job's timeout (issue 15, items 10, 17 and 19). Real
//! PostgreSQL; the tests run as root, so the server runs as `postgres`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use super::*;

/// A live database `app` with `rows` orders.
fn live_app(site: &Site, rows: u32) -> LivePg {
    let live = LivePg::start(&site.path("live"));
    live.psql("postgres", "CREATE DATABASE app").unwrap();
    live.psql(
        "app",
        &format!(
            "CREATE TABLE orders(id int PRIMARY KEY, part text NOT NULL); \
             INSERT INTO orders SELECT i, 'part-' || i FROM generate_series(1, {rows}) i;"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    live
}

/// The `unix_socket_directories=` setting of a running throw-away server
/// whose command line names `sandbox_dir`.
fn socket_dir_of_server(sandbox_dir: &str) -> Option<PathBuf> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a.contains(sandbox_dir)) {
            return None;
        }
        args.iter()
            .find_map(|a| a.strip_prefix("unix_socket_directories="))
            .map(PathBuf::from)
    })
}

/// Runs the site's one drill, watching for its server's socket directory,
/// which must be private to the server's account while it runs and gone
/// after the drill. Returns the record and that directory.
fn run_seeing_socket_dir(site: &Site, needle: &str) -> (Value, PathBuf) {
    let mut socket_dir = None;
    let out = run_while(site, || {
        if socket_dir.is_none()
            && let Some(dir) = socket_dir_of_server(needle)
            && let Ok(m) = std::fs::metadata(&dir)
        {
            // Private to the server's account: trust authentication is safe
            // only because nobody else reaches the socket.
            assert_eq!(m.mode() & 0o7777, 0o700, "{}", dir.display());
            assert_eq!(m.uid(), postgres_ids().0, "{}", dir.display());
            socket_dir = Some(dir);
        }
    });
    let mut recs = records(&out);
    assert_eq!(recs.len(), 1, "{}", text(&out.stderr));
    let socket_dir = socket_dir.expect("never saw the throw-away server's socket directory");
    assert!(
        !socket_dir.exists(),
        "the socket directory {} outlived the drill",
        socket_dir.display()
    );
    (recs.remove(0), socket_dir)
}

// Pins (issue 15, item 10): the server's socket was made in the sandbox, so
// a sandbox_dir as long as the default /var/tmp/restore-verifier and a job
// name of 23 characters put the socket's path over the 107 bytes a Unix
// socket takes. Every drill erred, with the server log's last three lines
// backwards ("database system is shut down | FATAL … | WARNING …") and
// without "too long"; `config check` said OK.
#[test]
fn postgres_socket_stays_short_with_a_long_sandbox_dir_and_job_name() {
    need("pg_dump");
    let site = tool_site();
    let live = live_app(&site, 500);
    live.dump_with("app", &["-F", "c"], &site.path("dumps/app.dump"));
    let sandbox_dir = site.path("var/tmp/restore-verifier");
    let name = "nightly-erp-orders-dump";
    assert!(sandbox_dir.as_os_str().len() >= 25 && name.len() >= 23);
    std::fs::write(
        &site.config,
        format!(
            "[agent]\nstate_dir = \"state\"\nsandbox_dir = \"{}\"\n\n[[job]]\nname = \"{name}\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app.dump\"\ntables = [\"public.orders\"]\n[[job.check]]\nrun = [\"psql\", \"-X\", \"-tAc\", \"SELECT count(*) FROM orders\"]\nexpect_stdout = \"500\"\n",
            sandbox_dir.display()
        ),
    )
    .unwrap();
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let needle = sandbox_dir.display().to_string();
    let (rec, socket_dir) = run_seeing_socket_dir(&site, &needle);
    assert_eq!(rec["result"], "pass", "{}", reasons(&rec));
    assert_eq!(rec["verify"]["missing"]["count"], 0);
    assert_eq!(rec["checks"][0]["passed"], true, "{}", rec["checks"]);
    assert!(
        socket_dir.join(".s.PGSQL.5432").as_os_str().len() <= 107,
        "{}",
        socket_dir.display()
    );
    assert!(is_empty_dir(&sandbox_dir));

    // A drill that fails once the server runs removes it all the same.
    let mut d = std::fs::read(site.path("dumps/app.dump")).unwrap();
    let n = d.len();
    for b in &mut d[n / 2..n / 2 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(site.path("dumps/app.dump"), d).unwrap();
    let (rec, _) = run_seeing_socket_dir(&site, &needle);
    assert_eq!(rec["result"], "fail", "{}", reasons(&rec));
    assert!(reasons(&rec).contains("pg_restore"), "{}", reasons(&rec));
    assert!(is_empty_dir(&sandbox_dir));
}

// Pins (issue 15, item 17): with a sandbox_dir under a root directory of
// mode 0700 the server's account cannot reach, the drill said "cannot run
// initdb: Permission denied …; install it", and `config check` said OK.
#[test]
fn postgres_sandbox_dir_the_server_account_cannot_reach() {
    let site = tool_site();
    // The site itself is reachable; one directory in it is not.
    std::fs::set_permissions(site.tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let locked = site.path("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sandbox_dir = locked.join("sandboxes");
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    std::fs::write(
        site.path("dumps/app.sql"),
        "CREATE TABLE t(id int);\nINSERT INTO t VALUES (1);\n\n--\n-- PostgreSQL database dump complete\n--\n\n",
    )
    .unwrap();
    std::fs::write(
        &site.config,
        format!(
            "[agent]\nstate_dir = \"state\"\nsandbox_dir = \"{}\"\n\n[[job]]\nname = \"app\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app.sql\"\n",
            sandbox_dir.display()
        ),
    )
    .unwrap();
    let blocked = format!("{} (mode 0700, owner root)", locked.display());
    let fix = format!("chmod o+x {}", locked.display());

    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", text(&out.stdout));
    assert!(err.contains("job[0].backup: "), "{err}");
    for want in ["the `postgres` account", "cannot reach", &blocked, &fix] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }

    let rec = records(&site.run(&["run", "--json"])).remove(0);
    assert_eq!(rec["result"], "error", "{rec}");
    let why = reasons(&rec);
    for want in [
        "the `postgres` account",
        "cannot reach sandbox_dir",
        &blocked,
        &fix,
    ] {
        assert!(why.contains(want), "{want:?} not in: {why}");
    }
    assert!(!why.contains("install it"), "{why}");
    assert!(is_empty_dir(&sandbox_dir));
}

// Pins (issue 15, item 19): pg_restore reading a tar-format dump cut in the
// middle of a table's data spins at full CPU until it is killed, and the job
// timeout that killed it was a day by default. The cut is seen in the tar
// headers before any server starts.
#[test]
fn a_cut_tar_format_dump_fails_at_once_not_at_the_timeout() {
    need("pg_dump");
    let site = tool_site();
    let live = live_app(&site, 20_000);
    // A table whose data comes after the cut: pg_restore looks for it.
    live.psql(
        "app",
        "CREATE TABLE parts(id int); INSERT INTO parts SELECT generate_series(1, 5000);",
    )
    .unwrap();
    let whole = site.path("dumps/whole.tar");
    live.dump_with("app", &["-F", "t"], &whole);
    let data = std::fs::read(&whole).unwrap();
    // The members: toc.dat, then the table's data (NNNN.dat), restore.sql.
    let member = {
        let list = Command::new("tar").arg("tf").arg(&whole).output().unwrap();
        text(&list.stdout)
            .lines()
            .find(|l| *l != "toc.dat" && l.ends_with(".dat"))
            .unwrap()
            .to_string()
    };
    std::fs::write(site.path("dumps/app.tar"), &data[..data.len() / 2]).unwrap();
    set_jobs(
        &site,
        "\n[[job]]\nname = \"cut\"\ntimeout = \"20s\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app.tar\"\n",
    );
    let t0 = Instant::now();
    let rec = records(&site.run(&["run", "--json"])).remove(0);
    let took = t0.elapsed();
    assert_eq!(rec["result"], "fail", "{rec}");
    let why = reasons(&rec);
    assert!(why.contains("is cut short"), "{why}");
    assert!(why.contains(&member), "{member} not in: {why}");
    assert!(!why.contains("timed out"), "{why}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {why}");
    assert!(is_empty_dir(&site.path("sandbox")));
}

// Pins (issue 15, item 10): `config check` said OK for a postgres job whose
// every drill would err. A socket path too long for the sandbox now goes to
// a short directory beside it, in sandbox_dir; a sandbox_dir too long even
// for that cannot work, and `config check` says so, with the length to use.
#[test]
fn config_check_says_when_the_postgres_socket_has_nowhere_to_go() {
    let site = tool_site();
    std::fs::set_permissions(site.tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::create_dir_all(site.path("dumps")).unwrap();
    std::fs::write(
        site.path("dumps/app.sql"),
        "CREATE TABLE t(id int);\n\n--\n-- PostgreSQL database dump complete\n--\n\n",
    )
    .unwrap();
    let config = |sandbox_dir: &Path| {
        std::fs::write(
            &site.config,
            format!(
                "[agent]\nstate_dir = \"state\"\nsandbox_dir = \"{}\"\n\n[[job]]\nname = \"nightly-erp-orders-dump\"\ntimeout = \"2m\"\n[job.backup]\ntype = \"postgres\"\npath = \"dumps/app.sql\"\n",
                sandbox_dir.display()
            ),
        )
        .unwrap();
    };
    let deep = site.path(&format!("var/tmp/{}", "d".repeat(40)));
    assert!(deep.as_os_str().len() > 51);
    config(&deep);
    let out = site.run(&["config", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", text(&out.stdout));
    for want in [
        "job[0].backup: no room for the throw-away PostgreSQL server's socket",
        "over the 107 a Unix socket allows",
        "shorten sandbox_dir (to 51 bytes or fewer)",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    // As long as the default, with the same job name: the short directory
    // beside the sandbox fits.
    config(&site.path("var/tmp/restore-verifier"));
    let out = site.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
