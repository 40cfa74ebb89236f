//! `postgres`: restores a `pg_dump` file (custom, directory, tar or plain
//! format; `path` may be a glob, newest wins) into a throw-away PostgreSQL
//! cluster made inside the sandbox. The cluster listens only on a unix socket
//! (in the sandbox, or in a short private directory beside it when the path there
//! would be too long for a socket), never on TCP, and is stopped when the
//! drill ends.
//!
//! Verification: the restore's own errors; `tables` that must exist; and, with
//! a table manifest taken at dump time (`manifest create --postgres`), exact
//! row counts per table. Post-restore checks get PGHOST/PGPORT/PGUSER/
//! PGDATABASE, so `psql -tAc "SELECT …"` checks run against the restored data.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::tool::cause::{self, Tool};
use super::{BackupInfo, Driver, DriverError, RestoreStats, newest_match, pgdump, tool};
use crate::drill::deadline::Deadline;
use crate::drill::process::{STEP_MARKER, StepOptions, run_step};
use crate::tree::compare::CompareReport;
use crate::tree::manifest::{ManifestError, ManifestReader};
use crate::tree::walk::{Entry, Handle, Kind};

const PORT: &str = "5432";
const DB: &str = "restored";

/// Exact row counts of every user table, and the number of large objects
/// (as the rows of `pg_catalog.pg_largeobject_metadata`), one query.
const COUNT_SQL: &str = "SELECT n.nspname || '.' || c.relname, \
 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text \
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
 UNION ALL SELECT 'pg_catalog.pg_largeobject_metadata', count(*)::text FROM pg_catalog.pg_largeobject_metadata";

/// The row of [`COUNT_SQL`] that counts large objects, not a table's rows.
pub const LARGE_OBJECTS: &str = "pg_catalog.pg_largeobject_metadata";

/// Names come back in UTF-8 whatever the database's encoding (an EUC_JP
/// database's table names are stored exactly, not mangled).
const CLIENT_ENCODING: (&str, &str) = ("PGCLIENTENCODING", "UTF8");

#[derive(Debug)]
pub struct PostgresDriver {
    pub path: String,
    pub backup_time: Option<SystemTime>,
    /// Tables that must exist after the restore ("schema.table").
    pub tables: Vec<String>,
    /// Row counts per table, taken at dump time.
    pub manifest: Option<PathBuf>,
    /// Or: a libpq connection string of the live database, queried read-only
    /// at drill time (row differences are drift: the dump is older).
    pub live: Option<String>,
    /// How many percent of a table's live rows the restore may lack and
    /// still count as drift (`live_tolerance`).
    pub live_tolerance: f64,
    server: Mutex<Option<Child>>,
    /// The server's socket directory outside the sandbox (when the one in
    /// the sandbox would make too long a socket path), removed by `finish`.
    socket_dir: Mutex<Option<SocketDir>>,
}

impl PostgresDriver {
    pub fn new(
        path: String,
        backup_time: Option<SystemTime>,
        tables: Vec<String>,
        manifest: Option<PathBuf>,
    ) -> Self {
        PostgresDriver {
            path,
            backup_time,
            tables,
            manifest,
            live: None,
            live_tolerance: crate::tree::drift::LIVE_TOLERANCE_PERCENT,
            server: Mutex::new(None),
            socket_dir: Mutex::new(None),
        }
    }
}

/// The newest `/usr/lib/postgresql/N/bin`, else whatever is on PATH.
fn bindir() -> PathBuf {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            if let Ok(v) = e.file_name().to_string_lossy().parse::<u32>() {
                let bin = e.path().join("bin");
                if bin.join("postgres").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, bin));
                }
            }
        }
    }
    best.map(|(_, b)| b).unwrap_or_default()
}

fn tool_path(bin: &Path, name: &str) -> String {
    if bin.as_os_str().is_empty() {
        name.to_string()
    } else {
        bin.join(name).display().to_string()
    }
}

/// PostgreSQL refuses to run its server as root: use the `postgres` account.
fn server_user() -> Result<Option<(u32, u32)>, DriverError> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Ok(None);
    }
    crate::drill::process::RunAs::lookup("postgres")
        .ok()
        .map(|r| Some((r.uid, r.gid)))
        .ok_or_else(|| {
            DriverError::NoTool(
                "running as root, but there is no `postgres` user to run the throw-away cluster as; install PostgreSQL's server package or run restore-verifier as another user".into(),
            )
        })
}

