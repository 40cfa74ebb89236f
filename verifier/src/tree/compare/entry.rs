//! Judging each entry of the merge-join: one present on one side only, or on
//! both (type, size, symlink target, mode, owner, ACLs, attributes), and each
//! difference as drift or damage.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::{CompareError, Comparer, Reference};
use crate::evidence::record::ExpectStatus;
use crate::tree::drift::{Judgement, content_change, inode_change};
use crate::tree::path::display;
use crate::tree::walk::{Entry, Handle, Kind};

impl Comparer<'_> {
    fn after_backup(&self, t: SystemTime) -> bool {
        self.opts.drift.is_some_and(|d| t > d.backup_time)
    }

    pub(super) fn set_expect(&mut self, rel: &Path, status: ExpectStatus) {
        if let Some(s) = self.expect.get_mut(rel) {
            *s = status;
        }
    }

    pub(super) fn only_source(&mut self, x: &Entry) {
        // Created after the backup: modified after it, and born after it where
        // the filesystem says when. A busy old file missing from the backup
        // (modified after T, but born before) is missing, not new.
        let new = self.after_backup(x.mtime) && x.btime.is_none_or(|b| self.after_backup(b));
        if new {
            self.report
                .new_since_backup
                .push(display(&x.rel), x.kind.name().into());
            self.set_expect(&x.rel, ExpectStatus::ChangedSinceBackup);
        } else {
            self.report
                .missing
                .push(display(&x.rel), x.kind.name().into());
        }
    }

    pub(super) fn only_restored(&mut self, y: &Entry) -> Result<(), CompareError> {
        if !matches!(self.reference, Reference::Nothing) {
            self.report
                .extra
                .push(display(&y.rel), y.kind.name().into());
            return Ok(());
        }
        // No source: an inventory of what was restored, content read per policy.
        if y.kind == Kind::Dir {
            self.report.dirs_compared += 1;
            return Ok(());
        }
        self.report.files_compared += 1;
        self.set_expect(&y.rel, ExpectStatus::Matched);
        if y.kind == Kind::File {
            self.consider_content(&y.rel, None, y.size, (Handle::Path, y.handle.clone()))?;
        }
        Ok(())
    }

    /// A difference in what `x` holds, against the restored `y`.
    fn differ(&mut self, x: &Entry, y: &Entry, what: String) {
        let j = content_change(self.opts.drift, x.mtime, x.ctime, y.mtime);
        self.differ_at(&x.rel, what, j);
    }

    pub(super) fn differ_at(&mut self, rel: &Path, what: String, judgement: Judgement) {
        match judgement {
            Judgement::Drift => {
                self.report.changed_since_backup.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::ChangedSinceBackup);
            }
            Judgement::Corrupt => {
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
            Judgement::OlderThanBackup => {
                let what = format!(
                    "{what}; the source's version is older than the backup's start, so the backup should hold it"
                );
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
            Judgement::NewerInBackup => {
                let what =
                    format!("{what}; the backup's modification time is later than the source's");
                self.report.mismatched.push(display(rel), what);
                self.set_expect(rel, ExpectStatus::Mismatched);
            }
        }
    }

    pub(super) fn both(&mut self, x: &Entry, y: &Entry) -> Result<(), CompareError> {
        if x.kind == Kind::Dir {
            self.report.dirs_compared += 1;
        } else {
            self.report.files_compared += 1;
        }
        self.set_expect(&x.rel, ExpectStatus::Matched);
        if x.kind != y.kind {
            let what = format!(
                "type: {} in source, {} restored",
                x.kind.name(),
                y.kind.name()
            );
            self.differ(x, y, what);
            return Ok(());
        }
        match x.kind {
            Kind::Symlink if x.target != y.target => {
                let what = format!(
                    "symlink target: {} in source, {} restored",
                    x.target.as_deref().map(display).unwrap_or_default(),
                    y.target.as_deref().map(display).unwrap_or_default()
                );
                self.differ(x, y, what);
                return Ok(());
            }
            Kind::File if x.size != y.size => {
                let what = format!("size: {} bytes in source, {} restored", x.size, y.size);
                self.differ(x, y, what);
                return Ok(());
            }
            _ => {}
        }
        // A metadata difference is reported and the content is still checked:
        // a chmod after the backup must not hide rot in the file.
        if self.opts.metadata.mode && x.kind != Kind::Symlink && x.mode != y.mode {
            // chmod changes ctime, not mtime: judge mode drift by ctime.
            let what = format!("mode: {:04o} in source, {:04o} restored", x.mode, y.mode);
            let j = inode_change(self.opts.drift, x.ctime);
            self.differ_at(&x.rel, what, j);
        } else if let Reference::Tree(source_root) = self.reference {
            self.other_metadata(source_root, x, y);
        }
        if x.kind == Kind::File {
            self.consider_content(
                &x.rel,
                x.sha256.as_deref(),
                y.size,
                (x.handle.clone(), y.handle.clone()),
            )?;
        }
        Ok(())
    }

    /// Owner, ACLs and attributes, as the job asks; changes to them change
    /// the inode (ctime), so drift is judged as for the mode. The content is
    /// still checked.
    fn other_metadata(&mut self, source_root: &Path, x: &Entry, y: &Entry) {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT, get, xattrs};
        let m = self.opts.metadata;
        let j = inode_change(self.opts.drift, x.ctime);
        if m.owner && (x.uid, x.gid) != (y.uid, y.gid) {
            let what = format!(
                "owner: {}:{} in source, {}:{} restored",
                x.uid, x.gid, y.uid, y.gid
            );
            self.differ_at(&x.rel, what, j);
            return;
        }
        if x.kind == Kind::Symlink || !(m.acl || m.xattr) {
            return;
        }
        let (src, dst) = (source_root.join(&x.rel), self.restored_root.join(&y.rel));
        if m.acl {
            for name in [ACL_ACCESS, ACL_DEFAULT] {
                let name = std::ffi::OsStr::new(name);
                let Some((a, b)) = self.read_both(x, get(&src, name), get(&dst, name), "ACL")
                else {
                    return;
                };
                if a != b {
                    let kind = if name == ACL_ACCESS {
                        "access"
                    } else {
                        "default"
                    };
                    let state = |v: &Option<Vec<u8>>| if v.is_some() { "set" } else { "none" };
                    let what = format!(
                        "acl: the {kind} ACL differs ({} in source, {} restored)",
                        state(&a),
                        state(&b)
                    );
                    self.differ_at(&x.rel, what, j);
                    return;
                }
            }
        }
        if m.xattr {
            let Some((a, b)) = self.read_both(x, xattrs(&src), xattrs(&dst), "attributes") else {
                return;
            };
            if a != b {
                let names = |v: &[(std::ffi::OsString, Vec<u8>)]| {
                    v.iter()
                        .map(|(n, _)| n.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let what = if names(&a) == names(&b) {
                    format!("xattr: a value differs ({})", names(&a))
                } else {
                    format!("xattr: [{}] in source, [{}] restored", names(&a), names(&b))
                };
                self.differ_at(&x.rel, what, j);
            }
        }
    }

    /// Both sides' reading of one piece of metadata, or `None` with the side
    /// that could not be read reported as unreadable.
    fn read_both<T>(
        &mut self,
        x: &Entry,
        source: io::Result<T>,
        restored: io::Result<T>,
        what: &str,
    ) -> Option<(T, T)> {
        match (source, restored) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (Err(e), _) => {
                let why = format!("cannot read its {what}: {e}");
                self.report.source_unreadable.push(display(&x.rel), why);
                None
            }
            (_, Err(e)) => {
                let why = format!("cannot read its {what}: {e}");
                self.report.unreadable.push(display(&x.rel), why);
                None
            }
        }
    }
}
