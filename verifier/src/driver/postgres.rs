//! `postgres`: restores a `pg_dump` file (custom, directory, tar or plain
//! format; `path` may be a glob, newest wins) into a throw-away PostgreSQL
//! cluster made inside the sandbox. The cluster listens only on a unix socket
//! in the sandbox, never on TCP, and is stopped when the drill ends.
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
use super::{BackupInfo, Driver, DriverError, RestoreStats, newest_match, tool};
use crate::compare::CompareReport;
use crate::deadline::Deadline;
use crate::manifest::{ManifestError, ManifestReader};
use crate::process::{STEP_MARKER, StepOptions, run_step};
use crate::walk::{Entry, Handle, Kind};

const PORT: &str = "5432";
const DB: &str = "restored";

/// Exact row counts of every user table, one query.
const COUNT_SQL: &str = "SELECT n.nspname || '.' || c.relname, \
 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text \
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
 ORDER BY 1";

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
    server: Mutex<Option<Child>>,
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
            server: Mutex::new(None),
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
    crate::process::RunAs::lookup("postgres")
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

/// Runs `psql -tA` with `sql` and returns (name, count) rows.
fn counts(
    bin: &Path,
    env: &[(OsString, OsString)],
    cwd: &Path,
    deadline: &Deadline,
    steps: &mut Vec<crate::record::StepRecord>,
) -> Result<Vec<(String, u64)>, DriverError> {
    let mut opts = StepOptions::in_dir(cwd);
    opts.keep_stdout = 64 << 20;
    opts.env = env.to_vec();
    let argv = vec![
        tool_path(bin, "psql"),
        "-X".into(),
        "-tA".into(),
        "-F".into(),
        "\t".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-c".into(),
        COUNT_SQL.into(),
    ];
    let out = tool::step("psql (row counts)", argv, &opts, deadline, steps, |_| None)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once('\t')?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect())
}

