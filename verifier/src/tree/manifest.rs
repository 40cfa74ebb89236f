//! Manifests: a signed-off inventory of a tree (path, type, size, mode, mtime,
//! SHA-256 of every file, symlink targets) taken when the backup is made, to
//! verify a restore against exactly that — no live source, no drift tolerance.
//!
//! The file is JSON lines in tree order: a header, one line per entry, and a
//! footer carrying the count and the SHA-256 of every byte before it, so an
//! edited manifest is refused rather than trusted.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::drill::deadline::Deadline;
use crate::tree::content::content_check;
use crate::tree::path::display;
use crate::tree::walk::{Entry, Handle, Kind, Walk, WalkError};

pub const MANIFEST_FORMAT: &str = "restore-verifier/manifest/v1";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write manifest {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path} while making the manifest: {message}")]
    Tree { path: PathBuf, message: String },
    #[error("manifest {path} is refused: {why}")]
    Invalid { path: PathBuf, why: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    root: String,
    created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
    mode: String,
    mtime_ns: i128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    entries: u64,
    sha256: String,
}

/// What `create` wrote.
#[derive(Debug, Clone)]
pub struct ManifestSummary {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::Other => "other",
    }
}

fn ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn from_ns(n: i128) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs() as u64)
    }
}

/// Writes a manifest of `entries` (with each file's SHA-256) to `out`.
pub fn write(
    out: &Path,
    root_label: &str,
    entries: impl Iterator<Item = Result<(Entry, Option<String>), ManifestError>>,
) -> Result<ManifestSummary, ManifestError> {
    let werr = |e| ManifestError::Write {
        path: out.to_path_buf(),
        source: e,
    };
    let mut w = BufWriter::new(File::create(out).map_err(werr)?);
    let mut hasher = Sha256::new();
    let mut put = |w: &mut BufWriter<File>, v: &[u8]| -> io::Result<()> {
        hasher.update(v);
        hasher.update(b"\n");
        w.write_all(v)?;
        w.write_all(b"\n")
    };
    let header = Header {
        format: MANIFEST_FORMAT.into(),
        root: root_label.to_string(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    put(&mut w, &serde_json::to_vec(&header).expect("header")).map_err(werr)?;
    let mut s = ManifestSummary {
        entries: 0,
        files: 0,
        bytes: 0,
        sha256: String::new(),
    };
    for item in entries {
        let (e, sha256) = item?;
        // Sockets are left out of the inventory, as in a drill.
        if e.kind == Kind::Socket {
            continue;
        }
        if e.kind == Kind::File {
            s.files += 1;
            s.bytes += e.size;
        }
        let line = Line {
            path: display(&e.rel),
            kind: e
                .kind_label
                .clone()
                .unwrap_or_else(|| kind_name(e.kind).into()),
            size: e.size,
            mode: format!("{:04o}", e.mode),
            mtime_ns: ns(e.mtime),
            sha256,
            target: e.target.as_deref().map(display),
        };
        put(&mut w, &serde_json::to_vec(&line).expect("line")).map_err(werr)?;
        s.entries += 1;
    }
    let digest = hex::encode(hasher.finalize());
    let footer = Footer {
        entries: s.entries,
        sha256: digest.clone(),
    };
    w.write_all(&serde_json::to_vec(&footer).expect("footer"))
        .map_err(werr)?;
    w.write_all(b"\n").map_err(werr)?;
    w.flush().map_err(werr)?;
    w.get_ref().sync_all().map_err(werr)?;
    s.sha256 = digest;
    Ok(s)
}

/// Writes the manifest of the tree at `root` to `out`.
pub fn create(
    root: &Path,
    out: &Path,
    deadline: &Deadline,
) -> Result<ManifestSummary, ManifestError> {
    std::fs::read_dir(root).map_err(|e| ManifestError::Tree {
        path: root.to_path_buf(),
        message: e.to_string(),
    })?;
    let entries = Walk::new(root, None).map(|e| {
        let e = e.map_err(|e| ManifestError::Tree {
            path: root.join(&e.rel),
            message: e.message,
        })?;
        let sha = if e.kind == Kind::File {
            let full = root.join(&e.rel);
            let out = content_check(None, &full, deadline).map_err(|err| ManifestError::Tree {
                path: full.clone(),
                message: format!("{err:?}"),
            })?;
            Some(out.sha256)
        } else {
            None
        };
        Ok((e, sha))
    });
    write(out, &root.display().to_string(), entries)
}

/// Checks a manifest's own checksum; returns its SHA-256 (the footer's).
pub fn verify_checksum(path: &Path) -> Result<String, ManifestError> {
    let rerr = |e| ManifestError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let invalid = |why: &str| ManifestError::Invalid {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let mut r = BufReader::new(File::open(path).map_err(rerr)?);
    let mut hasher = Sha256::new();
    let mut lines = 0u64;
    let mut last = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(rerr)?;
        if n == 0 {
            break;
        }
        if !last.is_empty() {
            hasher.update(&last);
        }
        last = buf.clone();
        lines += 1;
    }
    let footer: Footer = serde_json::from_slice(&last)
        .map_err(|_| invalid("it has no footer (truncated or not a manifest)"))?;
    if hex::encode(hasher.finalize()) != footer.sha256 {
        return Err(invalid(
            "its checksum does not match its content: it was changed after it was made",
        ));
    }
    if lines < 2 || footer.entries != lines - 2 {
        return Err(invalid("its entry count does not match its footer"));
    }
    Ok(footer.sha256)
}

/// The entries of a (checksum-verified) manifest, in tree order.
pub struct ManifestReader {
    path: PathBuf,
    lines: io::Lines<BufReader<File>>,
    remaining: u64,
    prev: Option<PathBuf>,
    pub sha256: String,
}

impl ManifestReader {
    pub fn open(path: &Path) -> Result<ManifestReader, ManifestError> {
        let sha256 = verify_checksum(path)?;
        let f = File::open(path).map_err(|e| ManifestError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut lines = BufReader::with_capacity(256 * 1024, f).lines();
        let header: Header = lines
            .next()
            .and_then(|l| l.ok())
            .and_then(|l| serde_json::from_str(&l).ok())
            .ok_or_else(|| ManifestError::Invalid {
                path: path.to_path_buf(),
                why: "its header is unreadable".into(),
            })?;
        if header.format != MANIFEST_FORMAT {
            return Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                why: format!("unknown format {:?}", header.format),
            });
        }
        // Count entries: the footer was checked; everything between is entries.
        let total = {
            let mut n = 0u64;
            let f = File::open(path).map_err(|e| ManifestError::Read {
                path: path.to_path_buf(),
                source: e,
            })?;
            for b in BufReader::new(f).bytes() {
                if b.map_err(|e| ManifestError::Read {
                    path: path.to_path_buf(),
                    source: e,
                })? == b'\n'
                {
                    n += 1;
                }
            }
            n.saturating_sub(2)
        };
        Ok(ManifestReader {
            path: path.to_path_buf(),
            lines,
            remaining: total,
            prev: None,
            sha256,
        })
    }
}

impl Iterator for ManifestReader {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let bad = |why: String| {
            Some(Err(WalkError {
                rel: PathBuf::new(),
                message: why,
            }))
        };
        let text = match self.lines.next()? {
            Ok(t) => t,
            Err(e) => return bad(format!("reading {}: {e}", self.path.display())),
        };
        let l: Line = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(e) => return bad(format!("bad manifest line: {e}")),
        };
        let rel = crate::tree::path::from_display(&l.path);
        if self.prev.as_ref().is_some_and(|p| *p >= rel) {
            return bad(format!(
                "manifest entries are not in tree order at {}",
                l.path
            ));
        }
        self.prev = Some(rel.clone());
        let kind = match l.kind.as_str() {
            "file" => Kind::File,
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            "fifo" => Kind::Fifo,
            _ => Kind::Other,
        };
        let kind_label = (kind == Kind::Other).then(|| l.kind.clone());
        let t = from_ns(l.mtime_ns);
        Some(Ok(Entry {
            rel,
            kind,
            size: l.size,
            mode: u32::from_str_radix(&l.mode, 8).unwrap_or(0),
            uid: 0,
            gid: 0,
            mtime: t,
            ctime: t,
            btime: None,
            target: l.target.as_deref().map(crate::tree::path::from_display),
            sha256: l.sha256,
            kind_label,
            handle: Handle::Path,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"hello").unwrap();
        std::fs::write(root.join("a.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("l")).unwrap();
        let m = tmp.path().join("m.jsonl");
        let s = create(&root, &m, &Deadline::none()).unwrap();
        assert_eq!((s.entries, s.files, s.bytes), (5, 2, 6));
        let r = ManifestReader::open(&m).unwrap();
        assert_eq!(r.sha256, s.sha256);
        let rels: Vec<String> = r.map(|e| display(&e.unwrap().rel)).collect();
        assert_eq!(rels, ["a", "a/b", "a/b/f", "a.txt", "l"]);
        let text = std::fs::read_to_string(&m).unwrap();
        std::fs::write(&m, text.replace("\"size\":5", "\"size\":6")).unwrap();
        let err = ManifestReader::open(&m).err().unwrap();
        assert!(
            err.to_string().contains("changed after it was made"),
            "{err}"
        );
    }
}
