//! What a member's pax extended header says beyond what the tar reader applies
//! itself (path, link path, size): the sub-second mtime, and GNU's sparse-file
//! records in their three pax versions.
//!
//! - 0.0: `GNU.sparse.size`, then `GNU.sparse.offset` / `GNU.sparse.numbytes`
//!   pairs, repeated in one header;
//! - 0.1: `GNU.sparse.map` = "offset,size,offset,size,…";
//! - 1.0: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.realsize`,
//!   and the map at the start of the member's data (decimal numbers, one a
//!   line, padded to a 512-byte block); the header's name is
//!   `…/GNUSparseFile.N/name` and the real one is `GNU.sparse.name`.
//!
//! GNU tar writes these for `--format=posix -S`, bsdtar whenever it finds holes.
//! The member's data is then only the data regions, one after another.

use std::io::{self, Read};
use std::path::PathBuf;

/// Where a sparse file's data regions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SparseMap {
    /// (offset, length) of each data region.
    Known(Vec<(u64, u64)>),
    /// Version 1.0: the map is at the start of the data.
    InData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The file's real name (versions 0.1 and 1.0 keep it here).
    pub name: Option<PathBuf>,
    /// The file's size, holes included.
    pub real_size: u64,
    pub map: SparseMap,
}

/// A member's pax facts.
#[derive(Debug, Default)]
pub struct Pax {
    /// `mtime` as (seconds, nanoseconds).
    pub mtime: Option<(i64, u32)>,
    pub sparse: Option<Sparse>,
    /// Extended attributes (`SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`).
    pub xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
    /// POSIX ACLs in text form (`SCHILY.acl.access`, `SCHILY.acl.default`).
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
}

fn num(v: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "a sparse-file record holds {:?}, not a number",
                String::from_utf8_lossy(v)
            )
        })
}

/// Reads the member's pax records; `Err` for a sparse map that cannot be read.
/// `raw`: the member's pax header data as the archive holds it, when the
/// extractor saw it go by; the tar reader's own view splits records at every
/// newline, which loses values that hold one (GNU tar's ACL text, binary
/// attributes).
pub fn read<R: Read>(entry: &mut tar::Entry<R>, raw: Option<&[u8]>) -> Result<Pax, String> {
    let records: Vec<(Vec<u8>, Vec<u8>)> = match raw {
        Some(data) => records(data),
        None => match entry.pax_extensions() {
            Ok(Some(exts)) => exts
                .filter_map(Result::ok)
                .map(|e| (e.key_bytes().to_vec(), e.value_bytes().to_vec()))
                .collect(),
            _ => Vec::new(),
        },
    };
    let mut pax = Pax::default();
    let (mut major, mut minor) = (None, None);
    let (mut name, mut real_size, mut map) = (None, None, None);
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for (key, v) in &records {
        let v = v.as_slice();
        match key.as_slice() {
            b"mtime" => pax.mtime = parse_pax_time(v),
            b"GNU.sparse.major" => major = Some(num(v)?),
            b"GNU.sparse.minor" => minor = Some(num(v)?),
            b"GNU.sparse.name" => {
                name = Some(PathBuf::from(String::from_utf8_lossy(v).into_owned()))
            }
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => real_size = Some(num(v)?),
            b"GNU.sparse.offset" => pairs.push((num(v)?, 0)),
            b"GNU.sparse.numbytes" => match pairs.last_mut() {
                Some(last) => last.1 = num(v)?,
                None => return Err("GNU.sparse.numbytes without an offset before it".into()),
            },
            b"GNU.sparse.map" => {
                let text = String::from_utf8_lossy(v);
                let nums: Vec<u64> = text
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s.as_bytes()))
                    .collect::<Result<_, _>>()?;
                if !nums.len().is_multiple_of(2) {
                    return Err("GNU.sparse.map has an odd count of numbers".into());
                }
                map = Some(nums.chunks(2).map(|c| (c[0], c[1])).collect::<Vec<_>>());
            }
            b"SCHILY.acl.access" => pax.acl_access = Some(String::from_utf8_lossy(v).into_owned()),
            b"SCHILY.acl.default" => {
                pax.acl_default = Some(String::from_utf8_lossy(v).into_owned())
            }
            k => {
                if let Some(x) = crate::tree::metadata::from_pax(k, v) {
                    pax.xattrs.push(x);
                }
            }
        }
    }
    let map = match (major, minor, map) {
        (Some(1), Some(0), _) => Some(SparseMap::InData),
        (Some(m), Some(n), _) => {
            return Err(format!(
                "sparse-file format {m}.{n} is not one restore-verifier reads"
            ));
        }
        (_, _, Some(m)) => Some(SparseMap::Known(m)),
        _ if !pairs.is_empty() => Some(SparseMap::Known(pairs)),
        _ => None,
    };
    if let Some(map) = map {
        let real_size = real_size.ok_or("a sparse file without its real size")?;
        pax.sparse = Some(Sparse {
            name,
            real_size,
            map,
        });
    }
    Ok(pax)
}

