//! One `[job.backup]`: the keys each backup type takes, checked and turned
//! into a `Backup`.

use super::*;

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

pub(super) fn backup_config(
    cx: &mut Ctx,
    i: usize,
    b: RawBackup,
    base: &Path,
    check: Check,
    agent: &AgentConfig,
) -> Option<Backup> {
    let k = |key: &str| format!("job[{i}].backup.{key}");
    let kind = b.kind.get_ref().clone();
    let allowed: &[&str] = match kind.as_str() {
        "dir" | "tar" => &["path", "backup_time", "root"],
        "restic" => &[
            "repository",
            "password_file",
            "snapshot",
            "host",
            "tags",
            "path",
        ],
        "borg" => &[
            "repository",
            "passphrase_file",
            "key_file",
            "archive",
            "path",
        ],
        "command" => &["restore", "path", "backup_time"],
        "postgres" => &["path", "backup_time", "tables", "live", "live_tolerance"],
        other => {
            cx.at(
                b.kind.span(),
                k("type"),
                format!(
                    "unknown backup type {other:?}; expected dir, tar, restic, borg, postgres or command"
                ),
            );
            return None;
        }
    };
    let present: [(&str, Option<std::ops::Range<usize>>); 15] = [
        ("live", b.live.as_ref().map(|v| v.span())),
        (
            "live_tolerance",
            b.live_tolerance.as_ref().map(|v| v.span()),
        ),
        ("root", b.root.as_ref().map(|v| v.span())),
        ("tables", b.tables.as_ref().map(|v| v.span())),
        ("path", b.path.as_ref().map(|v| v.span())),
        ("backup_time", b.backup_time.as_ref().map(|v| v.span())),
        ("repository", b.repository.as_ref().map(|v| v.span())),
        ("password_file", b.password_file.as_ref().map(|v| v.span())),
        (
            "passphrase_file",
            b.passphrase_file.as_ref().map(|v| v.span()),
        ),
        ("key_file", b.key_file.as_ref().map(|v| v.span())),
        ("snapshot", b.snapshot.as_ref().map(|v| v.span())),
        ("host", b.host.as_ref().map(|v| v.span())),
        ("tags", b.tags.as_ref().map(|v| v.span())),
        ("archive", b.archive.as_ref().map(|v| v.span())),
        ("restore", b.restore.as_ref().map(|v| v.span())),
    ];
    let mut ok = true;
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            cx.at(
                span,
                k(key),
                format!(
                    "`{key}` does not apply to backup type {kind:?} (it takes {})",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }
    if let Some(r) = &b.repository
        && has_password(r.get_ref())
    {
        cx.at(
            r.span(),
            k("repository"),
            "credentials in the repository URL would show in the process list and in records; keep them out of the URL (use the tool's credential file or environment)",
        );
        ok = false;
    }
    let mut need =
        |cx: &mut Ctx, v: Option<Spanned<String>>, key: &str| -> Option<Spanned<String>> {
            if v.is_none() {
                cx.at(
                    b.kind.span(),
                    k(key),
                    format!("backup type {kind:?} needs `{key}`"),
                );
                ok = false;
            }
            v
        };
    let backup_time = b.backup_time.and_then(|t| match parse_time(t.get_ref()) {
        Ok(t) => Some(t),
        Err(m) => {
            cx.at(t.span(), k("backup_time"), m);
            None
        }
    });
    // A path inside the backup: relative, without `..`.
    let root = b.root.and_then(|r| {
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
            cx.at(
                r.span(),
                k("root"),
                "`root` is a path inside the backup, relative and without `..` (e.g. \"srv/share\" for an archive of /srv/share)",
            );
            None
        }
    });
    let file = |cx: &mut Ctx, v: Spanned<String>, key: &str| -> PathBuf {
        let p = resolve(base, v.get_ref());
        if check == Check::Paths && std::fs::File::open(&p).is_err() {
            cx.at(
                v.span(),
                k(key),
                format!("{} is not readable; fix its path or mode", p.display()),
            );
        }
        p
    };
    let backup = match kind.as_str() {
        "dir" => {
            let p = need(cx, b.path, "path")?;
            let path = resolve(base, p.get_ref());
            if check == Check::Paths && !path.is_dir() {
                cx.at(
                    p.span(),
                    k("path"),
                    format!("backup directory {} does not exist", path.display()),
                );
            }
            if verifier::overlaps(&path, &agent.sandbox_dir) {
                cx.at(
                    p.span(),
                    k("path"),
                    format!(
                        "this backup and sandbox_dir {} overlap; move sandbox_dir elsewhere",
                        agent.sandbox_dir.display()
                    ),
                );
            }
            Backup::Dir {
                path,
                backup_time,
                root,
            }
        }
        "tar" => {
            let p = need(cx, b.path, "path")?;
            let pattern = resolve(base, p.get_ref()).display().to_string();
            if let Err(e) = glob::Pattern::new(&pattern) {
                cx.at(p.span(), k("path"), format!("invalid glob pattern: {e}"));
            } else if check == Check::Paths && verifier::driver::newest_match(&pattern).is_err() {
                cx.at(
                    p.span(),
                    k("path"),
                    format!("no backup file matches {pattern}"),
                );
            }
            Backup::Tar {
                path: pattern,
                backup_time,
                root,
            }
        }
        "restic" => {
            let repo = need(cx, b.repository, "repository");
            let pw = need(cx, b.password_file, "password_file");
            let (repo, pw) = (repo?, pw?);
            Backup::Restic {
                repository: repository(base, repo.get_ref()),
                password_file: file(cx, pw, "password_file"),
                snapshot: b
                    .snapshot
                    .map(Spanned::into_inner)
                    .unwrap_or_else(|| "latest".into()),
                host: b.host.map(Spanned::into_inner),
                tags: b.tags.map(Spanned::into_inner).unwrap_or_default(),
                path: b.path.map(Spanned::into_inner),
            }
        }
        "postgres" => {
            let p = need(cx, b.path, "path")?;
            let pattern = resolve(base, p.get_ref()).display().to_string();
            if check == Check::Paths
                && glob::glob(&pattern)
                    .map(|mut g| g.next().is_none())
                    .unwrap_or(true)
            {
                cx.at(p.span(), k("path"), format!("no dump matches {pattern}"));
            }
            let live = b.live.and_then(|l| {
                if crate::config::has_password(l.get_ref()) {
                    cx.at(l.span(), k("live"), "do not put a password in the connection string (it would show in the process list); use a .pgpass file (PGPASSFILE) or peer authentication");
                    None
                } else {
                    Some(l.into_inner())
                }
            });
            let live_tolerance = match b.live_tolerance {
                None => verifier::tree::drift::LIVE_TOLERANCE_PERCENT,
                Some(t) => {
                    if live.is_none() {
                        cx.at(
                            t.span(),
                            k("live_tolerance"),
                            "only means something with `live` (a manifest's counts are exact)",
                        );
                    }
                    match parse_percent(t.get_ref()) {
                        Ok(p) => p,
                        Err(m) => {
                            cx.at(t.span(), k("live_tolerance"), m);
                            verifier::tree::drift::LIVE_TOLERANCE_PERCENT
                        }
                    }
                }
            };
            Backup::Postgres {
                path: pattern,
                backup_time,
                tables: b.tables.map(Spanned::into_inner).unwrap_or_default(),
                live,
                live_tolerance,
            }
        }
        "borg" => {
            let repo = need(cx, b.repository, "repository")?;
            Backup::Borg {
                repository: repository(base, repo.get_ref()),
                passphrase_file: b.passphrase_file.map(|f| file(cx, f, "passphrase_file")),
                key_file: b.key_file.map(|f| file(cx, f, "key_file")),
                archive: b
                    .archive
                    .map(Spanned::into_inner)
                    .unwrap_or_else(|| "latest".into()),
                path: b.path.map(Spanned::into_inner),
            }
        }
        _ => {
            let Some(r) = b.restore else {
                cx.at(b.kind.span(), k("restore"), "backup type \"command\" needs `restore`: the runbook's steps, e.g. [[\"rsync\", \"-a\", \"/mnt/mirror/\", \"{sandbox}/\"]]");
                return None;
            };
            let span = r.span();
            let steps = match r.into_inner() {
                Steps::One(v) => vec![v],
                Steps::Many(v) => v,
            };
            if steps.is_empty() || steps.iter().any(|s| s.is_empty()) {
                cx.at(
                    span,
                    k("restore"),
                    "every step needs at least a program name",
                );
            }
            Backup::Command {
                steps,
                path: b
                    .path
                    .map(|p| resolve(base, p.get_ref()).display().to_string()),
                backup_time,
            }
        }
    };
    ok.then_some(backup)
}
