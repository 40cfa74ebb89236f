//! Row counts: the one query that counts every table's rows and the large
//! objects, run against the throw-away server or, read-only, a live database,
//! and the table manifest made from a live database's counts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::DB;
use super::server::{bindir, tool_path};
use crate::drill::deadline::Deadline;
use crate::drill::process::{StepOptions, run_step};
use crate::driver::{DriverError, tool};
use crate::tree::manifest::ManifestError;
use crate::tree::walk::{Entry, Handle, Kind};

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
pub(super) fn counts(
    server: (&Path, &[(OsString, OsString)], &Path),
    deadline: &Deadline,
    steps: &mut Vec<crate::evidence::record::StepRecord>,
) -> Result<Vec<(String, u64)>, DriverError> {
    let args = ["-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", COUNT_SQL];
    let out = query("psql (row counts)", &args, server, deadline, steps)?;
    Ok(count_rows(&out))
}

/// Exact row counts of a live database, queried read-only.
pub(super) fn live_counts(
    conninfo: &str,
    deadline: &Deadline,
) -> Result<Vec<(String, u64)>, String> {
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

/// The databases a restore made besides the one the drill made (`pg_dump
/// -C` creates and connects to its own).
pub(super) fn databases(
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
