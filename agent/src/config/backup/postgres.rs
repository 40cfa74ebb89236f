//! `type = "postgres"`: a pg_dump (plain, custom, directory or tar format),
//! restored into a throw-away server the drill starts, and compared by exact
//! row counts against a manifest or a read-only live database.

use verifier::driver::{Driver, PostgresDriver};

use super::*;

section!(Raw {
    path: Option<Spanned<String>>,
    backup_time: Option<Spanned<String>>,
    tables: Option<Spanned<Vec<String>>>,
    live: Option<Spanned<String>>,
    live_tolerance: Option<Spanned<String>>,
});

pub(super) const TYPE: Type = Type {
    name: "postgres",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let backup_time = s.backup_time(b.backup_time);
    let p = s.need(b.path, "path")?;
    let pattern = resolve(s.base, p.get_ref()).display().to_string();
    if s.check == Check::Paths
        && glob::glob(&pattern)
            .map(|mut g| g.next().is_none())
            .unwrap_or(true)
    {
        s.at(p.span(), "path", format!("no dump matches {pattern}"));
    }
    let live = b.live.and_then(|l| {
        if has_password(l.get_ref()) {
            s.at(l.span(), "live", "do not put a password in the connection string (it would show in the process list); use a .pgpass file (PGPASSFILE) or peer authentication");
            None
        } else {
            Some(l.into_inner())
        }
    });
    let live_tolerance = match b.live_tolerance {
        None => verifier::tree::drift::LIVE_TOLERANCE_PERCENT,
        Some(t) => {
            if live.is_none() {
                s.at(
                    t.span(),
                    "live_tolerance",
                    "only means something with `live` (a manifest's counts are exact)",
                );
            }
            match parse_percent(t.get_ref()) {
                Ok(p) => p,
                Err(m) => {
                    s.at(t.span(), "live_tolerance", m);
                    verifier::tree::drift::LIVE_TOLERANCE_PERCENT
                }
            }
        }
    };
    Some(Backup::new(Postgres {
        path: pattern,
        backup_time,
        tables: b.tables.map(Spanned::into_inner).unwrap_or_default(),
        live,
        live_tolerance,
    }))
}

/// The dump and how it is judged; the driver itself holds the throw-away
/// server of one drill, so it is made anew for each.
#[derive(Debug)]
struct Postgres {
    /// A dump file or directory (glob; newest wins).
    path: String,
    backup_time: Option<SystemTime>,
    /// Tables that must exist after the restore.
    tables: Vec<String>,
    /// libpq connection string of the live database (read-only compare).
    live: Option<String>,
    /// Percent of a table's live rows the restore may lack as drift.
    live_tolerance: f64,
}

impl BackupKind for Postgres {
    fn describe(&self) -> String {
        format!("postgres dump {}", self.path)
    }

    fn driver(&self, job: &Job, _state_dir: &Path) -> Box<dyn Driver> {
        let mut d = PostgresDriver::new(
            self.path.clone(),
            self.backup_time,
            self.tables.clone(),
            job.verify.manifest.clone(),
        );
        d.live = self.live.clone();
        d.live_tolerance = self.live_tolerance;
        Box::new(d)
    }

    /// The throw-away server: its account must reach `sandbox_dir`, and its
    /// socket needs room.
    fn setup_problems(&self, agent: &AgentConfig, job: &str) -> Vec<String> {
        let sandbox = verifier::sandbox_path(&agent.sandbox_dir, job, &verifier::new_id());
        verifier::driver::postgres_setup_problems(&agent.sandbox_dir, &sandbox)
    }
}
