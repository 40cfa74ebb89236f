//! `dir`: a plain copy of the data (rsync mirror, NAS share copy). The restore is
//! a copy into the sandbox that keeps mode, mtime and symlinks.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::safe::{self, Refusal};
use super::{BackupInfo, Driver, DriverError, RestoreStats};
use crate::drill::deadline::Deadline;

#[derive(Debug, Clone)]
pub struct DirDriver {
    pub path: PathBuf,
    /// Backup time; when unset, the newest modification time in the copy, at
    /// full precision. (Not ctime: a chmod would make a stale copy look fresh.
    /// A mirror of data that rarely changes can touch a stamp file in the copy
    /// after each sync.) For drift, the newest change (ctime) in the copy says
    /// by when the copy had read every file: later than any mtime it keeps.
    pub backup_time: Option<SystemTime>,
    /// Where in the backup the data that corresponds to the source is
    /// (`srv/share`); unset, it is found from the source's path.
    pub root: Option<PathBuf>,
}

/// Bytes of file content under `root` (what a copy will write).
fn tree_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

impl Driver for DirDriver {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn locate(&self, _deadline: &Deadline) -> Result<BackupInfo, DriverError> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => Ok(BackupInfo {
                kind: "dir".into(),
                id: self.path.display().to_string(),
                location: Some(self.path.clone()),
                created_at: self.backup_time,
                read_by: None,
                started_at: None,
                sha256: None,
                size_estimate: Some(tree_bytes(&self.path)),
            }),
            Ok(_) => Err(DriverError::NotFound(format!(
                "{} is not a directory",
                self.path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(DriverError::NotFound(self.path.display().to_string()))
            }
            Err(e) => Err(DriverError::Read {
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    fn restore(
        &self,
        backup: &mut BackupInfo,
        sandbox: &Path,
        deadline: &Deadline,
        stats: &mut RestoreStats,
    ) -> Result<(), DriverError> {
        let as_root = rustix::process::geteuid().is_root();
        let mut any_acl = false;
        let mut owners = std::collections::BTreeSet::new();
        let mut newest_mtime: Option<SystemTime> = None;
        let mut newest_ctime: Option<SystemTime> = None;
        let mut dirs = Vec::new();
        let walk = walkdir::WalkDir::new(&self.path)
            .min_depth(1)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().cmp(b.file_name()));
        for e in walk {
            deadline.check()?;
            let e = e.map_err(|e| DriverError::Read {
                path: e.path().unwrap_or(&self.path).to_path_buf(),
                source: e.into(),
            })?;
            let read_err = |err| DriverError::Read {
                path: e.path().to_path_buf(),
                source: err,
            };
            let meta = e.metadata().map_err(|err| read_err(err.into()))?;
            newest_mtime = newest_mtime.max(meta.modified().ok());
            newest_ctime = newest_ctime.max(ctime(&meta));
            let rel = e
                .path()
                .strip_prefix(&self.path)
                .unwrap_or(e.path())
                .to_path_buf();
            let dest = sandbox.join(&rel);
            let refused = |r: Refusal| match r {
                Refusal::Unsafe(why) => DriverError::Unsafe {
                    path: self.path.clone(),
                    entry: rel.display().to_string(),
                    why,
                },
                Refusal::Io(path, source) => DriverError::Sandbox { path, source },
            };
            let sandbox_err = |err| DriverError::Sandbox {
                path: dest.clone(),
                source: err,
            };
            let mtime = filetime::FileTime::from_last_modification_time(&meta);
            let ft = meta.file_type();
            if owners.len() < 2 {
                owners.insert((meta.uid(), meta.gid()));
            }
            // Owner (as root), then mode, then ACLs and attributes: a chown
            // clears setuid bits, and an ACL's mask is the mode's group bits.
            let owner = |to: &Path| -> Result<(), DriverError> {
                if as_root {
                    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(
                        |err| DriverError::Sandbox {
                            path: to.to_path_buf(),
                            source: err,
                        },
                    )?;
                }
                Ok(())
            };
            if ft.is_dir() {
                std::fs::create_dir(&dest).map_err(sandbox_err)?;
                dirs.push((
                    e.path().to_path_buf(),
                    dest.clone(),
                    meta.permissions(),
                    mtime,
                    (meta.uid(), meta.gid()),
                ));
            } else if ft.is_symlink() {
                // Copied as a link, whatever it points to; never followed.
                let target = std::fs::read_link(e.path()).map_err(read_err)?;
                std::os::unix::fs::symlink(&target, &dest).map_err(sandbox_err)?;
                owner(&dest)?;
                let _ = filetime::set_symlink_file_times(&dest, mtime, mtime);
                stats.files += 1;
            } else if ft.is_file() {
                let mut from = std::fs::File::open(e.path()).map_err(read_err)?;
                let mut to = safe::create_new(&dest).map_err(refused)?;
                let n = copy_file(&mut from, &mut to, deadline).map_err(|c| match c {
                    CopyError::Read(err) => read_err(err),
                    CopyError::Write(err) => sandbox_err(err),
                    CopyError::Stopped(t) => DriverError::Stopped(t),
                })?;
                drop(to);
                owner(&dest)?;
                copy_attrs(e.path(), &dest, false, &mut stats.metadata_notes)?;
                std::fs::set_permissions(&dest, meta.permissions()).map_err(sandbox_err)?;
                any_acl |= copy_attrs(e.path(), &dest, true, &mut stats.metadata_notes)?;
                let _ = filetime::set_file_mtime(&dest, mtime);
                stats.files += 1;
                stats.bytes += n;
            } else if ft.is_fifo() {
                // Made, never opened; the compare checks its type and mode.
                safe::make_fifo(&dest).map_err(sandbox_err)?;
                owner(&dest)?;
                std::fs::set_permissions(&dest, meta.permissions()).map_err(sandbox_err)?;
                any_acl |= copy_attrs(e.path(), &dest, true, &mut stats.metadata_notes)?;
                // (set_file_mtime would open it, and wait for a writer.)
                let _ = filetime::set_symlink_file_times(&dest, mtime, mtime);
                stats.files += 1;
            } else if ft.is_socket() {
                // No archiver stores a socket; the compare leaves them out too.
                continue;
            } else {
                // A device node holds no data and is never made in a sandbox.
                stats
                    .skipped_special
                    .push(crate::tree::path::display(&rel), "device node".into());
            }
        }
        for (from, dir, perms, mtime, (uid, gid)) in dirs.into_iter().rev() {
            let sandbox_err = |e| DriverError::Sandbox {
                path: dir.clone(),
                source: e,
            };
            if as_root {
                std::os::unix::fs::lchown(&dir, Some(uid), Some(gid)).map_err(sandbox_err)?;
            }
            copy_attrs(&from, &dir, false, &mut stats.metadata_notes)?;
            std::fs::set_permissions(&dir, perms).map_err(sandbox_err)?;
            any_acl |= copy_attrs(&from, &dir, true, &mut stats.metadata_notes)?;
            let _ = filetime::set_file_mtime(&dir, mtime);
        }
        // A copy holds ACLs when it has any (an `rsync -a` without `-A` has
        // none), and owners when more than one (a copy pulled by one account,
        // or through root_squash, is all that account's); ownership is put
        // back only as root.
        stats.held = crate::tree::metadata::Held {
            owner: as_root,
            acl: any_acl,
            xattr: true,
            owners_kept: owners.len() > 1,
        };
        if backup.created_at.is_none() {
            backup.created_at = newest_mtime;
        }
        backup.read_by = backup.created_at.max(newest_ctime);
        stats.root = self.root.clone();
        Ok(())
    }
}

/// The copy's attributes (or ACLs) onto the restored entry; whether it had any.
fn copy_attrs(
    from: &Path,
    to: &Path,
    acls: bool,
    notes: &mut Vec<String>,
) -> Result<bool, DriverError> {
    crate::tree::metadata::copy(from, to, acls, notes).map_err(|(reading, e)| {
        if reading {
            DriverError::Read {
                path: from.to_path_buf(),
                source: e,
            }
        } else {
            DriverError::Sandbox {
                path: to.to_path_buf(),
                source: e,
            }
        }
    })
}

fn ctime(meta: &std::fs::Metadata) -> Option<SystemTime> {
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    Stopped(crate::drill::deadline::Stop),
}

fn copy_file(
    from: &mut std::fs::File,
    to: &mut std::fs::File,
    deadline: &Deadline,
) -> Result<u64, CopyError> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        deadline.check().map_err(CopyError::Stopped)?;
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}
