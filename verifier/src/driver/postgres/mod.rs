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
//!
//! The parts: `restore.rs` is the driver's restore and its verification, one
//! long sequence; `server.rs` sets up the throw-away server (its binaries, its
//! account, its socket directory) and explains one that did not start;
//! `counts.rs` counts rows, in the restored and in a live database; `dump.rs`
//! looks at the dump file itself (tar headers, a plain or compressed script).

mod counts;
mod dump;
mod restore;
mod server;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::SystemTime;

use super::Driver;
use server::SocketDir;

pub use counts::table_counts_manifest;
pub use server::setup_problems;

const PORT: &str = "5432";
const DB: &str = "restored";

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

impl Drop for PostgresDriver {
    fn drop(&mut self) {
        self.finish(Path::new(""));
    }
}

#[cfg(test)]
mod server_setup_tests;