/// Exact row counts of a live database, queried read-only.
fn live_counts(conninfo: &str, deadline: &Deadline) -> Result<Vec<(String, u64)>, String> {
    let bin = bindir();
    let mut opts = StepOptions::in_dir(&std::env::temp_dir());
    opts.keep_stdout = 64 << 20;
    opts.env = vec![
        (
            "PGOPTIONS".into(),
            "-c default_transaction_read_only=on".into(),
        ),
        ("PGCONNECT_TIMEOUT".into(), "10".into()),
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
        return Err(format!(
            "psql failed ({}): {}",
            out.status_text(),
            out.last_words()
        ));
    }
    let mut rows: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (n, c) = l.split_once('\t')?;
            Some((n.to_string(), c.trim().parse().ok()?))
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Writes a table manifest (exact row counts) of a live database, read-only.
/// `conninfo` is a libpq connection string; it is never written to the file.
pub fn table_counts_manifest(
    conninfo: &str,
    database_label: &str,
    out: &Path,
) -> Result<crate::manifest::ManifestSummary, ManifestError> {
    let rows =
        live_counts(conninfo, &Deadline::after(Duration::from_secs(3600))).map_err(|message| {
            ManifestError::Tree {
                path: PathBuf::from(database_label),
                message,
            }
        })?;
    let entries = rows.into_iter().map(|(name, n)| {
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
                kind_label: Some("table".into()),
                handle: Handle::Path,
            },
            None,
        ))
    });
    crate::manifest::write(out, &format!("postgres:{database_label}"), entries)
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
        let bin = bindir();
        let ids = server_user()?;
        stats.tool = tool::version(
            &[&tool_path(&bin, "pg_restore"), "--version"],
            sandbox,
            deadline,
        );
        let pg = sandbox.join("pg");
        let (data, sock) = (pg.join("data"), pg.join("sock"));
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
        mkdir(&sock, ids)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o700)).map_err(
                |e| DriverError::Sandbox {
                    path: sock.clone(),
                    source: e,
                },
            )?;
        }
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
        // The server: a unix socket in the sandbox, no TCP at all.
        let log = File::create(pg.join("server.log")).map_err(|e| DriverError::Sandbox {
            path: pg.join("server.log"),
            source: e,
        })?;
        let _ = chown(&pg.join("server.log"), ids);
        // The server runs the dump's SQL (COPY … FROM PROGRAM as superuser):
        // never with the agent's ambient capabilities.
        let mut server = vec![tool_path(&bin, "postgres")];
        if crate::process::has_ambient_caps() {
            server = crate::process::without_caps(&server);
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
                // Trust authentication is safe only because nobody else can reach
                // the socket: owner-only socket in an owner-only directory.
                "-c",
                "unix_socket_permissions=0700",
            ])
            .current_dir(&pg)
            .env_clear()
            .env("PATH", crate::process::SAFE_PATH)
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
                let mut tail = String::new();
                let _ =
                    File::open(pg.join("server.log")).and_then(|mut f| f.read_to_string(&mut tail));
                let last: Vec<&str> = tail.lines().rev().take(3).collect();
                return Err(DriverError::NoTool(format!(
                    "the throw-away PostgreSQL server did not start: {}",
                    last.join(" | ")
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
        let mut head = [0u8; 5];
        let is_archive = dump.is_dir()
            || File::open(&dump)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && (&head == b"PGDMP" || is_tar(&dump));
        let (name, argv) = if is_archive {
            (
                "pg_restore",
                vec![
                    tool_path(&bin, "pg_restore"),
                    "--no-owner".into(),
                    "--no-privileges".into(),
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
            restore_opts.stdin_file = Some(dump.clone());
            restore_opts.drop_caps = true;
            restore_opts.run_as = ids;
            if rustix::process::geteuid().as_raw() == 0 {
                restore_opts.contained = true;
                restore_opts.no_network = true;
            }
        }
        let out = match run_step(&argv, &restore_opts, deadline) {
            Ok(o) => o,
            Err(crate::process::StepError::Spawn { program, source }) => {
                return Err(DriverError::NoTool(format!(
                    "cannot run {program}: {source}"
                )));
            }
            Err(crate::process::StepError::Stopped { stop, outcome }) => {
                stats.steps.push(tool::record(&argv, &outcome));
                return Err(DriverError::StepStopped {
                    step: name.into(),
                    stop,
                });
            }
        };
        stats.steps.push(tool::record(&argv, &out));
        stats.exit_code = out.exit_code;
        // Owner and grant statements for roles this cluster does not have are
        // not data; every other error is.
        // All of the tool's messages, not a tail: one early failed COPY among
        // many harmless ownership errors must still be seen.
        let mut errors: Vec<String> = match File::open(&log) {
            Ok(f) => restore_errors(std::io::BufReader::new(f)),
            Err(_) => Vec::new(),
        };
        if !errors.is_empty() || (name == "pg_restore" && !out.success()) {
            // pg_restore's own error line first: what it could not read or
            // run names the cause; the server's messages follow it.
            if name == "pg_restore"
                && let Some(c) = cause::root_cause(Tool::PgRestore, &errors.join("\n"))
                && let Some(i) = errors.iter().position(|e| *e == c.text)
            {
                let first = errors.remove(i);
                errors.insert(0, first);
            }
            return Err(DriverError::Tool {
                step: name.into(),
                status: out.status_text(),
                reason: if errors.is_empty() {
                    cause::reason(Tool::PgRestore, &out.stderr_seen())
                        .unwrap_or_else(|| out.last_words())
                } else {
                    errors.join(" | ")
                },
            });
        }
        // What was restored.
        let restored = counts(&bin, &env, &pg, deadline, &mut stats.steps)?;
        stats.files = restored.len() as u64;
        stats.bytes = restored.iter().map(|(_, n)| n).sum();
        let mut report = CompareReport {
            restored_files: restored.len() as u64,
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
        match &self.manifest {
            Some(m) => {
                let reader =
                    ManifestReader::open(m).map_err(|e| DriverError::Setup(e.to_string()))?;
                let mut seen = std::collections::BTreeSet::new();
                for e in reader {
                    let e = e.map_err(|e| DriverError::Setup(e.message))?;
                    let name = crate::compare::display(&e.rel);
                    seen.insert(name.clone());
                    match have.get(name.as_str()) {
                        None => report.missing.push(name, "table".into()),
                        Some(n) if *n != e.size => report.mismatched.push(
                            name,
                            format!("rows: {} in the manifest, {n} restored", e.size),
                        ),
                        Some(n) => {
                            report.files_compared += 1;
                            report.bytes_checked += n;
                            report.content_checked += 1;
                        }
                    }
                }
                for (n, _) in &restored {
                    if !seen.contains(n) {
                        report.extra.push(n.clone(), "table".into());
                    }
                }
            }
            None => match &self.live {
                Some(conninfo) => {
                    let live = live_counts(conninfo, deadline).map_err(|why| {
                        DriverError::NoTool(format!(
                            "cannot read the live database for comparison: {why}"
                        ))
                    })?;
                    let live_map: std::collections::BTreeMap<&str, u64> =
                        live.iter().map(|(n, c)| (n.as_str(), *c)).collect();
                    for (name, n_live) in &live {
                        match have.get(name.as_str()) {
                            None => report.missing.push(name.clone(), "table".into()),
                            Some(n) => {
                                report.files_compared += 1;
                                report.content_checked += 1;
                                report.bytes_checked += n;
                                if *n == 0 && *n_live > 0 {
                                    report.mismatched.push(
                                        name.clone(),
                                        format!("rows: {n_live} live now, none restored"),
                                    );
                                } else if n != n_live {
                                    report.changed_since_backup.push(
                                        name.clone(),
                                        format!("rows: {n_live} live now, {n} restored"),
                                    );
                                }
                            }
                        }
                    }
                    for (n, _) in &restored {
                        if !live_map.contains_key(n.as_str()) {
                            report.extra.push(n.clone(), "table".into());
                        }
                    }
                }
                None => {
                    report.files_compared = restored.len() as u64;
                    report.content_checked = restored.len() as u64;
                    report.bytes_checked = stats.bytes;
                }
            },
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

/// The errors (up to three) in a restore tool's log, read as bytes to the
/// end: a line that is not UTF-8 (a server message in the database's
/// EUC_JP) neither stops the reading nor hides a later failed COPY. Owner and
/// grant statements for roles this cluster does not have are not data.
fn restore_errors(log: impl std::io::BufRead) -> Vec<String> {
    let mut errors = Vec::new();
    for line in log.split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        let is_error =
            line.contains("ERROR:") || line.contains("error:") || line.contains("FATAL:");
        let harmless = line.contains("role \"") && line.contains("does not exist");
        if is_error && !harmless && errors.len() < 3 {
            errors.push(line.trim().to_string());
        }
    }
    errors
}

#[cfg(test)]
mod restore_log_tests {
    // Pins: the log was read line by line as UTF-8 and the reading stopped
    // at the first line that was not, so a later failed COPY was missed.
    #[test]
    fn errors_after_a_line_that_is_not_utf8_are_seen() {
        let mut log =
            b"psql:dump.sql:20: ERROR:  role \"\xb7\xd0\xcd\xfd\" does not exist\n".to_vec();
        log.extend(b"psql:dump.sql:31: ERROR:  invalid byte sequence \xb7\xd0\n");
        log.extend(b"CONTEXT:  COPY ledger, line 7\n");
        let errors = super::restore_errors(&log[..]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("invalid byte sequence"), "{errors:?}");
    }
}
