//! `evidence export`: one file an auditor can take away and check offline —
//! the ledger, the run manifests of the period's drills, the public key, the
//! report in English and Japanese, checksums, and how to verify it all.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::report::{self, Lang, Period};

const README: &str = "restore-verifier evidence bundle
================================

ledger.jsonl        every record, one JSON object per line, hash-chained
ledger.jsonl.head   the last seq and hash the agent wrote
runs/<id>/          per drill: manifest.jsonl (path, size, SHA-256 of every
                    content-checked file); its SHA-256 is the record's
                    verify.manifest_sha256
evidence.pub        the public key records are signed with now (when signing is on);
                    key records (job (key)) name each later key with its PEM, and
                    the fingerprint of the key before it
report.en.md, report.ja.md, report.en.html, report.ja.html, report.json
                    the period report and No.151 assessment
SHA256SUMS          checksums of every file above

Verify offline:
  sha256sum -c SHA256SUMS
  restore-verifier evidence verify --ledger ledger.jsonl [--public-key evidence.pub]

Without restore-verifier: each record's `hash` is SHA-256 over the record's
JSON without `hash`, `signature` and `signature_previous`, keys sorted, no
whitespace; `prev_hash` is
the previous record's `hash` (64 zeros for the first). A signature is ed25519
over the 64 ASCII hex characters of `hash`:
  openssl pkeyutl -verify -pubin -inkey evidence.pub -rawin -in hash.txt -sigfile sig.bin
Records signed after a key record verify with the key it names (its
`key.public_key`, PEM), not necessarily evidence.pub; records signed before any
key record (a ledger signed from its start) with the key the operator gave.
";

pub struct Exported {
    pub files: usize,
    pub records: usize,
}

pub fn export(
    cfg: &Config,
    period: &Period,
    now: DateTime<Utc>,
    out: &Path,
) -> anyhow::Result<Exported> {
    let ledger = crate::drills::ledger(cfg);
    let f = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut sums = String::new();
    let mut files = 0usize;
    let mut add = |tar: &mut tar::Builder<_>, name: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(now.timestamp().max(0) as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, data)?;
        sums.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(data))));
        files += 1;
        Ok(())
    };
    let ledger_bytes = std::fs::read(ledger.path())
        .with_context(|| format!("reading {}", ledger.path().display()))?;
    add(&mut tar, "ledger.jsonl", &ledger_bytes)?;
    let mut head = ledger.path().as_os_str().to_owned();
    head.push(".head");
    if let Ok(b) = std::fs::read(&head) {
        add(&mut tar, "ledger.jsonl.head", &b)?;
    }
    let mut records = 0usize;
    for r in ledger.records()?.filter_map(Result::ok) {
        let t = r.started_at.with_timezone(&Utc);
        if t < period.since || t >= period.until {
            continue;
        }
        records += 1;
        if let Some(a) = &r.artifacts {
            let m = cfg.agent.state_dir.join(a).join("manifest.jsonl");
            if let Ok(b) = std::fs::read(&m) {
                add(&mut tar, &format!("{a}/manifest.jsonl"), &b)?;
            }
        }
    }
    if let Some(k) = &cfg.agent.signing_key_file
        && let Ok(b) = std::fs::read(verifier::evidence::signing::public_path(k))
    {
        add(&mut tar, "evidence.pub", &b)?;
    }
    let a = crate::cli::report::for_config(cfg, period, now)?;
    add(
        &mut tar,
        "report.en.md",
        report::markdown(&a, Lang::En).as_bytes(),
    )?;
    add(
        &mut tar,
        "report.ja.md",
        report::markdown(&a, Lang::Ja).as_bytes(),
    )?;
    add(
        &mut tar,
        "report.en.html",
        report::html(&a, Lang::En).as_bytes(),
    )?;
    add(
        &mut tar,
        "report.ja.html",
        report::html(&a, Lang::Ja).as_bytes(),
    )?;
    add(
        &mut tar,
        "report.json",
        serde_json::to_string_pretty(&a)?.as_bytes(),
    )?;
    add(&mut tar, "README.txt", README.as_bytes())?;
    let sums_bytes = sums.clone().into_bytes();
    let mut h = tar::Header::new_gnu();
    h.set_size(sums_bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(now.timestamp().max(0) as u64);
    h.set_cksum();
    tar.append_data(&mut h, "SHA256SUMS", sums_bytes.as_slice())?;
    let gz = tar.into_inner()?;
    let mut f = gz.finish()?;
    f.flush()?;
    f.sync_all()?;
    Ok(Exported {
        files: files + 1,
        records,
    })
}
