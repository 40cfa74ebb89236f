//! What a tar member carries beyond mode and time (its owner, ACLs and
//! extended attributes), read from its headers and put back on what was
//! extracted.

use std::path::Path;

use super::extract::Extract;
use crate::driver::DriverError;
use crate::driver::pax;

impl Extract<'_> {
    /// What a member carries beyond mode and time, in the form it is put
    /// back in. Ownership only when the agent may give it (root).
    pub(super) fn extra(&mut self, header: &tar::Header, pax: &pax::Pax) -> Extra {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT, acl_from_text, lookup_id};
        let mut notes = Vec::new();
        let mut acl = |text: &Option<String>| {
            let text = text.as_deref()?;
            acl_from_text(text, lookup_id)
                .map_err(|why| notes.push(format!("acl: {why}")))
                .ok()
        };
        let mut extra = Extra {
            owner: (rustix::process::geteuid().is_root())
                .then(|| Some((header.uid().ok()? as u32, header.gid().ok()? as u32)))
                .flatten(),
            acl_access: acl(&pax.acl_access),
            acl_default: acl(&pax.acl_default),
            xattrs: Vec::new(),
        };
        // bsdtar writes each attribute twice (SCHILY and LIBARCHIVE); GNU tar
        // `--xattrs` without `--acls` carries the ACLs as attributes.
        for (name, value) in &pax.xattrs {
            if name == ACL_ACCESS {
                extra.acl_access.get_or_insert_with(|| value.clone());
            } else if name == ACL_DEFAULT {
                extra.acl_default.get_or_insert_with(|| value.clone());
            } else if !extra.xattrs.iter().any(|(n, _)| n == name) {
                extra.xattrs.push((name.clone(), value.clone()));
            }
        }
        for n in notes {
            if !self.stats.metadata_notes.contains(&n) {
                self.stats.metadata_notes.push(n);
            }
        }
        self.stats.held.owner = true;
        self.stats.held.owners_kept = true;
        self.stats.held.acl |= pax.acl_access.is_some()
            || pax.acl_default.is_some()
            || extra.acl_access.is_some()
            || extra.acl_default.is_some();
        self.stats.held.xattr |= !extra.xattrs.is_empty();
        extra
    }

    pub(super) fn owner(&self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        let Some((uid, gid)) = extra.owner else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| DriverError::Sandbox {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Extended attributes, before the mode (a file made read-only could
    /// not take them after, unless as root).
    pub(super) fn put_xattrs(&mut self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        for (name, value) in &extra.xattrs {
            self.put(path, name, value)?;
        }
        Ok(())
    }

    /// ACLs, after the mode: an ACL's mask is the mode's group bits.
    pub(super) fn put_acls(&mut self, path: &Path, extra: &Extra) -> Result<(), DriverError> {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT};
        for (name, value) in [
            (ACL_ACCESS, &extra.acl_access),
            (ACL_DEFAULT, &extra.acl_default),
        ] {
            if let Some(v) = value {
                self.put(path, std::ffi::OsStr::new(name), v)?;
            }
        }
        Ok(())
    }

    fn put(
        &mut self,
        path: &Path,
        name: &std::ffi::OsStr,
        value: &[u8],
    ) -> Result<(), DriverError> {
        crate::tree::metadata::put(path, name, value, &mut self.stats.metadata_notes).map_err(|e| {
            DriverError::Sandbox {
                path: path.to_path_buf(),
                source: e,
            }
        })
    }
}

/// A member's owner, ACLs and attributes, ready to put back.
#[derive(Debug, Clone, Default)]
pub(super) struct Extra {
    owner: Option<(u32, u32)>,
    acl_access: Option<Vec<u8>>,
    acl_default: Option<Vec<u8>>,
    xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}
