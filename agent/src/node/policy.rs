//! Signed, versioned policy bundles: interaction models (`*.lcc`) and the stability model
//! (`model.json`), published from one point of control and spread peer to peer.
//!
//! A bundle is signed with ed25519 over a canonical byte string (the version, then each file's
//! name and content, length-prefixed, in name order). A peer adopts a bundle only if it is signed
//! by the key it trusts and its version is newer than the one it holds; it then writes the files
//! atomically into its policy folder (where the stability model's reload picks `model.json` up)
//! and forwards the bundle to the peers it knows. Which roles to play stays each agent's choice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Largest file accepted in a bundle, bytes.
pub const MAX_FILE: usize = 256 * 1024;
/// Most files in a bundle.
pub const MAX_FILES: usize = 64;

/// Errors of bundles.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file's I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or signature is not valid hex of the right length.
    #[error("{what}: {msg}")]
    Key {
        /// Which value.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// The signature does not verify against the trusted key.
    #[error("bundle version {0}: signature does not verify with the trusted key")]
    BadSignature(u64),
    /// Signed by a key other than the trusted one.
    #[error("bundle version {0}: signed by an untrusted key")]
    UntrustedSigner(u64),
    /// Not newer than the bundle in use.
    #[error("bundle version {got} is not newer than {have}")]
    NotNewer {
        /// Offered.
        got: u64,
        /// In use.
        have: u64,
    },
    /// A file name or size not allowed.
    #[error("bundle file {0:?}: {1}")]
    BadFile(String, String),
}

/// A signed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Monotonic version.
    pub version: u64,
    /// File name → content.
    pub files: BTreeMap<String, String>,
    /// Signer's public key, hex.
    pub signer: String,
    /// ed25519 signature over [`Bundle::signed_bytes`], hex.
    pub signature: String,
}

fn check_name(name: &str) -> Result<(), PolicyError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(ok_char) {
        return Err(PolicyError::BadFile(
            name.into(),
            "names are plain file names of [A-Za-z0-9._-]".into(),
        ));
    }
    if !(name.ends_with(".lcc") || name.ends_with(".json") || name.ends_with(".toml")) {
        return Err(PolicyError::BadFile(
            name.into(),
            "only .lcc, .json and .toml files".into(),
        ));
    }
    Ok(())
}

