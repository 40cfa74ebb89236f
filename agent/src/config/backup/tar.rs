//! `type = "tar"`: archives (GNU tar, bsdtar, pax; plain or compressed), the
//! newest match of a glob.

use verifier::driver::{Driver, TarDriver};

use super::*;

section!(Raw {
    path: Option<Spanned<String>>,
    backup_time: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
});

pub(super) const TYPE: Type = Type {
    name: "tar",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let backup_time = s.backup_time(b.backup_time);
    let root = s.root(b.root);
    let p = s.need(b.path, "path")?;
    let pattern = resolve(s.base, p.get_ref()).display().to_string();
    if let Err(e) = glob::Pattern::new(&pattern) {
        s.at(p.span(), "path", format!("invalid glob pattern: {e}"));
    } else if s.check == Check::Paths && verifier::driver::newest_match(&pattern).is_err() {
        s.at(
            p.span(),
            "path",
            format!("no backup file matches {pattern}"),
        );
    }
    Some(Backup::new(Tar(TarDriver {
        path: pattern,
        backup_time,
        root,
    })))
}

#[derive(Debug)]
struct Tar(TarDriver);

impl BackupKind for Tar {
    fn describe(&self) -> String {
        format!("tar {}", self.0.path)
    }

    fn driver(&self, _job: &Job, _state_dir: &Path) -> Box<dyn Driver> {
        Box::new(self.0.clone())
    }
}
