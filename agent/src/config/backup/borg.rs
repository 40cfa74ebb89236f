//! `type = "borg"`: an archive of a borg repository, restored with the real
//! tool, which never writes the repository.

use verifier::driver::{BorgDriver, Driver};

use super::*;

section!(Raw {
    repository: Option<Spanned<String>>,
    passphrase_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    archive: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
});

pub(super) const TYPE: Type = Type {
    name: "borg",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let repository = b.repository.as_ref().map(|r| s.repository(r));
    s.need(b.repository, "repository")?;
    Some(Backup::new(Borg(BorgDriver {
        repository: repository?,
        passphrase_file: b.passphrase_file.map(|f| s.file(f, "passphrase_file")),
        key_file: b.key_file.map(|f| s.file(f, "key_file")),
        archive: b
            .archive
            .map(Spanned::into_inner)
            .unwrap_or_else(|| "latest".into()),
        path: b.path.map(Spanned::into_inner),
        // Set for each drill from the state directory.
        base_dir: PathBuf::new(),
    })))
}

#[derive(Debug)]
struct Borg(BorgDriver);

impl BackupKind for Borg {
    fn describe(&self) -> String {
        format!("borg {} archive {}", self.0.repository, self.0.archive)
    }

    /// borg keeps its own files (BORG_BASE_DIR) under the state directory.
    fn driver(&self, _job: &Job, state_dir: &Path) -> Box<dyn Driver> {
        Box::new(BorgDriver {
            base_dir: state_dir.join("tools").join("borg"),
            ..self.0.clone()
        })
    }
}
