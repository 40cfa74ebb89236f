//! The `postgres` driver's restore: the throw-away server started, the dump
//! restored the way an operator would, and the result counted and compared.
//! One long function, in the order a drill runs it; its parts are in the
//! sibling files.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::counts::{LARGE_OBJECTS, counts, databases, live_counts};
use super::dump::{is_tar, plain_script, tar_dump_cut};
use super::server::{
    bindir, chown, mkdir, server_log_reason, server_user, short_socket_dir, socket_dir_in_sandbox,
    tool_path, unreachable,
};
use super::{DB, PORT, PostgresDriver};
use crate::drill::deadline::Deadline;
use crate::drill::process::{STEP_MARKER, StepOptions, run_step};
use crate::driver::tool::cause::{self, Tool};
use crate::driver::{BackupInfo, Driver, DriverError, RestoreStats, newest_match, pgdump, tool};
use crate::tree::compare::CompareReport;
use crate::tree::manifest::ManifestReader;

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
        crate::driver::file_backup("postgres", path, self.backup_time)
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
