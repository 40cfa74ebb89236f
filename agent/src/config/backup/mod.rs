//! `[job.backup]`: one file per backup type. Each declares its section's
//! keys once (`section!`: a raw struct that denies unknown keys and keeps
//! spans, and the list of its keys), checks them, and builds its driver.
//! `TYPES` is the one list of types: adding a backup type is a file and a
//! line there.
//!
//! The section is read with its job (`read_backup`): `type` first, then the
//! type's own struct, so that what serde finds wrong drops the job as any
//! other key of it would. It is checked with the job (`backup_config`): a key
//! that belongs to another type is named as such ("does not apply to backup
//! type …"); a key no type takes is serde's unknown field, with the keys of
//! the section's type.

mod borg;
mod command;
mod dir;
mod postgres;
mod restic;
mod tar;

use std::sync::Arc;

use verifier::driver::Driver;

use super::*;

/// Declares a backup type's section: the raw struct (unknown keys denied,
/// `type` read again but already known) and `KEYS`, the keys it takes in the
/// order `config check` lists them.
macro_rules! section {
    ($(#[$doc:meta])* $name:ident { $($(#[$m:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            #[serde(rename = "type")]
            #[allow(dead_code)]
            kind: toml::Spanned<String>,
            $($(#[$m])* $field: $ty,)*
        }
        impl $name {
            pub(super) const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Whether serde reads the section as this type's struct (what
            /// it finds wrong is reported).
            fn read(cx: &mut Ctx, v: Spanned<DeValue<'_>>, prefix: &str) -> bool {
                cx.de::<$name>(v, prefix).is_some()
            }
        }
    };
}
use section;

/// A backup type: its name in `type = "…"`, the keys it takes, and how its
/// section is checked into a [`Backup`].
pub(super) struct Type {
    pub(super) name: &'static str,
    pub(super) keys: &'static [&'static str],
    read: fn(&mut Ctx, Spanned<DeValue<'_>>, &str) -> bool,
    check: fn(&mut Section, Spanned<DeValue<'_>>) -> Option<Backup>,
}

/// Every backup type, in the order error messages list them.
pub(super) const TYPES: &[Type] = &[
    dir::TYPE,
    tar::TYPE,
    restic::TYPE,
    borg::TYPE,
    postgres::TYPE,
    command::TYPE,
];

/// One backup type's checked section: what `config check` says of it, the
/// driver a drill runs, and what this host lacks for it.
pub trait BackupKind: std::fmt::Debug + Send + Sync {
    /// A short description, e.g. "restic /srv/restic snapshot latest".
    fn describe(&self) -> String;
    /// The restore driver for one drill of `job`.
    fn driver(&self, job: &Job, state_dir: &Path) -> Box<dyn Driver>;
    /// What no drill of `job` could get past on this host, for `config
    /// check`.
    fn setup_problems(&self, _agent: &AgentConfig, _job: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A job's checked `[job.backup]`.
#[derive(Debug, Clone)]
pub struct Backup(Arc<dyn BackupKind>);

impl Backup {
    fn new(kind: impl BackupKind + 'static) -> Backup {
        Backup(Arc::new(kind))
    }

    pub fn describe(&self) -> String {
        self.0.describe()
    }

    pub fn driver(&self, job: &Job, state_dir: &Path) -> Box<dyn Driver> {
        self.0.driver(job, state_dir)
    }

    pub fn setup_problems(&self, agent: &AgentConfig, job: &str) -> Vec<String> {
        self.0.setup_problems(agent, job)
    }
}

/// What a type's check works with: the job's place, the config's directory,
/// how much to check, and whether a problem was found.
pub(super) struct Section<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    i: usize,
    kind: &'static str,
    kind_span: std::ops::Range<usize>,
    base: &'c Path,
    check: Check,
    agent: &'c AgentConfig,
    ok: bool,
}

impl Section<'_, '_> {
    fn key(&self, key: &str) -> String {
        format!("job[{}].backup.{key}", self.i)
    }

    fn at(&mut self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        self.cx.at(span, key, message);
    }

    /// The type's raw struct, or the problem serde found in it.
    fn de<T: for<'de> Deserialize<'de>>(&mut self, v: Spanned<DeValue<'_>>) -> Option<T> {
        let prefix = format!("job[{}].backup", self.i);
        self.cx.de(v, &prefix)
    }

    /// A key the type cannot do without.
    fn need<T>(&mut self, v: Option<Spanned<T>>, key: &str) -> Option<Spanned<T>> {
        if v.is_none() {
            let message = format!("backup type {:?} needs `{key}`", self.kind);
            self.at(self.kind_span.clone(), key, message);
            self.ok = false;
        }
        v
    }

    fn backup_time(&mut self, t: Option<Spanned<String>>) -> Option<SystemTime> {
        t.and_then(|t| match parse_time(t.get_ref()) {
            Ok(t) => Some(t),
            Err(m) => {
                self.at(t.span(), "backup_time", m);
                None
            }
        })
    }

    /// `root`: a path inside the backup, relative, without `..`.
    fn root(&mut self, r: Option<Spanned<String>>) -> Option<PathBuf> {
        r.and_then(|r| {
            let p = PathBuf::from(r.get_ref().trim_end_matches('/'));
            let inside = p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            if inside && !p.as_os_str().is_empty() {
                Some(p)
            } else {
                self.at(
                    r.span(),
                    "root",
                    "`root` is a path inside the backup, relative and without `..` (e.g. \"srv/share\" for an archive of /srv/share)",
                );
                None
            }
        })
    }

    /// A file the agent reads (a password, a key): resolved, and readable
    /// now when paths are checked.
    fn file(&mut self, v: Spanned<String>, key: &str) -> PathBuf {
        let p = resolve(self.base, v.get_ref());
        if self.check == Check::Paths && std::fs::File::open(&p).is_err() {
            self.at(
                v.span(),
                key,
                format!("{} is not readable; fix its path or mode", p.display()),
            );
        }
        p
    }

    /// A repository: credentials never in its URL; a local path resolved
    /// against the config's directory, a URL kept as written.
    fn repository(&mut self, r: &Spanned<String>) -> String {
        if has_password(r.get_ref()) {
            self.at(
                r.span(),
                "repository",
                "credentials in the repository URL would show in the process list and in records; keep them out of the URL (use the tool's credential file or environment)",
            );
            self.ok = false;
        }
        repository(self.base, r.get_ref())
    }
}

/// A local repository path is resolved against the config's directory; a URL
/// (`sftp:…`, `s3:…`, `ssh://…`, `user@host:…`) is kept as written.
pub(super) fn repository(base: &Path, r: &str) -> String {
    let is_remote = r
        .find(':')
        .is_some_and(|c| r.find('/').is_none_or(|s| c < s));
    if is_remote {
        r.to_string()
    } else {
        resolve(base, r).display().to_string()
    }
}

/// "dir, tar, restic, borg, postgres or command".
fn type_names() -> String {
    let names: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The section's `type`, read first; other keys are the type's to read.
#[derive(Deserialize)]
struct RawBackup {
    #[serde(rename = "type")]
    kind: Spanned<String>,
}

/// `[job.backup]` as read with its job.
pub(super) struct ReadBackup<'i> {
    /// The whole section, for problems of the backup as a whole.
    span: std::ops::Range<usize>,
    kind: Spanned<String>,
    /// `None`: a type no backup has, said when the job is checked.
    ty: Option<&'static Type>,
    /// Keys of another type, said when the job is checked.
    elsewhere: Vec<(String, std::ops::Range<usize>)>,
    /// The type's own keys, which serde has read.
    own: Spanned<DeValue<'i>>,
}

impl ReadBackup<'_> {
    pub(super) fn span(&self) -> std::ops::Range<usize> {
        self.span.clone()
    }
}

/// Reads job `i`'s `[job.backup]` (from the job's table `job`): `None`, with
/// the problem reported, when serde cannot.
pub(super) fn read_backup<'i>(
    cx: &mut Ctx,
    i: usize,
    job: &Spanned<DeValue<'i>>,
) -> Option<ReadBackup<'i>> {
    let prefix = format!("job[{i}].backup");
    // The job's own struct has checked that `backup` is there.
    let v = job.get_ref().as_table()?.get("backup")?;
    let head: RawBackup = cx.de(v.clone(), &prefix)?;
    let ty = TYPES
        .iter()
        .find(|t| t.name == head.kind.get_ref().as_str());
    let mut elsewhere = Vec::new();
    let mut own = v.get_ref().as_table()?.clone();
    if let Some(ty) = ty {
        for (key, value) in v.get_ref().as_table()?.iter() {
            let key = key.get_ref().as_ref();
            let elsewhere_key = TYPES.iter().any(|t| t.keys.contains(&key));
            if key != "type" && !ty.keys.contains(&key) && elsewhere_key {
                elsewhere.push((key.to_string(), value.span()));
                own.remove(key);
            }
        }
    }
    let own = Spanned::new(v.span(), DeValue::Table(own));
    if let Some(ty) = ty
        && !(ty.read)(cx, own.clone(), &prefix)
    {
        return None;
    }
    Some(ReadBackup {
        span: v.span(),
        kind: head.kind,
        ty,
        elsewhere,
        own,
    })
}

/// Checks job `i`'s backup section and builds its [`Backup`].
pub(super) fn backup_config(
    cx: &mut Ctx,
    i: usize,
    read: ReadBackup<'_>,
    base: &Path,
    check: Check,
    agent: &AgentConfig,
) -> Option<Backup> {
    let Some(ty) = read.ty else {
        let name = read.kind.get_ref();
        cx.at(
            read.kind.span(),
            format!("job[{i}].backup.type"),
            format!("unknown backup type {name:?}; expected {}", type_names()),
        );
        return None;
    };
    let mut section = Section {
        cx,
        i,
        kind: ty.name,
        kind_span: read.kind.span(),
        base,
        check,
        agent,
        ok: true,
    };
    for (key, span) in &read.elsewhere {
        section.at(
            span.clone(),
            key,
            format!(
                "`{key}` does not apply to backup type {:?} (it takes {})",
                ty.name,
                ty.keys.join(", ")
            ),
        );
        section.ok = false;
    }
    let backup = (ty.check)(&mut section, read.own)?;
    section.ok.then_some(backup)
}
