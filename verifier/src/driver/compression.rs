//! Compressed archives, recognised by their content (magic bytes), never by
//! their name: xz data in a file named `.tar` is read as xz.

use std::io::{self, BufRead, Read};

/// What a backup file is compressed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lz4,
}

/// Formats recognised but not read, named so the reason says what to change.
const UNSUPPORTED: &[(&[u8], &str)] = &[
    (&[0x1f, 0x9d], "compress (.Z)"),
    (&[0x1f, 0xa0], "compress (LZH)"),
    (b"LZIP", "lzip"),
    (&[0x5d, 0x00, 0x00], "lzma (the format before xz)"),
    (&[0x89, b'L', b'Z', b'O'], "lzop"),
    (&[0x02, 0x21, 0x4c, 0x18], "lz4 (legacy frames)"),
];

impl Compression {
    /// Recognises the compression from the first bytes of the file;
    /// `Err(name)` for one that is recognised but not supported.
    pub fn detect(head: &[u8]) -> Result<Compression, &'static str> {
        let c = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
            Compression::Lz4
        } else if let Some((_, name)) = UNSUPPORTED.iter().find(|(m, _)| head.starts_with(m)) {
            return Err(name);
        } else {
            Compression::Plain
        };
        Ok(c)
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Plain => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Lz4 => "lz4",
        }
    }
}

/// The decompressed stream of a backup file, which gives the file's reader
/// back once the archive in it is read (to read, and hash, the rest).
pub enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(GzMembers<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Xz(liblzma::bufread::XzDecoder<R>),
    Bzip2(bzip2::bufread::MultiBzDecoder<R>),
    Lz4(Box<lz4_flex::frame::FrameDecoder<R>>),
}

/// zstd frames written with `--long=31` need a 2 GiB window; every window
/// zstd can write is accepted (the memory is taken only as the frame needs).
const ZSTD_WINDOW_LOG_MAX: u32 = 31;

impl<R: BufRead> Decoder<R> {
    pub fn new(c: Compression, raw: R) -> io::Result<Decoder<R>> {
        Ok(match c {
            Compression::Plain => Decoder::Plain(raw),
            Compression::Gzip => Decoder::Gzip(GzMembers::new(raw)),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(raw)?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Decoder::Zstd(d)
            }
            Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new_multi_decoder(raw)),
            Compression::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(raw)),
            Compression::Lz4 => Decoder::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(raw))),
        })
    }

    fn compression(&self) -> Compression {
        match self {
            Decoder::Plain(_) => Compression::Plain,
            Decoder::Gzip(_) => Compression::Gzip,
            Decoder::Zstd(_) => Compression::Zstd,
            Decoder::Xz(_) => Compression::Xz,
            Decoder::Bzip2(_) => Compression::Bzip2,
            Decoder::Lz4(_) => Compression::Lz4,
        }
    }

    pub fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Xz(d) => d.into_inner(),
            Decoder::Bzip2(d) => d.into_inner(),
            Decoder::Lz4(d) => d.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = match self {
            Decoder::Plain(r) => return r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
            Decoder::Bzip2(d) => d.read(buf),
            Decoder::Lz4(d) => d.read(buf),
        };
        // Say which layer failed: "the xz data is damaged: …", not a tar
        // header complaint with binary in it.
        r.map_err(|e| {
            let what = self.compression().name();
            let cut = if e.kind() == io::ErrorKind::UnexpectedEof
                || e.to_string().contains("incomplete")
            {
                " (truncated?)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("the {what} data is damaged: {e}{cut}"))
        })
    }
}

/// gzip members one after another (`cat a.gz b.gz`, pigz), and zero padding
/// after the last one (a tape block, `dd`), as `gzip -t` and GNU tar accept.
/// Anything else after the gzip data is an error.
pub struct GzMembers<R: BufRead> {
    current: Option<flate2::bufread::GzDecoder<R>>,
    finished: Option<R>,
}

impl<R: BufRead> GzMembers<R> {
    fn new(raw: R) -> GzMembers<R> {
        GzMembers {
            current: Some(flate2::bufread::GzDecoder::new(raw)),
            finished: None,
        }
    }

    fn into_inner(self) -> R {
        match (self.current, self.finished) {
            (Some(d), _) => d.into_inner(),
            (None, Some(r)) => r,
            (None, None) => unreachable!("a gzip reader is always held"),
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(d) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = d.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut raw = self.current.take().expect("held").into_inner();
            // (The buffer may hold just the first byte of the next member:
            // the decoder checks the second.)
            if raw.fill_buf()?.first() == Some(&0x1f) {
                self.current = Some(flate2::bufread::GzDecoder::new(raw));
                continue;
            }
            loop {
                let head = raw.fill_buf()?;
                if head.is_empty() {
                    break;
                }
                if head.iter().any(|&b| b != 0) {
                    self.finished = Some(raw);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "data that is neither gzip nor zero padding follows the gzip stream",
                    ));
                }
                let n = head.len();
                raw.consume(n);
            }
            self.finished = Some(raw);
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn unpack(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let c = Compression::detect(bytes).unwrap();
        let mut d = Decoder::new(c, io::BufReader::new(bytes))?;
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gzip_members_and_zero_padding() {
        let mut two = gz(b"one ");
        two.extend(gz(b"two"));
        assert_eq!(unpack(&two).unwrap(), b"one two");
        let mut padded = gz(b"data");
        padded.extend(vec![0u8; 10_240]);
        assert_eq!(unpack(&padded).unwrap(), b"data");
        let mut junk = gz(b"data");
        junk.extend(b"\0\0junk");
        let e = unpack(&junk).unwrap_err().to_string();
        assert!(e.contains("neither gzip nor zero padding"), "{e}");
    }

    #[test]
    fn compressions_are_named_by_content() {
        assert_eq!(Compression::detect(b"BZh91AY"), Ok(Compression::Bzip2));
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1]),
            Ok(Compression::Xz)
        );
        assert_eq!(
            Compression::detect(&[0x1f, 0x9d, 0x90]),
            Err("compress (.Z)")
        );
        assert_eq!(Compression::detect(b"ustar"), Ok(Compression::Plain));
    }
}
