//! `type = "restic"`: a snapshot of a restic repository, restored with the
//! real tool.

use verifier::driver::{Driver, ResticDriver};

use super::*;

section!(Raw {
    repository: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    snapshot: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<String>>>,
    path: Option<Spanned<String>>,
});

pub(super) const TYPE: Type = Type {
    name: "restic",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let repository = b.repository.as_ref().map(|r| s.repository(r));
    let repo = s.need(b.repository, "repository");
    let pw = s.need(b.password_file, "password_file");
    let (_, pw) = (repo?, pw?);
    Some(Backup::new(Restic(ResticDriver {
        repository: repository?,
        password_file: s.file(pw, "password_file"),
        snapshot: b
            .snapshot
            .map(Spanned::into_inner)
            .unwrap_or_else(|| "latest".into()),
        host: b.host.map(Spanned::into_inner),
        tags: b.tags.map(Spanned::into_inner).unwrap_or_default(),
        path: b.path.map(Spanned::into_inner),
    })))
}

#[derive(Debug)]
struct Restic(ResticDriver);

impl BackupKind for Restic {
    fn describe(&self) -> String {
        format!("restic {} snapshot {}", self.0.repository, self.0.snapshot)
    }

    fn driver(&self, _job: &Job, _state_dir: &Path) -> Box<dyn Driver> {
        Box::new(self.0.clone())
    }
}