fn chown(p: &Path, ids: Option<(u32, u32)>) -> Result<(), DriverError> {
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(p, Some(u), Some(g)).map_err(|e| DriverError::Sandbox {
            path: p.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

fn mkdir(p: &Path, ids: Option<(u32, u32)>) -> Result<(), DriverError> {
    std::fs::create_dir_all(p).map_err(|e| DriverError::Sandbox {
        path: p.to_path_buf(),
        source: e,
    })?;
    chown(p, ids)
}

/// The longest path a Unix socket may have (`sun_path` less its NUL).
const SOCKET_PATH_MAX: usize = 107;
/// The socket's path for a socket directory `dir`.
fn socket_path_len(dir: &Path) -> usize {
    dir.as_os_str().len() + "/.s.PGSQL.".len() + PORT.len()
}

/// The server's socket directory in `sandbox`, when the socket's path there
/// fits in a Unix socket address; else `None`: a short directory beside the
/// sandbox is used instead ([`short_socket_dir`]).
fn socket_dir_in_sandbox(sandbox: &Path) -> Option<PathBuf> {
    let dir = sandbox.join("pg").join("sock");
    (socket_path_len(&dir) <= SOCKET_PATH_MAX).then_some(dir)
}

/// The short socket directory of the drill whose sandbox is `sandbox`:
/// `sandbox_dir/rv-s-<drill id>`, whatever the job's name. It ends with the
/// drill's id, so crash recovery removes it with the sandbox it belongs to.
fn short_socket_path(sandbox: &Path) -> PathBuf {
    let name = sandbox
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = name.get(name.len().saturating_sub(36)..).unwrap_or(&name);
    sandbox
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{}s-{id}", crate::drill::sandbox::PREFIX))
}

/// A directory removed when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes the short socket directory ([`short_socket_path`]): new (never an
/// existing one), owner-only (0700) and owned by the server's account, since
/// trust authentication is safe only because nobody else can reach the
/// socket. Removed when the drill ends (`finish`, or its drop).
fn short_socket_dir(sandbox: &Path, ids: Option<(u32, u32)>) -> Result<SocketDir, DriverError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = short_socket_path(sandbox);
    let too_long = socket_path_len(&dir) > SOCKET_PATH_MAX;
    let why = |e: String| {
        DriverError::Setup(format!(
            "no room for the throw-away PostgreSQL server's socket: in the sandbox its path would be {} bytes, over the {SOCKET_PATH_MAX} a Unix socket allows, and {} {e}; shorten sandbox_dir (to {} bytes or fewer)",
            socket_path_len(&sandbox.join("pg").join("sock")),
            dir.display(),
            SOCKET_PATH_MAX - socket_path_len(Path::new("")) - "/rv-s-".len() - 36,
        ))
    };
    if too_long {
        return Err(why(format!(
            "would make it {} bytes too",
            socket_path_len(&dir)
        )));
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| why(format!("cannot be made ({e})")))?;
    let guard = SocketDir(dir.clone());
    // Whatever the umask made of it.
    std::fs::set_permissions(&guard.0, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| why(format!("cannot be made private ({e})")))?;
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(&guard.0, Some(u), Some(g))
            .map_err(|e| why(format!("cannot be given to the server's account ({e})")))?;
    }
    Ok(guard)
}

/// Why the server's account cannot reach `sandbox_dir` (its directories
/// from `/` down must let it search), with what would let it; `None` when
/// it can.
fn unreachable(sandbox_dir: &Path, (uid, gid): (u32, u32)) -> Option<String> {
    let b = crate::drill::reach::first_blocking(sandbox_dir, uid, gid)?;
    Some(format!(
        "the `postgres` account (uid {uid}), which runs the throw-away PostgreSQL server, cannot reach sandbox_dir {}: {} does not let it search; run `{}`, or set [agent] sandbox_dir to a directory it can reach",
        sandbox_dir.display(),
        b.describe(),
        b.fix(uid, gid)
    ))
}

/// What cannot work for a `postgres` job with sandboxes under `sandbox_dir`
/// (the `config check` view): the server's account cannot reach
/// `sandbox_dir`; or the socket's path in `sandbox` (a drill's sandbox of
/// the job) is too long, and so is the short one beside it.
/// Only a root agent runs the server as `postgres`; others, as themselves.
pub fn setup_problems(sandbox_dir: &Path, sandbox: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match server_user() {
        Ok(Some(ids)) => problems.extend(unreachable(sandbox_dir, ids)),
        Ok(None) => {}
        Err(e) => problems.push(e.to_string()),
    }
    if socket_dir_in_sandbox(sandbox).is_none()
        && socket_path_len(&short_socket_path(sandbox)) > SOCKET_PATH_MAX
    {
        // (Too long: nothing is made.)
        problems.extend(short_socket_dir(sandbox, None).err().map(|e| e.to_string()));
    }
    problems
}

/// The reason a server that did not start gives, from its log: the FATAL
/// (or PANIC) lines first, then what led to them (the log's other warnings
/// and messages, in file order, without the routine ones), at most five.
fn server_log_reason(log: &str) -> String {
    let routine = [
        "starting PostgreSQL",
        "database system is shut down",
        "database system was shut down at",
        "listening on ",
    ];
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !routine.iter().any(|r| l.contains(r)))
        .collect();
    let fatal = |l: &&str| l.starts_with("FATAL:") || l.starts_with("PANIC:");
    let mut picked: Vec<&str> = lines.iter().copied().filter(fatal).collect();
    picked.extend(lines.iter().copied().filter(|l| !fatal(l)));
    if picked.is_empty() {
        // Nothing but routine lines: the last ones, in file order.
        let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        picked = all[all.len().saturating_sub(3)..].to_vec();
    }
    picked.truncate(5);
    if picked.is_empty() {
        "its log is empty".into()
    } else {
        picked.join(" | ")
    }
}

/// The rows of `psql -tA -F '\t'` output, as (name, count).
fn count_rows(stdout: &[u8]) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once('\t')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect();
    // In the manifest's order, whatever the database's collation.
    rows.sort_by(|a, b| Path::new(&a.0).cmp(Path::new(&b.0)));
    rows
}

