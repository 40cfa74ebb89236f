//! The run manifest: one JSON line per content-checked file, hashed as it is
//! written so the record can pin it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::CompareError;
use crate::tree::path::display;

/// Writes the run manifest (one JSON object per content-checked file) and hashes
/// it as it goes, so the record can pin the manifest by its SHA-256.
pub(super) struct ManifestWriter {
    pub(super) path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
}

#[derive(Serialize)]
struct ManifestLine<'a> {
    path: &'a str,
    size: u64,
    sha256: &'a str,
    #[serde(rename = "match")]
    matched: bool,
}

impl ManifestWriter {
    pub(super) fn create(path: &Path) -> Result<ManifestWriter, CompareError> {
        let err = |e| CompareError::Manifest {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = File::create(path).map_err(err)?;
        Ok(ManifestWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(f),
            hasher: Sha256::new(),
        })
    }

    pub(super) fn line(
        &mut self,
        rel: &Path,
        size: u64,
        sha256: &str,
        matched: bool,
    ) -> io::Result<()> {
        let p = display(rel);
        let mut line = serde_json::to_vec(&ManifestLine {
            path: &p,
            size,
            sha256,
            matched,
        })?;
        line.push(b'\n');
        self.hasher.update(&line);
        self.out.write_all(&line)
    }

    pub(super) fn finish(mut self) -> io::Result<String> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}
