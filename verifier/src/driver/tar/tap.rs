//! Keeping the raw bytes the tar reader reads between two members, so the
//! last pax header among them can be read again as written.

use std::io::{self, Read};

/// Keeps what the tar reader reads while it finds the next member (its pax
/// header among it), up to a bound.
pub(super) struct Tap<R> {
    pub(super) inner: R,
    pub(super) seen: std::rc::Rc<std::cell::RefCell<Seen>>,
}

#[derive(Default)]
pub(super) struct Seen {
    /// Bytes read so far, and where the current recording began.
    pos: u64,
    start: u64,
    bytes: Vec<u8>,
    overflow: bool,
    /// Only between `start` and the member's arrival: not its data.
    pub(super) recording: bool,
}

/// More than this between two members is not headers: not kept.
const SEEN_MAX: usize = 4 << 20;

impl<R> Tap<R> {
    pub(super) fn new(inner: R) -> Tap<R> {
        Tap {
            inner,
            seen: Default::default(),
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.seen.borrow_mut();
        s.pos += n as u64;
        if s.recording && !s.overflow {
            if s.bytes.len() + n > SEEN_MAX {
                s.overflow = true;
                s.bytes = Vec::new();
            } else {
                s.bytes.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}

impl Seen {
    pub(super) fn start(&mut self) {
        self.start = self.pos;
        self.bytes.clear();
        self.overflow = false;
        self.recording = true;
    }

    /// The data of the last pax (`x`) header among the headers read since
    /// `start`, when they can be read as headers with good checksums.
    pub(super) fn pax_data(&mut self) -> Option<Vec<u8>> {
        if self.overflow {
            return None;
        }
        // Headers start at the next 512-byte boundary of the stream.
        let skip = ((512 - self.start % 512) % 512) as usize;
        let mut at = skip;
        let mut found = None;
        while at + 512 <= self.bytes.len() {
            let block = &self.bytes[at..at + 512];
            let header = tar::Header::from_byte_slice(block);
            if header.cksum().ok()? != checksum(block) {
                return None;
            }
            let flag = block[156];
            let size = usize::try_from(header.entry_size().ok()?).ok()?;
            let data = at + 512;
            match flag {
                b'x' => {
                    found = Some(self.bytes.get(data..data.checked_add(size)?)?.to_vec());
                }
                b'L' | b'K' | b'g' => {}
                _ => return found,
            }
            at = data.checked_add(size.div_ceil(512).checked_mul(512)?)?;
        }
        None
    }
}

/// A tar header's checksum: its bytes summed with the checksum field as spaces.
pub(super) fn checksum(block: &[u8]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum()
}