impl Bundle {
    /// The bytes the signature covers.
    pub fn signed_bytes(version: u64, files: &BTreeMap<String, String>) -> Vec<u8> {
        let mut out = b"keel-policy-bundle\0".to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        for (k, v) in files {
            out.extend_from_slice(&(k.len() as u64).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u64).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    /// Signs `files` as `version`.
    ///
    /// # Errors
    /// [`PolicyError::BadFile`] for a name or size not allowed.
    pub fn sign(
        key: &SigningKey,
        version: u64,
        files: BTreeMap<String, String>,
    ) -> Result<Self, PolicyError> {
        Self::check_files(&files)?;
        let sig = key.sign(&Self::signed_bytes(version, &files));
        Ok(Self {
            version,
            files,
            signer: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        })
    }

    fn check_files(files: &BTreeMap<String, String>) -> Result<(), PolicyError> {
        if files.len() > MAX_FILES {
            return Err(PolicyError::BadFile(
                String::new(),
                format!("more than {MAX_FILES} files"),
            ));
        }
        for (k, v) in files {
            check_name(k)?;
            if v.len() > MAX_FILE {
                return Err(PolicyError::BadFile(
                    k.clone(),
                    format!("over {MAX_FILE} bytes"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the signer is `trusted`, the signature, and the file names.
    ///
    /// # Errors
    /// [`PolicyError::UntrustedSigner`], [`PolicyError::BadSignature`], [`PolicyError::BadFile`].
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<(), PolicyError> {
        if self.signer != hex::encode(trusted.to_bytes()) {
            return Err(PolicyError::UntrustedSigner(self.version));
        }
        let sig = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(PolicyError::BadSignature(self.version))?;
        trusted
            .verify(&Self::signed_bytes(self.version, &self.files), &sig)
            .map_err(|_| PolicyError::BadSignature(self.version))?;
        Self::check_files(&self.files)
    }

    /// Reads a bundle folder's `.lcc`, `.json` and `.toml` files (not recursive).
    ///
    /// # Errors
    /// I/O errors naming the file; [`PolicyError::BadFile`].
    pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PolicyError::Io { path, source }
        };
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !p.is_file() || check_name(&name).is_err() {
                continue;
            }
            files.insert(name, std::fs::read_to_string(&p).map_err(io(&p))?);
        }
        Self::check_files(&files)?;
        Ok(files)
    }

    /// Writes the files into `dir` atomically each (temporary name, then rename), and a
    /// `VERSION` file last.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn install(&self, dir: &Path) -> Result<(), PolicyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PolicyError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut all: Vec<(String, String)> = self
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.push(("VERSION".into(), format!("{}\n", self.version)));
        for (name, content) in all {
            let dest = dir.join(&name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        }
        Ok(())
    }

    /// The version installed in `dir` (0 if none).
    pub fn installed_version(dir: &Path) -> u64 {
        std::fs::read_to_string(dir.join("VERSION"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Parses a hex ed25519 public key.
///
/// # Errors
/// [`PolicyError::Key`].
pub fn parse_public_key(hexed: &str) -> Result<VerifyingKey, PolicyError> {
    let err = |msg: String| PolicyError::Key {
        what: "policy public key".into(),
        msg,
    };
    let b = hex::decode(hexed.trim()).map_err(|e| err(e.to_string()))?;
    let b = <[u8; 32]>::try_from(b).map_err(|_| err("expected 32 bytes".into()))?;
    VerifyingKey::from_bytes(&b).map_err(|e| err(e.to_string()))
}

/// Parses a hex ed25519 secret key (32 bytes).
///
/// # Errors
/// [`PolicyError::Key`].
pub fn parse_signing_key(hexed: &str) -> Result<SigningKey, PolicyError> {
    let b = hex::decode(hexed.trim()).map_err(|e| PolicyError::Key {
        what: "signing key".into(),
        msg: e.to_string(),
    })?;
    let b = <[u8; 32]>::try_from(b).map_err(|_| PolicyError::Key {
        what: "signing key".into(),
        msg: "expected 32 bytes".into(),
    })?;
    Ok(SigningKey::from_bytes(&b))
}

/// Decides whether to adopt `b` given the trusted key and the version in use.
///
/// # Errors
/// Why it is refused.
pub fn admit(b: &Bundle, trusted: &VerifyingKey, have: u64) -> Result<(), PolicyError> {
    b.verify(trusted)?;
    if b.version <= have {
        return Err(PolicyError::NotNewer {
            got: b.version,
            have,
        });
    }
    Ok(())
}

/// The file of a bundle (and of the policy folder) that holds the interaction model the agents run.
pub const MODEL_FILE: &str = "migration.lcc";

/// The interaction model a bundle carries, if any: its [`MODEL_FILE`], as `(name, text)`.
///
/// # Errors
/// None today; reserved for bundles that name their model in a manifest.
pub fn interaction_model(b: &Bundle) -> Result<Option<(String, String)>, PolicyError> {
    Ok(b.files
        .get(MODEL_FILE)
        .map(|t| (MODEL_FILE.to_string(), t.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn files() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "idle.lcc".to_string(),
            "a(idle, X) :: null <- ok.".to_string(),
        )])
    }

    #[test]
    fn signed_bundle_verifies_and_tampering_fails() {
        let k = key(1);
        let b = Bundle::sign(&k, 3, files()).unwrap();
        assert!(admit(&b, &k.verifying_key(), 2).is_ok());
        assert!(matches!(
            admit(&b, &k.verifying_key(), 3),
            Err(PolicyError::NotNewer { .. })
        ));
        let mut t = b.clone();
        t.files.insert("idle.lcc".into(), "evil".into());
        assert!(matches!(
            t.verify(&k.verifying_key()),
            Err(PolicyError::BadSignature(3))
        ));
        let mut t = b.clone();
        t.version = 4;
        assert!(t.verify(&k.verifying_key()).is_err());
        let mut unsigned = b.clone();
        unsigned.signature.clear();
        assert!(unsigned.verify(&k.verifying_key()).is_err());
        let other = Bundle::sign(&key(2), 9, files()).unwrap();
        assert!(matches!(
            other.verify(&k.verifying_key()),
            Err(PolicyError::UntrustedSigner(9))
        ));
    }

    #[test]
    fn names_are_checked_and_install_is_versioned() {
        let bad = BTreeMap::from([("../x.lcc".to_string(), String::new())]);
        assert!(Bundle::sign(&key(1), 1, bad).is_err());
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::sign(&key(1), 5, files()).unwrap();
        b.install(dir.path()).unwrap();
        assert_eq!(Bundle::installed_version(dir.path()), 5);
        assert_eq!(Bundle::read_dir(dir.path()).unwrap(), files());
        let pk = hex::encode(key(1).verifying_key().to_bytes());
        assert_eq!(parse_public_key(&pk).unwrap(), key(1).verifying_key());
        assert!(parse_public_key("abc").is_err());
    }
}