/// Runs `psql -X -tA` with `args` against the throw-away server (`env`)
/// as the step `name`; returns what it printed.
fn query(
    name: &str,
    args: &[&str],
    server: (&Path, &[(OsString, OsString)], &Path),
    deadline: &Deadline,
    steps: &mut Vec<crate::evidence::record::StepRecord>,
) -> Result<Vec<u8>, DriverError> {
    let (bin, env, cwd) = server;
    let mut opts = StepOptions::in_dir(cwd);
    opts.keep_stdout = 64 << 20;
    opts.env = env.to_vec();
    opts.env
        .push((CLIENT_ENCODING.0.into(), CLIENT_ENCODING.1.into()));
    let mut argv = vec![tool_path(bin, "psql"), "-X".into(), "-tA".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Ok(tool::step(name, argv, &opts, deadline, steps, |_| None)?.stdout)
}

/// The exact row counts in the throw-away server's database (`PGDATABASE`).
fn counts(
    server: (&Path, &[(OsString, OsString)], &Path),
    deadline: &Deadline,
    steps: &mut Vec<crate::evidence::record::StepRecord>,
) -> Result<Vec<(String, u64)>, DriverError> {
    let args = ["-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", COUNT_SQL];
    let out = query("psql (row counts)", &args, server, deadline, steps)?;
    Ok(count_rows(&out))
}

/// Exact row counts of a live database, queried read-only.
fn live_counts(conninfo: &str, deadline: &Deadline) -> Result<Vec<(String, u64)>, String> {
    let bin = bindir();
    let mut opts = StepOptions::in_dir(&std::env::temp_dir());
    opts.keep_stdout = 64 << 20;
    opts.env = vec![
        (
            "PGOPTIONS".into(),
            // Row-level security would count only the rows this role sees:
            // with it off, such a table is an error, never a short count.
            "-c default_transaction_read_only=on -c row_security=off".into(),
        ),
        ("PGCONNECT_TIMEOUT".into(), "10".into()),
        (CLIENT_ENCODING.0.into(), CLIENT_ENCODING.1.into()),
    ];
    if let Some(f) = std::env::var_os("PGPASSFILE") {
        opts.env.push(("PGPASSFILE".into(), f));
    }
    let argv = vec![
        tool_path(&bin, "psql"),
        "-X".into(),
        "-tA".into(),
        "-F".into(),
        "\t".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-d".into(),
        conninfo.into(),
        "-c".into(),
        COUNT_SQL.into(),
    ];
    let out = run_step(&argv, &opts, deadline).map_err(|e| e.to_string())?;
    if !out.success() {
        let said = out.last_words();
        if said.contains("row-level security") {
            return Err(format!(
                "{said}: a table has row-level security, so this role would count only the rows it sees; connect as the tables' owner or a role with BYPASSRLS"
            ));
        }
        return Err(format!("psql failed ({}): {said}", out.status_text()));
    }
    Ok(count_rows(&out.stdout))
}

/// Writes a table manifest (exact row counts) of a live database, read-only.
/// `conninfo` is a libpq connection string; it is never written to the file.
pub fn table_counts_manifest(
    conninfo: &str,
    database_label: &str,
    out: &Path,
) -> Result<crate::tree::manifest::ManifestSummary, ManifestError> {
    let rows =
        live_counts(conninfo, &Deadline::after(Duration::from_secs(3600))).map_err(|message| {
            ManifestError::Tree {
                path: PathBuf::from(database_label),
                message,
            }
        })?;
    let entries = rows.into_iter().map(|(name, n)| {
        let objects = name == LARGE_OBJECTS;
        Ok((
            Entry {
                rel: PathBuf::from(name),
                kind: Kind::Other,
                size: n,
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: UNIX_EPOCH,
                ctime: UNIX_EPOCH,
                btime: None,
                target: None,
                sha256: None,
                kind_label: Some(if objects { "large objects" } else { "table" }.into()),
                handle: Handle::Path,
            },
            None,
        ))
    });
    crate::tree::manifest::write(out, &format!("postgres:{database_label}"), entries)
}

impl Driver for PostgresDriver {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn locate(&self, _deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        let path = newest_match(&self.path).or_else(|e| {
            // A directory-format dump is a directory.
            glob::glob(&self.path)
                .ok()
                .and_then(|mut g| g.find_map(|p| p.ok().filter(|p| p.join("toc.dat").exists())))
                .ok_or(e)
        })?;
        super::file_backup("postgres", path, self.backup_time)
    }

    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        let dump = backup
            .location
            .clone()
            .ok_or_else(|| DriverError::NotFound(self.path.clone()))?;
        // A tar-format dump cut short makes pg_restore spin until the job's
        // timeout: its tar headers tell at once, before any server starts.
        if let Some(detail) = tar_dump_cut(&dump) {
            return Err(DriverError::Damaged { path: dump, detail });
        }
        let bin = bindir();
        let ids = server_user()?;
        stats.tool = tool::version(
            &[&tool_path(&bin, "pg_restore"), "--version"],
            sandbox,
            deadline,
        );
        // The server's account must reach the sandbox; initdb would only
        // say "Permission denied".
        if let Some(ids) = ids
            && let Some(why) = sandbox.parent().and_then(|dir| unreachable(dir, ids))
        {
            return Err(DriverError::Setup(why));
        }
        let pg = sandbox.join("pg");
        let data = pg.join("data");
        if ids.is_some() {
            // The server's account must reach its directories; nobody else may
            // list the sandbox (search permission only).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(sandbox, std::fs::Permissions::from_mode(0o711)).map_err(
                |e| DriverError::Sandbox {
                    path: sandbox.to_path_buf(),
                    source: e,
                },
            )?;
        }
        mkdir(&pg, ids)?;
        // The socket's directory: owner-only, in the sandbox when the
        // socket's path fits there (107 bytes), else a short one beside it.
        let sock = match socket_dir_in_sandbox(sandbox) {
            Some(sock) => {
                use std::os::unix::fs::PermissionsExt;
                mkdir(&sock, ids)?;
                std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o700)).map_err(
                    |e| DriverError::Sandbox {
                        path: sock.clone(),
                        source: e,
                    },
                )?;
                sock
            }
            None => {
                let dir = short_socket_dir(sandbox, ids)?;
                let sock = dir.0.clone();
                *self.socket_dir.lock().expect("socket dir lock") = Some(dir);
                sock
            }
        };
        // initdb, as the server's account.
        let initdb = vec![
            tool_path(&bin, "initdb"),
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
        ];
        let mut opts = StepOptions::in_dir(&pg);
        opts.run_as = ids;
        tool::step("initdb", initdb, &opts, deadline, &mut stats.steps, |_| {
            None
        })?;
        // The server: a unix socket only, no TCP at all.
        let log = File::create(pg.join("server.log")).map_err(|e| DriverError::Sandbox {
            path: pg.join("server.log"),
            source: e,
        })?;
        let _ = chown(&pg.join("server.log"), ids);
        // The server runs the dump's SQL (COPY … FROM PROGRAM as superuser):
        // never with the agent's ambient capabilities.
        let mut server = vec![tool_path(&bin, "postgres")];
        if crate::drill::process::has_ambient_caps() {
            server = crate::drill::process::without_caps(&server);
        }
        let mut cmd = Command::new(&server[0]);
        cmd.args(&server[1..])
            .args([
                "-D",
                &data.display().to_string(),
                "-p",
                PORT,
                "-c",
                "listen_addresses=",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", sock.display()))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=10",
                // Log lines without time and pid: a reason quotes them.
                "-c",
                "log_line_prefix=",
                // Trust authentication is safe only because nobody else can reach
                // the socket: owner-only socket in an owner-only directory.
                "-c",
                "unix_socket_permissions=0700",
            ])
            .current_dir(&pg)
            .env_clear()
            .env("PATH", crate::drill::process::SAFE_PATH)
            .env("LANG", "C.UTF-8")
            .env(STEP_MARKER.0, STEP_MARKER.1)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| DriverError::Sandbox {
                path: pg.clone(),
                source: e,
            })?)
            .stderr(log)
            .process_group(0);
        if let Some((u, g)) = ids {
            cmd.uid(u).gid(g);
        }
        let child = cmd.spawn().map_err(|e| {
            DriverError::NoTool(format!("cannot start postgres from {}: {e}", bin.display()))
        })?;
        *self.server.lock().expect("server lock") = Some(child);
        let env: Vec<(OsString, OsString)> = vec![
            ("PGHOST".into(), sock.clone().into()),
            ("PGPORT".into(), PORT.into()),
            ("PGUSER".into(), "postgres".into()),
            ("PGDATABASE".into(), DB.into()),
        ];
        let mut client = StepOptions::in_dir(&pg);
        client.env = env.clone();
        client.keep_stdout = 1 << 20;
        // Ready when it answers.
        let t0 = Instant::now();
        loop {
            deadline.check()?;
            let ready = run_step(
                &[
                    tool_path(&bin, "pg_isready"),
                    "-q".into(),
                    "-d".into(),
                    "postgres".into(),
                ],
                &client,
                &Deadline::after(Duration::from_secs(5)),
            )
            .is_ok_and(|o| o.success());
            if ready {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60)
                || self
                    .server
                    .lock()
                    .expect("server lock")
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
            {
                let log = std::fs::read(pg.join("server.log")).unwrap_or_default();
                return Err(DriverError::NoTool(format!(
                    "the throw-away PostgreSQL server did not start: {}",
                    server_log_reason(&String::from_utf8_lossy(&log))
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tool::step(
            "createdb",
            vec![tool_path(&bin, "createdb"), DB.into()],
            &client,
            deadline,
            &mut stats.steps,
            |_| None,
        )?;
        // The restore, the way an operator would run it.
        let mut head = [0u8; 8];
        let got = File::open(&dump)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let head = &head[..got];
        let is_archive = dump.is_dir() || head.starts_with(b"PGDMP") || is_tar(&dump);
        // What an archive holds, from its table of contents.
        let toc = if is_archive {
            let list = tool::step(
                "pg_restore (table of contents)",
                vec![
                    tool_path(&bin, "pg_restore"),
                    "--list".into(),
                    dump.display().to_string(),
                ],
                &client,
                deadline,
                &mut stats.steps,
                |_| None,
            )?;
            Some(pgdump::toc_counts(&String::from_utf8_lossy(&list.stdout)))
        } else {
            None
        };
        let script = if is_archive {
            dump.clone()
        } else {
            plain_script(&dump, head, &pg, deadline)?
        };
        let (name, argv) = if is_archive {
            (
                "pg_restore",
                vec![
                    tool_path(&bin, "pg_restore"),
                    "--no-owner".into(),
                    "--no-privileges".into(),
                    // The drill host has none of production's tablespaces.
                    "--no-tablespaces".into(),
                    "-d".into(),
                    DB.into(),
                    dump.display().to_string(),
                ],
            )
        } else {
            (
                "psql",
                vec![
                    tool_path(&bin, "psql"),
                    "-X".into(),
                    "-q".into(),
                    // Each failed statement follows its error: the policy on
                    // which errors are harmless is by statement type.
                    "--echo-errors".into(),
                    "-f".into(),
                    "-".into(),
                ],
            )
        };
        let log = pg.join("restore.log");
        let mut restore_opts = client.clone();
        restore_opts.stderr_file = Some(log.clone());
        if !is_archive {
            // A plain dump is a psql script: its meta-commands (`\! cmd`) run
            // programs. The agent opens the dump; psql reads it from stdin as
            // the server's account, without the agent's capabilities, and, as
            // root, without network in its own PID namespace, so whatever a
            // hostile dump starts ends with the restore.
            restore_opts.stdin_file = Some(script);
            restore_opts.drop_caps = true;
            restore_opts.run_as = ids;
            if rustix::process::geteuid().as_raw() == 0 {
                restore_opts.contained = true;
                restore_opts.no_network = true;
            }
        }
        let out = match run_step(&argv, &restore_opts, deadline) {
            Ok(o) => o,
            Err(crate::drill::process::StepError::Spawn { program, source }) => {
                return Err(DriverError::NoTool(format!(
                    "cannot run {program}: {source}"
                )));
            }
            Err(crate::drill::process::StepError::Stopped { stop, outcome }) => {
                stats.steps.push(tool::record(&argv, &outcome));
                return Err(DriverError::StepStopped {
                    step: name.into(),
                    stop,
                });
            }
        };
        stats.steps.push(tool::record(&argv, &out));
        stats.exit_code = out.exit_code;
        // All of the tool's messages, not a tail: one early failed COPY among
        // many harmless ownership errors must still be seen. One policy for
        // every format: a statement that only gives an owner or privileges
        // (to a role this fresh server lacks) is not data; any other is.
        let (harmless, serious): (Vec<_>, Vec<_>) = match File::open(&log) {
            Ok(f) => pgdump::restore_errors(std::io::BufReader::new(f)),
            Err(_) => Vec::new(),
        }
        .into_iter()
        .partition(pgdump::RestoreError::harmless);
        // What the drill host lacks (a locale, an extension, a newer
        // PostgreSQL) says nothing of the backup: the drill errs.
        if let Some(e) = serious.iter().find(|e| pgdump::missing_on_host(&e.message)) {
            return Err(DriverError::NoTool(format!(
                "this host lacks what the dump needs: {}; install it here (a locale: add it to /etc/locale.gen and run locale-gen; an extension: its package; a dump from a newer PostgreSQL: that version's server package)",
                e.message
            )));
        }
        // pg_restore exits 1 when it went on past errors; past harmless ones
        // only (each of them seen: its own count agrees), the restore is whole.
        let ignored = File::open(&log)
            .ok()
            .and_then(|f| pgdump::ignored_on_restore(std::io::BufReader::new(f)));
        let only_harmless = name == "pg_restore"
            && out.exit_code == Some(1)
            && !harmless.is_empty()
            && ignored.is_none_or(|n| n <= harmless.len() as u64);
        if !serious.is_empty() || (!out.success() && !only_harmless) {
            let mut errors: Vec<String> = serious.iter().map(|e| e.message.clone()).collect();
            // pg_restore's own error line first: what it could not read or
            // run names the cause; the server's messages follow it.
            if name == "pg_restore"
                && let Some(c) = cause::root_cause(Tool::PgRestore, &errors.join("\n"))
                && let Some(i) = errors.iter().position(|e| *e == c.text)
            {
                let first = errors.remove(i);
                errors.insert(0, first);
            }
            let status = if out.success() {
                // psql goes on past a failed statement and exits 0.
                format!(
                    "{} error{} reported",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                )
            } else {
                out.status_text()
            };
            errors.truncate(3);
            return Err(DriverError::Tool {
                step: name.into(),
                status,
                reason: if errors.is_empty() {
                    cause::reason(Tool::PgRestore, &out.stderr_seen())
                        .unwrap_or_else(|| out.last_words())
                } else {
                    errors.join(" | ")
                },
            });
        }
        if !harmless.is_empty() {
            let n = harmless.len();
            stats.notes.push(format!(
                "{n} statement{} that only give{} an owner or privileges, or only remove{}, failed on the throw-away server (roles it lacks, objects it never had): not data; e.g. {}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" },
                if n == 1 { "s" } else { "" },
                harmless[0].message
            ));
        }
        // What was restored.
        let mut env = env;
        let mut restored = counts((&bin, &env, &pg), deadline, &mut stats.steps)?;
        if !is_archive && restored.iter().all(|(n, _)| n == LARGE_OBJECTS) {
            // `pg_dump -C`: the dump made its own database and connected to
            // it; its data is there.
            let made = databases((&bin, &env, &pg), deadline, &mut stats.steps)?;
            match made.as_slice() {
                [] => {}
                [one] => {
                    for (k, v) in env.iter_mut() {
                        if k == "PGDATABASE" {
                            *v = one.into();
                        }
                    }
                    restored = counts((&bin, &env, &pg), deadline, &mut stats.steps)?;
                }
                many => {
                    return Err(DriverError::Unsupported(format!(
                        "the dump created {} databases ({}); restore-verifier checks one database per dump: dump each with pg_dump",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
        let tables = restored.iter().filter(|(n, _)| n != LARGE_OBJECTS).count() as u64;
        stats.files = tables;
        // Rows of tables, not large objects.
        stats.bytes = restored
            .iter()
            .filter(|(n, _)| n != LARGE_OBJECTS)
            .map(|(_, c)| c)
            .sum();
        let mut report = CompareReport {
            restored_files: tables,
            ..CompareReport::default()
        };
        let have: std::collections::BTreeMap<&str, u64> =
            restored.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        for t in &self.tables {
            let key = if t.contains('.') {
                t.clone()
            } else {
                format!("public.{t}")
            };
            if !have.contains_key(key.as_str()) {
                report.missing.push(key, "table".into());
            }
        }
        // What the restore is compared with: the counts at dump time, or the
        // live database's now.
        let reference: Option<Vec<(String, u64)>> = match (&self.manifest, &self.live) {
            (Some(m), _) => {
                let reader =
                    ManifestReader::open(m).map_err(|e| DriverError::Setup(e.to_string()))?;
                let mut rows = Vec::new();
                for e in reader {
                    let e = e.map_err(|e| DriverError::Setup(e.message))?;
                    rows.push((crate::tree::path::display(&e.rel), e.size));
                }
                Some(rows)
            }
            (None, Some(conninfo)) => {
                stats.against = Some("live");
                Some(live_counts(conninfo, deadline).map_err(|why| {
                    DriverError::NoTool(format!(
                        "cannot read the live database for comparison: {why}"
                    ))
                })?)
            }
            (None, None) => None,
        };
        // A dump without table data restores nothing, unless there is
        // nothing: a schema-only dump, or one cut before its data.
        let schema_only = toc.is_some_and(|(data, tables)| data == 0 && tables > 0);
        let table_rows = stats.bytes;
        let reference_rows = reference
            .as_ref()
            .map(|r| r.iter().map(|(_, n)| n).sum::<u64>());
        if tables > 0 && (schema_only || table_rows == 0) && reference_rows.is_none_or(|n| n > 0) {
            return Err(DriverError::Damaged {
                path: dump,
                detail: format!(
                    "the dump holds no table data: {tables} table{} restored, not one row{}",
                    if tables == 1 { "" } else { "s" },
                    if schema_only {
                        " (its table of contents has no TABLE DATA: a schema-only dump, pg_dump --schema-only?)"
                    } else {
                        ""
                    }
                ),
            });
        }
        let what = |name: &str| {
            if name == LARGE_OBJECTS {
                "large objects"
            } else {
                "rows"
            }
        };
        match (&reference, self.manifest.is_some()) {
            (Some(reference), true) => {
                for (name, n_ref) in reference {
                    match have.get(name.as_str()) {
                        None => report.missing.push(name.clone(), "table".into()),
                        Some(n) if n != n_ref => report.mismatched.push(
                            name.clone(),
                            format!("{}: {n_ref} in the manifest, {n} restored", what(name)),
                        ),
                        Some(n) => {
                            report.files_compared += 1;
                            report.bytes_checked += n;
                            report.content_checked += 1;
                        }
                    }
                }
            }
            (Some(reference), false) => {
                for (name, n_live) in reference {
                    let Some(n) = have.get(name.as_str()) else {
                        report.missing.push(name.clone(), "table".into());
                        continue;
                    };
                    report.files_compared += 1;
                    report.content_checked += 1;
                    report.bytes_checked += n;
                    let rows = what(name);
                    match crate::tree::drift::live_rows(*n_live, *n, self.live_tolerance) {
                        crate::tree::drift::Rows::Same => {}
                        crate::tree::drift::Rows::Drift => report.changed_since_backup.push(
                            name.clone(),
                            format!("{rows}: {n_live} live now, {n} restored"),
                        ),
                        crate::tree::drift::Rows::Short if *n == 0 => report
                            .mismatched
                            .push(name.clone(), format!("{rows}: {n_live} live now, none restored")),
                        crate::tree::drift::Rows::Short => report.mismatched.push(
                            name.clone(),
                            format!(
                                "{rows}: {n_live} live now, {n} restored: {:.1}% fewer, beyond live_tolerance {}%",
                                (*n_live - *n) as f64 * 100.0 / *n_live as f64,
                                self.live_tolerance
                            ),
                        ),
                    }
                }
            }
            (None, _) => {
                report.files_compared = tables;
                report.content_checked = tables;
                report.bytes_checked = stats.bytes;
            }
        }
        if let Some(reference) = &reference {
            let known: std::collections::BTreeSet<&str> =
                reference.iter().map(|(n, _)| n.as_str()).collect();
            for (n, _) in &restored {
                // A manifest made before large objects were counted says
                // nothing about them.
                if !known.contains(n.as_str()) && n != LARGE_OBJECTS {
                    report.extra.push(n.clone(), "table".into());
                }
            }
        }
        stats.verified = Some(report);
        stats.check_env = env;
        Ok(())
    }

    fn finish(&self, _sandbox: &Path) {
        if let Some(mut child) = self.server.lock().expect("server lock").take() {
            let pgid = child.id() as i32;
            if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
                // SIGQUIT: immediate shutdown; the data is thrown away anyway.
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::QUIT);
            }
            let t0 = Instant::now();
            while child.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
        }
        // The socket directory outside the sandbox goes with the server,
        // also when the drill stopped before the server started.
        drop(self.socket_dir.lock().expect("socket dir lock").take());
    }
}

impl Drop for PostgresDriver {
    fn drop(&mut self) {
        self.finish(Path::new(""));
    }
}

fn is_tar(p: &Path) -> bool {
    let mut b = [0u8; 262];
    File::open(p).and_then(|mut f| f.read_exact(&mut b)).is_ok() && &b[257..262] == b"ustar"
}

/// How a tar-format dump (`pg_dump -Ft`) is cut short, from its headers
/// alone: a member whose data runs past the end of the file, a header cut in
/// two, or no end-of-archive blocks (pg_dump always writes them). `None` for
/// a whole one, and for anything that is not a tar file.
fn tar_dump_cut(p: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    if p.is_dir() || !is_tar(p) {
        return None;
    }
    let mut f = File::open(p).ok()?;
    let len = f.metadata().ok()?.len();
    let cut = |what: String| {
        format!(
            "the tar-format dump is cut short: {what} (pg_restore would spin on it until the job's timeout)"
        )
    };
    let mut at = 0u64;
    let mut last: Option<String> = None;
    let after = |last: &Option<String>| match last {
        Some(m) => format!("after its member {m}"),
        None => "at its start".into(),
    };
    loop {
        if at >= len {
            return Some(cut(format!(
                "it ends {} without tar's end-of-archive blocks",
                after(&last)
            )));
        }
        let mut block = [0u8; 512];
        f.seek(SeekFrom::Start(at)).ok()?;
        if f.read_exact(&mut block).is_err() {
            return Some(cut(format!(
                "it ends {} inside the next member's header",
                after(&last)
            )));
        }
        if block.iter().all(|b| *b == 0) {
            return None;
        }
        let header = tar::Header::from_byte_slice(&block);
        let size = header.entry_size().ok()?;
        let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
        let data = at + 512;
        if data + size > len {
            return Some(cut(format!(
                "its member {name} holds {size} bytes, and the file ends {} bytes into it",
                len - data
            )));
        }
        at = data + size.div_ceil(512) * 512;
        last = Some(name);
    }
}

/// The databases a restore made besides the one the drill made (`pg_dump
/// -C` creates and connects to its own).
fn databases(
    server: (&Path, &[(OsString, OsString)], &Path),
    deadline: &Deadline,
    steps: &mut Vec<crate::evidence::record::StepRecord>,
) -> Result<Vec<String>, DriverError> {
    let sql = format!(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname NOT IN ('postgres', '{DB}') ORDER BY 1"
    );
    let args = ["-d", "postgres", "-c", &sql];
    let out = query("psql (databases)", &args, server, deadline, steps)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The script psql runs for a plain dump: the dump itself, or, compressed
/// (`pg_dump | gzip`), its decompressed copy in the sandbox. Refuses what
/// is not one whole database dump: a pg_dumpall cluster dump, and a dump
/// without pg_dump's closing line (cut short).
fn plain_script(
    dump: &Path,
    head: &[u8],
    pg: &Path,
    deadline: &Deadline,
) -> Result<PathBuf, DriverError> {
    use super::compression::{Compression, Decoder};
    let read = |e: std::io::Error| DriverError::Read {
        path: dump.to_path_buf(),
        source: e,
    };
    let compression = Compression::detect(head).map_err(|name| {
        DriverError::Unsupported(format!(
            "{} is compressed with {name}, which restore-verifier does not read; compress dumps with gzip, zstd, xz, bzip2 or lz4, or use pg_dump -Fc",
            dump.display()
        ))
    })?;
    let mut file = File::open(dump).map_err(read)?;
    let (marks, script) = if compression == Compression::Plain {
        use std::io::{Seek, SeekFrom};
        let len = file.metadata().map_err(read)?.len();
        let mut first = Vec::new();
        (&mut file)
            .take(64 << 10)
            .read_to_end(&mut first)
            .map_err(read)?;
        file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))
            .map_err(read)?;
        let mut last = Vec::new();
        file.read_to_end(&mut last).map_err(read)?;
        (pgdump::marks(&first, &last), dump.to_path_buf())
    } else {
        // An archive dump compressed again (`pg_dump -Ft | gzip`) is not a
        // script: pg_restore reads archives as pg_dump wrote them.
        let mut head = [0u8; 512];
        let mut decoded = Decoder::new(
            compression,
            std::io::BufReader::new(File::open(dump).map_err(read)?),
        )
        .map_err(read)?;
        let got = read_up_to(&mut decoded, &mut head);
        if head[..got].starts_with(b"PGDMP") || (got >= 262 && &head[257..262] == b"ustar") {
            return Err(DriverError::Unsupported(format!(
                "{} is a pg_dump archive (custom or tar format) compressed with {}: decompress it for pg_restore, or keep custom-format dumps as pg_dump writes them (they are compressed already)",
                dump.display(),
                compression.name()
            )));
        }
        let out = pg.join("dump.sql");
        let mut w =
            std::io::BufWriter::new(File::create(&out).map_err(|e| DriverError::Sandbox {
                path: out.clone(),
                source: e,
            })?);
        let decoder = Decoder::new(compression, std::io::BufReader::new(file)).map_err(read)?;
        let marks = pgdump::copy_plain(
            Timed {
                inner: decoder,
                deadline,
            },
            Some(&mut w),
        )
        .and_then(|m| {
            std::io::Write::flush(&mut w)
                .map(|()| m)
                .map_err(pgdump::CopyError::Write)
        });
        match marks {
            Ok(m) => (m, out),
            Err(pgdump::CopyError::Write(e)) => {
                return Err(DriverError::Space(format!(
                    "cannot write the decompressed dump to {}: {e}; a {} plain dump is decompressed into the sandbox before psql reads it: free space in sandbox_dir",
                    out.display(),
                    compression.name()
                )));
            }
            Err(pgdump::CopyError::Read(e)) => {
                deadline.check()?;
                return Err(DriverError::Damaged {
                    path: dump.to_path_buf(),
                    detail: format!("cannot decompress its {}: {e}", compression.name()),
                });
            }
        }
    };
    if marks.cluster {
        return Err(DriverError::Unsupported(format!(
            "{} is a pg_dumpall cluster dump (every database and role); restore-verifier restores one database's dump: dump each database with pg_dump (-Fc) and point `path` at it",
            dump.display()
        )));
    }
    if !marks.complete {
        return Err(DriverError::Damaged {
            path: dump.to_path_buf(),
            detail: format!(
                "the plain dump is incomplete: it does not end with pg_dump's closing line `{}` (cut short while written or copied?)",
                pgdump::COMPLETE
            ),
        });
    }
    Ok(script)
}

/// Reads into `buf` until it is full or the stream ends (or fails).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// A reader that stops at the drill's deadline.
struct Timed<'a, R> {
    inner: R,
    deadline: &'a Deadline,
}

impl<R: Read> Read for Timed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Err(stop) = self.deadline.check() {
            return Err(std::io::Error::other(stop.to_string()));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod server_setup_tests {
    use super::*;

    // Pins: the reason quoted the log's last three lines backwards and left
    // out the one that named the cause.
    #[test]
    fn a_server_that_did_not_start_is_explained_fatal_first_then_in_order() {
        // PostgreSQL 15's log with a socket path too long.
        let log = "LOG:  starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu\n\
                   LOG:  Unix-domain socket path \"/x/.s.PGSQL.5432\" is too long (maximum 107 bytes)\n\
                   WARNING:  could not create Unix-domain socket in directory \"/x\"\n\
                   FATAL:  could not create any Unix-domain sockets\n\
                   LOG:  database system is shut down\n";
        assert_eq!(
            server_log_reason(log),
            "FATAL:  could not create any Unix-domain sockets | LOG:  Unix-domain socket path \"/x/.s.PGSQL.5432\" is too long (maximum 107 bytes) | WARNING:  could not create Unix-domain socket in directory \"/x\""
        );
        assert_eq!(
            server_log_reason("LOG:  starting PostgreSQL 15\nLOG:  database system is shut down\n"),
            "LOG:  starting PostgreSQL 15 | LOG:  database system is shut down"
        );
        assert_eq!(server_log_reason(""), "its log is empty");
    }

    #[test]
    fn socket_paths_over_107_bytes_go_to_a_short_directory_beside_the_sandbox() {
        let short =
            Path::new("/var/tmp/restore-verifier/rv-app-01a23a9d-2291-7657-87ec-67168459bfa2");
        assert!(socket_dir_in_sandbox(short).is_some());
        let long = Path::new(
            "/var/tmp/restore-verifier/rv-nightly-erp-orders-dump-01a23a9d-2291-7657-87ec-67168459bfa2",
        );
        assert_eq!(socket_dir_in_sandbox(long), None);
        assert_eq!(
            short_socket_path(long),
            Path::new("/var/tmp/restore-verifier/rv-s-01a23a9d-2291-7657-87ec-67168459bfa2")
        );
        let t = tempfile::tempdir().unwrap();
        let sandbox = t
            .path()
            .join("rv-nightly-erp-orders-dump-and-more-01a23a9d-2291-7657-87ec-67168459bfa2");
        let dir = short_socket_dir(&sandbox, None).unwrap();
        let path = dir.0.clone();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        assert!(socket_path_len(&path) <= SOCKET_PATH_MAX);
        assert!(
            short_socket_dir(&sandbox, None).is_err(),
            "an existing directory is never taken"
        );
        drop(dir);
        assert!(!path.exists());
        // A sandbox_dir too long for any socket is named, with what to do.
        let deep = Path::new(&format!("/{}", "d".repeat(60)))
            .join("rv-app-01a23a9d-2291-7657-87ec-67168459bfa2");
        let e = short_socket_dir(&deep, None).unwrap_err().to_string();
        assert!(
            e.contains("shorten sandbox_dir (to 51 bytes or fewer)"),
            "{e}"
        );
    }

    #[test]
    fn cut_tar_dumps_are_told_from_their_headers() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, len) in [
            ("toc.dat", 700usize),
            ("3347.dat", 5000),
            ("restore.sql", 10),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(len as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, &vec![b'x'; len][..]).unwrap();
        }
        let whole = b.into_inner().unwrap();
        let p = t.path().join("d.tar");
        std::fs::write(&p, &whole).unwrap();
        assert_eq!(tar_dump_cut(&p), None);
        std::fs::write(&p, &whole[..3000]).unwrap();
        let why = tar_dump_cut(&p).unwrap();
        assert!(
            why.contains(
                "its member 3347.dat holds 5000 bytes, and the file ends 952 bytes into it"
            ),
            "{why}"
        );
        std::fs::write(&p, &whole[..7168 + 100]).unwrap();
        let why = tar_dump_cut(&p).unwrap();
        assert!(
            why.contains("after its member 3347.dat inside the next member's header"),
            "{why}"
        );
        let end = whole.len() - 1024;
        std::fs::write(&p, &whole[..end]).unwrap();
        let why = tar_dump_cut(&p).unwrap();
        assert!(why.contains("without tar's end-of-archive blocks"), "{why}");
        // Not a tar file at all: not for this check to say.
        std::fs::write(&p, b"PGDMP and more").unwrap();
        assert_eq!(tar_dump_cut(&p), None);
    }
}
