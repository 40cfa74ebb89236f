//! The head file beside the ledger (`<ledger>.head`): the seq, hash and
//! signing key of the last record written, so that records removed from the
//! end are noticed too.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use super::Ledger;

impl Ledger {
    pub(super) fn head_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".head");
        PathBuf::from(p)
    }

    /// The head file: the seq and hash of the last record written.
    pub(super) fn read_head(&self) -> Option<(u64, String)> {
        self.read_head_signed().map(|(seq, hash, _)| (seq, hash))
    }

    /// The head file in full: seq, hash and the fingerprint of the key that
    /// signed that record (none when unsigned, or written before the head
    /// file said).
    pub(super) fn read_head_signed(&self) -> Option<(u64, String, Option<String>)> {
        let h = std::fs::read_to_string(self.head_path()).ok()?;
        let mut it = h.split_whitespace();
        let seq = it.next()?.parse::<u64>().ok()?;
        let hash = it.next()?.to_string();
        Some((seq, hash, it.next().map(String::from)))
    }

    pub(super) fn write_head(&self, seq: u64, hash: &str, signer: Option<&str>) -> io::Result<()> {
        let head = self.head_path();
        let tmp = head.with_extension("head.tmp");
        let mut f = File::create(&tmp)?;
        match signer {
            Some(fp) => writeln!(f, "{seq} {hash} {fp}")?,
            None => writeln!(f, "{seq} {hash}")?,
        }
        f.sync_data()?;
        std::fs::rename(&tmp, &head)
    }
}
