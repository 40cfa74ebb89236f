//! Verifying the ledger file: its lines fed to the chain check, an
//! incomplete last line, and the head file's seq, hash and key checked
//! against the chain's end.

use std::io::{self, BufRead, BufReader};

use super::{ChainChecker, ChainProblem, ChainReport, Ledger, LedgerError};

impl Ledger {
    /// Checks the whole chain and stops at the first bad line.
    pub fn verify(&self) -> Result<ChainReport, LedgerError> {
        self.verify_with(&[])
    }

    /// Checks the chain and every signature (see [`ChainChecker`]); with
    /// public keys, the records signed must be signed by one of them.
    pub fn verify_with(
        &self,
        keys: &[ed25519_dalek::VerifyingKey],
    ) -> Result<ChainReport, LedgerError> {
        let Some(f) = self.open_shared()? else {
            return Err(LedgerError::Open {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
            });
        };
        let mut reader = BufReader::with_capacity(256 * 1024, f);
        let mut chain = ChainChecker::new(keys);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| LedgerError::Read {
                    path: self.path.clone(),
                    source: e,
                })?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                let line_no = chain.report.records + 1;
                chain.report.problem = Some(ChainProblem {
                    line: line_no,
                    what: format!(
                        "incomplete last line ({} bytes; a write was interrupted). The records before it are not affected; the next append keeps these bytes aside in {}.torn-line{line_no} and records an error saying so",
                        buf.len(),
                        self.path.display()
                    ),
                });
                return Ok(chain.finish());
            }
            if !chain.push(&buf[..buf.len() - 1]) {
                return Ok(chain.finish());
            }
        }
        let mut report = chain.finish();
        if report.problem.is_none()
            && let Ok(head) = std::fs::read_to_string(self.head_path())
        {
            let mut it = head.split_whitespace();
            let seq: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let hash = it.next().unwrap_or_default();
            if seq > report.records {
                report.problem = Some(ChainProblem {
                    line: report.records + 1,
                    what: format!(
                        "the ledger ends at seq {} but its head file records seq {seq}: records were removed from the end",
                        report.records
                    ),
                });
            } else if seq == report.records && hash != report.head_hash {
                report.problem = Some(ChainProblem {
                    line: report.records,
                    what: "the last record's hash differs from the one in the head file: the end of the ledger was replaced".into(),
                });
            } else if seq == report.records
                && report.problem.is_none()
                && let Some(fp) = it.next()
                && let Some(last) = report.ranges.last()
            {
                // The head file names the key that signed the last record.
                let what = match &last.key {
                    _ if !last.signed => Some(format!(
                        "the head file says the last record was signed by key {fp}, but it carries no signature: signatures were removed"
                    )),
                    Some(k) if k != fp => Some(format!(
                        "the head file says the last record was signed by key {fp}, but it is signed by key {k}"
                    )),
                    _ => None,
                };
                if let Some(what) = what {
                    report.problem = Some(ChainProblem {
                        line: report.records,
                        what,
                    });
                }
            }
        }
        Ok(report)
    }
}