/// Pax records, `LEN KEY=VALUE\n` one after another, where LEN counts the
/// whole record: values may hold newlines and any byte.
pub fn records(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(sp) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            break;
        }
        let kv = &rest[sp + 1..len - 1];
        if let Some(eq) = kv.iter().position(|&b| b == b'=') {
            out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        }
        rest = &rest[len..];
    }
    out
}

/// Reads a version 1.0 map from the start of the data, and the padding to
/// the next 512-byte block after it.
/// `limit`: the member's stored size.
pub fn read_data_map(r: &mut impl Read, limit: u64) -> io::Result<Vec<(u64, u64)>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sparse map: {m}"));
    let mut consumed = 0usize;
    let mut line = |r: &mut dyn Read| -> io::Result<u64> {
        let mut digits = Vec::new();
        let mut b = [0u8; 1];
        loop {
            r.read_exact(&mut b)?;
            consumed += 1;
            match b[0] {
                b'\n' => break,
                d @ b'0'..=b'9' if digits.len() < 20 => digits.push(d),
                _ => return Err(bad("not a decimal number")),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("not a decimal number"))
    };
    let count = line(r)?;
    // Each region takes at least 4 bytes of the map ("0\n0\n"); a count the
    // member cannot hold is damage, not a reason to fill memory.
    if count > limit / 4 {
        return Err(bad("more regions than the member holds"));
    }
    let mut map = Vec::new();
    for _ in 0..count {
        let off = line(r)?;
        let len = line(r)?;
        map.push((off, len));
    }
    let mut pad = vec![0u8; (512 - consumed % 512) % 512];
    r.read_exact(&mut pad)?;
    Ok(map)
}

/// Checks that regions are in order, do not overlap, and lie within the file.
pub fn check_map(map: &[(u64, u64)], real_size: u64) -> Result<(), String> {
    let mut end = 0u64;
    for &(off, len) in map {
        let stop = off
            .checked_add(len)
            .ok_or("a sparse region past the largest file size")?;
        if off < end || stop > real_size {
            return Err(format!(
                "sparse region {off}+{len} overlaps another or lies past the file's size {real_size}"
            ));
        }
        end = stop;
    }
    Ok(())
}

/// A member's modification time at the precision the archive keeps: a pax
/// `mtime` record (`1700000000.123456789`) where there is one, else the
/// header's whole seconds.
pub fn member_mtime(header: &tar::Header, pax: &Pax) -> filetime::FileTime {
    let whole = header.mtime().unwrap_or(0) as i64;
    let (secs, nanos) = pax.mtime.unwrap_or((whole, 0));
    filetime::FileTime::from_unix_time(secs, nanos)
}

/// `SECONDS[.FRACTION]`, seconds possibly negative (pax, POSIX.1-2001).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    // -1.5 is half a second before -1: one second back, plus the rest.
    if int.starts_with('-') && nanos > 0 {
        return Some((secs - 1, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn records_may_hold_newlines() {
        fn rec(k: &str, v: &str) -> String {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while n.to_string().len() + body.len() != n {
                n += 1;
            }
            format!("{n}{body}")
        }
        let text = "user::rw-\nuser:nobody:rw-\n";
        let data = rec("SCHILY.acl.access", text) + &rec("mtime", "1.5");
        let got = records(data.as_bytes());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].1, text.as_bytes());
        assert_eq!(got[1], (b"mtime".to_vec(), b"1.5".to_vec()));
    }

    #[test]
    fn data_maps() {
        let mut data: &[u8] = b"2\n0\n4096\n8192\n10\n";
        let mut padded = data.to_vec();
        padded.resize(512, 0);
        padded.extend(b"DATA");
        let mut r: &[u8] = &padded;
        assert_eq!(
            read_data_map(&mut r, 1 << 20).unwrap(),
            vec![(0, 4096), (8192, 10)]
        );
        assert_eq!(r, b"DATA");
        assert!(read_data_map(&mut data, 1 << 20).is_err(), "cut short");
        assert!(check_map(&[(0, 10), (5, 10)], 100).is_err());
        assert!(check_map(&[(0, 10), (90, 11)], 100).is_err());
        assert!(check_map(&[(0, 10), (90, 10)], 100).is_ok());
    }
}
