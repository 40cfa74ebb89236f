//! Signed evidence: an ed25519 key signs every record's `hash` (its 64 hex
//! characters, as ASCII), so an auditor holding only the public key can tell
//! that records came from the agent and were not re-chained afterwards.
//! Keys are PKCS#8 PEM (private, mode 0600) and SPKI PEM (public, `FILE.pub`),
//! readable by OpenSSL as well.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write key {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// The public key file written beside a private key.
pub fn public_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Makes a new key pair at `path` (0600) and `path.pub`; refuses to overwrite.
pub fn keygen(path: &Path) -> Result<VerifyingKey, KeyError> {
    let werr = |p: &Path, m: String| KeyError::Write {
        path: p.to_path_buf(),
        message: m,
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| werr(path, e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| werr(path, e.to_string()))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| werr(path, format!("{e} (an existing key is never overwritten)")))?;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| werr(path, e.to_string()))?;
    let public = key.verifying_key();
    let pub_pem = public
        .to_public_key_pem(Default::default())
        .map_err(|e| werr(path, e.to_string()))?;
    let pp = public_path(path);
    std::fs::write(&pp, pub_pem).map_err(|e| werr(&pp, e.to_string()))?;
    Ok(public)
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        message: format!("not an ed25519 PKCS#8 PEM private key ({e}); make one with `restore-verifier keygen -o FILE`"),
    })
}

pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        message: format!("not an ed25519 public key PEM ({e})"),
    })
}

/// The signature of a record hash, hex.
pub fn sign_hash(key: &SigningKey, hash: &str) -> String {
    hex::encode(key.sign(hash.as_bytes()).to_bytes())
}

/// True when `signature` (hex) is `key`'s signature of `hash`.
pub fn verify_hash(key: &VerifyingKey, hash: &str, signature: &str) -> bool {
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify(hash.as_bytes(), &Signature::from_bytes(&arr))
        .is_ok()
}

pub use ed25519_dalek::{SigningKey as EvidenceKey, VerifyingKey as EvidencePublicKey};

/// A public key's fingerprint: SHA-256 of its SPKI DER, hex. The same as
/// `openssl pkey -pubin -in FILE.pub -outform DER | sha256sum`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    let der = key
        .to_public_key_der()
        .expect("an ed25519 public key encodes");
    hex::encode(Sha256::digest(der.as_bytes()))
}

/// A public key as SPKI PEM text (what `FILE.pub` holds).
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(Default::default())
        .expect("an ed25519 public key encodes")
}

/// Reads SPKI PEM text back.
pub fn public_from_pem(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_public_key_pem(text).ok()
}
