//! A live PostgreSQL for the tests: socket only, in the test's directory,
//! stopped on drop; and a site with an application database.

use super::*;

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
pub const PG_DUMP_COMPLETE: &str = "\n--\n-- PostgreSQL database dump complete\n--\n\n";

pub fn pg_bin(name: &str) -> PathBuf {
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

/// A site with a live database `app`: 2,000 `orders`, 300 `billing.invoices`.
pub fn orders_site() -> (Site, LivePg) {
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
