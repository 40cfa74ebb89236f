//! What a tar member carries beyond mode and time (its owner, ACLs and
//! extended attributes), read from its headers and put back on what was
//! extracted.

use std::path::Path;

use crate::driver::pax;
use crate::driver::{DriverError, RestoreStats};

impl Extra {
    /// What a member carries beyond mode and time, in the form it is put
    /// back in, and what the restore holds of it (`stats`). Ownership only
    /// when the agent may give it (root).
    pub(super) fn read(header: &tar::Header, pax: &pax::Pax, stats: &mut RestoreStats) -> Extra {
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
            if !stats.metadata_notes.contains(&n) {
                stats.metadata_notes.push(n);
            }
        }
        stats.held.owner = true;
        stats.held.owners_kept = true;
        stats.held.acl |= pax.acl_access.is_some()
            || pax.acl_default.is_some()
            || extra.acl_access.is_some()
            || extra.acl_default.is_some();
        stats.held.xattr |= !extra.xattrs.is_empty();
        extra
    }

    pub(super) fn put_owner(&self, path: &Path) -> Result<(), DriverError> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| DriverError::Sandbox {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Extended attributes, before the mode (a file made read-only could
    /// not take them after, unless as root).
    pub(super) fn put_xattrs(
        &self,
        path: &Path,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        for (name, value) in &self.xattrs {
            put(path, name, value, stats)?;
        }
        Ok(())
    }

    /// ACLs, after the mode: an ACL's mask is the mode's group bits.
    pub(super) fn put_acls(
        &self,
        path: &Path,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        use crate::tree::metadata::{ACL_ACCESS, ACL_DEFAULT};
        for (name, value) in [
            (ACL_ACCESS, &self.acl_access),
            (ACL_DEFAULT, &self.acl_default),
        ] {
            if let Some(v) = value {
                put(path, std::ffi::OsStr::new(name), v, stats)?;
            }
        }
        Ok(())
    }
}

fn put(
    path: &Path,
    name: &std::ffi::OsStr,
    value: &[u8],
    stats: &mut RestoreStats,
) -> Result<(), DriverError> {
    crate::tree::metadata::put(path, name, value, &mut stats.metadata_notes).map_err(|e| {
        DriverError::Sandbox {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// A member's owner, ACLs and attributes, ready to put back.
#[derive(Debug, Clone, Default)]
pub(super) struct Extra {
    owner: Option<(u32, u32)>,
    acl_access: Option<Vec<u8>>,
    acl_default: Option<Vec<u8>>,
    xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}
