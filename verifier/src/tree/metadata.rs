//! Owner, POSIX ACLs and extended attributes: restored where the backup holds
//! them, compared where the job asks (`[job.verify] metadata`). On a Samba
//! share the permissions are the data.
//!
//! ACLs live in the `system.posix_acl_access` and `system.posix_acl_default`
//! attributes in the kernel's binary form; a copy moves them as they are, and
//! a tar archive's text form (`SCHILY.acl.access`, as GNU tar `--acls` and
//! bsdtar write it) is turned into that form here. Nothing is ever followed
//! through a symlink (the `l*xattr` calls).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Which metadata a compare looks at beyond type, size, target and content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataSet {
    pub mode: bool,
    pub owner: bool,
    pub acl: bool,
    pub xattr: bool,
}

impl Default for MetadataSet {
    /// Mode only: what every drill has always compared.
    fn default() -> Self {
        MetadataSet {
            mode: true,
            owner: false,
            acl: false,
            xattr: false,
        }
    }
}

impl MetadataSet {
    pub const NAMES: [&'static str; 4] = ["mode", "owner", "acl", "xattr"];

    /// From config names; `Err` names the unknown one.
    pub fn parse(names: &[String]) -> Result<MetadataSet, String> {
        let mut m = MetadataSet {
            mode: false,
            owner: false,
            acl: false,
            xattr: false,
        };
        for n in names {
            match n.as_str() {
                "mode" => m.mode = true,
                "owner" => m.owner = true,
                "acl" => m.acl = true,
                "xattr" => m.xattr = true,
                other => {
                    return Err(format!(
                        "unknown metadata {other:?}; expected any of mode, owner, acl, xattr"
                    ));
                }
            }
        }
        Ok(m)
    }

    pub fn names(&self) -> Vec<String> {
        let on = [self.mode, self.owner, self.acl, self.xattr];
        Self::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

/// What a restore can vouch for: the metadata the backup holds and the
/// restore put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub owner: bool,
    pub acl: bool,
    pub xattr: bool,
    /// The owners look kept, not flattened to one account (a copy pulled by
    /// one user, or through root_squash): owners are compared by default
    /// only then; asked for, always.
    pub owners_kept: bool,
}

pub fn is_acl(name: &OsStr) -> bool {
    name == ACL_ACCESS || name == ACL_DEFAULT
}

/// One attribute's value, not following a symlink; `None` when absent.
pub fn get(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    loop {
        let n = match rustix::fs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; n];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(Some(buf));
            }
            // It grew since the query: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every extended attribute but the ACLs, sorted by name.
pub fn xattrs(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    attrs(path, false)
}

/// Puts `value` on `path`. A filesystem that keeps no such attribute, or a
/// namespace the agent may not write (`trusted.*`, `security.*` unless root),
/// is noted in `notes` (once), not an error: that metadata is then not
/// compared.
pub fn put(path: &Path, name: &OsStr, value: &[u8], notes: &mut Vec<String>) -> io::Result<()> {
    use rustix::io::Errno;
    match set(path, name, value) {
        Err(e)
            if [Errno::NOTSUP, Errno::PERM, Errno::ACCESS]
                .iter()
                .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
        {
            let why = if e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error()) {
                "the sandbox's filesystem does not keep"
            } else {
                "the agent may not set"
            };
            let note = format!(
                "{}: {why} {}",
                if is_acl(name) { "acl" } else { "xattr" },
                name.to_string_lossy()
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
            Ok(())
        }
        r => r,
    }
}

/// Copies the attributes (`acls` false) or the ACLs (`acls` true) from
/// `from` to `to`; returns whether there were any. `Err(true, e)` when `from`
/// could not be read, `Err(false, e)` when `to` not written.
pub fn copy(
    from: &Path,
    to: &Path,
    acls: bool,
    notes: &mut Vec<String>,
) -> Result<bool, (bool, io::Error)> {
    let mut any = false;
    for (name, value) in attrs(from, acls).map_err(|e| (true, e))? {
        if is_acl(&name) == acls {
            put(to, &name, &value, notes).map_err(|e| (false, e))?;
            any = true;
        }
    }
    Ok(any)
}

fn attrs(path: &Path, with_acls: bool) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let names = loop {
        let n = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; n];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(got) => {
                buf.truncate(got);
                break buf;
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        if is_acl(name) && !with_acls {
            continue;
        }
        if let Some(v) = get(path, name)? {
            out.push((name.to_os_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

pub fn set(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

/// The ACL tags of the kernel's binary form.
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// A text ACL (`user::rw-,user:alice:r--:1001,group::r--,mask::r--,other::---`,
/// entries split by commas or newlines, `#` comments; a trailing numeric id
/// as bsdtar writes it wins over the name) in the kernel's binary form.
/// `lookup` turns a user (`true`) or group name into its id.
pub fn acl_from_text(
    text: &str,
    lookup: impl Fn(bool, &str) -> Option<u32>,
) -> Result<Vec<u8>, String> {
    let mut entries: Vec<(u16, u32, u16)> = Vec::new();
    for raw in text.split([',', '\n']) {
        let e = raw.split('#').next().unwrap_or("").trim();
        if e.is_empty() {
            continue;
        }
        let f: Vec<&str> = e.split(':').collect();
        if f.len() < 3 {
            return Err(format!("ACL entry {e:?} is not tag:qualifier:perms"));
        }
        let (tag, qual, perms) = (f[0], f[1], f[2]);
        let id_field = f.get(3).copied();
        let mut perm = 0u16;
        for (i, c) in perms.chars().enumerate() {
            match (i, c) {
                (0, 'r') => perm |= 4,
                (1, 'w') => perm |= 2,
                (2, 'x') => perm |= 1,
                (_, '-') => {}
                _ => return Err(format!("ACL entry {e:?} has permissions {perms:?}")),
            }
        }
        let named = |user: bool| -> Result<u32, String> {
            if let Some(id) = id_field.and_then(|s| s.parse().ok()) {
                return Ok(id);
            }
            qual.parse()
                .ok()
                .or_else(|| lookup(user, qual))
                .ok_or_else(|| format!("ACL entry {e:?} names {qual:?}, who is not known here"))
        };
        let (t, id) = match (tag, qual.is_empty()) {
            ("user" | "u", true) => (USER_OBJ, UNDEFINED_ID),
            ("user" | "u", false) => (USER, named(true)?),
            ("group" | "g", true) => (GROUP_OBJ, UNDEFINED_ID),
            ("group" | "g", false) => (GROUP, named(false)?),
            ("mask" | "m", _) => (MASK, UNDEFINED_ID),
            ("other" | "o", _) => (OTHER, UNDEFINED_ID),
            _ => return Err(format!("ACL entry {e:?} has tag {tag:?}")),
        };
        entries.push((t, id, perm));
    }
    entries.sort();
    let mut out = 2u32.to_le_bytes().to_vec();
    for (t, id, perm) in entries {
        out.extend(t.to_le_bytes());
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
    }
    Ok(out)
}

/// Looks a user or group name up on this host.
pub fn lookup_id(user: bool, name: &str) -> Option<u32> {
    if user {
        uzers::get_user_by_name(name).map(|u| u.uid())
    } else {
        uzers::get_group_by_name(name).map(|g| g.gid())
    }
}

/// An attribute name from a pax record key: `SCHILY.xattr.NAME` carries the
/// value as is; `LIBARCHIVE.xattr.NAME` has a %-encoded name and a base64
/// value.
pub fn from_pax(key: &[u8], value: &[u8]) -> Option<(OsString, Vec<u8>)> {
    use base64::Engine;
    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
        return Some((OsString::from_vec(name.to_vec()), value.to_vec()));
    }
    let name = key.strip_prefix(b"LIBARCHIVE.xattr.")?;
    let mut decoded = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%'
            && let Some(h) = name.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(h).ok()?, 16)
        {
            decoded.push(b);
            i += 3;
            continue;
        }
        decoded.push(name[i]);
        i += 1;
    }
    let value = value.trim_ascii_end();
    let v = base64::engine::general_purpose::STANDARD
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .ok()?;
    Some((OsString::from_vec(decoded), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(user: bool, name: &str) -> Option<u32> {
        match (user, name) {
            (true, "alice") => Some(1001),
            (false, "staff") => Some(50),
            _ => None,
        }
    }

    #[test]
    fn text_acls_become_the_kernels_form_in_order() {
        let a = acl_from_text(
            "user::rw-,user:alice:r--,group::r--,group:staff:rwx,mask::rwx,other::---",
            ids,
        )
        .unwrap();
        // bsdtar's form: the numeric id after the name, newlines, comments.
        let b = acl_from_text(
            "user::rw-\nuser:someone:r--:1001\ngroup::r--\ngroup:staff:rwx\nmask::rwx # m\nother::---",
            ids,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..4], &2u32.to_le_bytes());
        assert_eq!(a.len(), 4 + 6 * 8);
        // user_obj first, then the named user with its id.
        assert_eq!(&a[4..12], &[1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&a[12..20], &[2, 0, 4, 0, 0xe9, 0x03, 0, 0]);
        assert!(acl_from_text("user:nobody-here:r--", ids).is_err());
        assert!(acl_from_text("user::rwz", ids).is_err());
    }

    #[test]
    fn pax_attribute_names() {
        assert_eq!(
            from_pax(b"SCHILY.xattr.user.note", b"hi"),
            Some((OsString::from("user.note"), b"hi".to_vec()))
        );
        assert_eq!(
            from_pax(b"LIBARCHIVE.xattr.user.a%3Db", b"aGk="),
            Some((OsString::from("user.a=b"), b"hi".to_vec()))
        );
        assert_eq!(from_pax(b"mtime", b"1"), None);
    }
}
