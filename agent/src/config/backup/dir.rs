//! `type = "dir"`: a plain copy of the source (rsync, `cp -a`, a snapshot
//! mount), compared where it lies.

use verifier::driver::{DirDriver, Driver};

use super::*;

section!(Raw {
    path: Option<Spanned<String>>,
    backup_time: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
});

pub(super) const TYPE: Type = Type {
    name: "dir",
    keys: Raw::KEYS,
    read: Raw::read,
    check,
};

fn check(s: &mut Section, v: Spanned<DeValue<'_>>) -> Option<Backup> {
    let b: Raw = s.de(v)?;
    let backup_time = s.backup_time(b.backup_time);
    let root = s.root(b.root);
    let p = s.need(b.path, "path")?;
    let path = resolve(s.base, p.get_ref());
    if s.check == Check::Paths && !path.is_dir() {
        s.at(
            p.span(),
            "path",
            format!("backup directory {} does not exist", path.display()),
        );
    }
    if verifier::overlaps(&path, &s.agent.sandbox_dir) {
        let message = format!(
            "this backup and sandbox_dir {} overlap; move sandbox_dir elsewhere",
            s.agent.sandbox_dir.display()
        );
        s.at(p.span(), "path", message);
    }
    Some(Backup::new(Dir(DirDriver {
        path,
        backup_time,
        root,
    })))
}

#[derive(Debug)]
struct Dir(DirDriver);

impl BackupKind for Dir {
    fn describe(&self) -> String {
        format!("dir {}", self.0.path.display())
    }

    fn driver(&self, _job: &Job, _state_dir: &Path) -> Box<dyn Driver> {
        Box::new(self.0.clone())
    }
}
