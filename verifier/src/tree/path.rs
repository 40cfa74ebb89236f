//! How a relative path is written in records and manifests, and read back.

use std::path::{Path, PathBuf};

/// A path as it appears in records: relative, `/`-separated. Valid UTF-8 is
/// kept exactly; a byte that is not UTF-8 is NUL and two lowercase hex digits
/// ("a\0ffb" for a<ff>b). No file name holds NUL, so two names never share a
/// form, and [`from_display`] gives the name back. People see `a\xffb` (the
/// agent escapes what it prints).
pub fn display(rel: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in rel.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\0{b:02x}");
        }
    }
    out
}

/// The path a record's text stands for: the reverse of [`display`].
pub fn from_display(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let hex = |h: &[u8]| -> Option<u8> {
        if h.len() == 2 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        } else {
            None
        }
    };
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b == 0).then(|| tail.get(..2).and_then(hex)).flatten() {
            Some(x) => {
                out.push(x);
                rest = &tail[2..];
            }
            None => {
                out.push(b);
                rest = tail;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
