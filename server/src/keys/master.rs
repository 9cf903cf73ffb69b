//! The master key that encrypts private keys at rest with AES-256-GCM.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The length of an AES-GCM nonce, in bytes.
const NONCE_LEN: usize = 12;

/// A failure to load or use the master key.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The key file could not be read or created.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key is not 32 bytes of standard base64.
    #[error(
        "the master key in {0} is invalid; it must be 32 random bytes in standard base64 (44 characters)"
    )]
    Invalid(String),
    /// Decryption failed: wrong master key, or the data was changed.
    #[error(
        "a stored private key could not be decrypted; the master key differs from the one that encrypted it, or the store was altered"
    )]
    Decrypt,
}

/// The 256-bit key that encrypts private keys in the store. Its bytes are
/// zeroized on drop, and its `Debug` output is redacted.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Parses a key from standard base64; `source` names where it came from,
    /// for the error message.
    pub fn from_base64(encoded: &str, source: &str) -> Result<Self, MasterKeyError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| MasterKeyError::Invalid(source.to_string()))?,
        );
        if bytes.len() != 32 {
            return Err(MasterKeyError::Invalid(source.to_string()));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| MasterKeyError::Invalid(source.to_string()))?;
        Ok(Self { cipher })
    }

    /// Generates a random key that lives only in this process, for the demo
    /// and tests.
    pub fn random() -> Self {
        let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
        let cipher =
            Aes256Gcm::new_from_slice(bytes.as_slice()).expect("32 bytes is an AES-256 key");
        Self { cipher }
    }

    /// Reads the key file, or creates it with a new random key and mode
    /// 0600 when it does not exist. Returns the key and whether it was
    /// created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), MasterKeyError> {
        let display = path.display().to_string();
        let io_error = |source| MasterKeyError::Io {
            path: display.clone(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(encoded) => {
                let encoded = Zeroizing::new(encoded);
                return Ok((Self::from_base64(&encoded, &display)?, false));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }

        let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
        let encoded = Zeroizing::new(STANDARD.encode(bytes.as_slice()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error)?;
        file.write_all(encoded.as_bytes()).map_err(io_error)?;
        file.write_all(b"\n").map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok((Self::from_base64(&encoded, &display)?, true))
    }

    /// Encrypts `plaintext`, binding it to `context` (authenticated but not
    /// encrypted), and returns the nonce followed by the ciphertext.
    pub fn encrypt(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce_bytes = rand::random::<[u8; NONCE_LEN]>();
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`MasterKey::encrypt`] returned for the same context.
    pub fn decrypt(
        &self,
        sealed: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MasterKeyError::Decrypt)?;
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        self.cipher
            .decrypt(&Nonce::from(nonce), payload)
            .map(Zeroizing::new)
            .map_err(|_| MasterKeyError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let key = MasterKey::from_base64(&STANDARD.encode([7u8; 32]), "test").expect("valid");
        let sealed = key.encrypt(b"private key bytes", b"key-1");
        assert!(!sealed.windows(7).any(|window| window == b"private"));
        assert_eq!(
            key.decrypt(&sealed, b"key-1").expect("decrypts").as_slice(),
            b"private key bytes"
        );
        assert!(
            key.decrypt(&sealed, b"key-2").is_err(),
            "context is authenticated"
        );
        let other = MasterKey::from_base64(&STANDARD.encode([8u8; 32]), "test").expect("valid");
        assert!(other.decrypt(&sealed, b"key-1").is_err());
    }

    #[test]
    fn rejects_short_keys() {
        assert!(MasterKey::from_base64(&STANDARD.encode([7u8; 16]), "test").is_err());
        assert!(MasterKey::from_base64("not base64", "test").is_err());
    }

    #[test]
    fn creates_file_with_private_mode() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("master.key");
        let (first, created) = MasterKey::load_or_create(&path).expect("created");
        assert!(created);
        let (second, created) = MasterKey::load_or_create(&path).expect("loaded");
        assert!(!created);
        let sealed = first.encrypt(b"x", b"c");
        assert_eq!(
            second.decrypt(&sealed, b"c").expect("same key").as_slice(),
            b"x"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{first:?}").contains('='));
    }
}
