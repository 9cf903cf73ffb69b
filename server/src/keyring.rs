//! The registrar's private keys: generated here, stored encrypted under the
//! master key, and cached in memory after their first decryption.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use registrar_api::v1::{Jwk, KeyAlgorithm};

use crate::jwk;
use crate::keys::master::{MasterKey, MasterKeyError};
use crate::keys::{KeyError, KeyPair, SigningAlgorithm};
use crate::store::{KeyPurpose, SealedKey, Store, StoreError};

/// A failure of the keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Generating or parsing a key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The master key could not decrypt a stored key.
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Generates, stores and loads private keys.
#[derive(Clone)]
pub struct Keyring {
    master: MasterKey,
    store: Store,
    cache: Arc<Mutex<KeyCache>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

/// [`KeyPurpose`] as a hash map key.
type KeyPurposeKey = &'static str;

/// Decrypted keys by client id and purpose.
type KeyCache = HashMap<(String, KeyPurposeKey), Arc<KeyPair>>;

fn purpose_key(purpose: KeyPurpose) -> KeyPurposeKey {
    match purpose {
        KeyPurpose::Assertion => "assertion",
        KeyPurpose::Dpop => "dpop",
    }
}

/// A key generated and stored, but not yet attached to an app.
#[derive(Debug, Clone)]
pub struct PendingKey {
    /// The registrar's id of the key.
    pub key_id: String,
    /// The key pair.
    pub key: Arc<KeyPair>,
}

impl Keyring {
    /// Builds a keyring over the store.
    pub fn new(master: MasterKey, store: Store) -> Self {
        Self {
            master,
            store,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Generates a key pair on a blocking thread and stores it encrypted,
    /// as pending, before its public half is sent anywhere.
    pub async fn generate_pending(
        &self,
        algorithm: KeyAlgorithm,
        purpose: KeyPurpose,
    ) -> Result<PendingKey, KeyringError> {
        let key = tokio::task::spawn_blocking(move || KeyPair::generate(algorithm))
            .await
            .map_err(|err| {
                KeyError::Generate(format!("the key generation task failed: {err}"))
            })??;
        let key_id = uuid::Uuid::new_v4().to_string();
        let sealed = SealedKey {
            key_id: key_id.clone(),
            purpose,
            kid: key.kid().to_string(),
            algorithm: key.algorithm().as_str().to_string(),
            public_jwk: jwk::to_okta_json(key.public_jwk()).to_string(),
            sealed: self.master.encrypt(key.private_der(), key_id.as_bytes()),
        };
        self.store.insert_pending_key(&sealed).await?;
        Ok(PendingKey {
            key_id,
            key: Arc::new(key),
        })
    }

    /// Attaches a pending key to an app as its active key for `purpose`.
    pub async fn activate(
        &self,
        pending: &PendingKey,
        client_id: &str,
        purpose: KeyPurpose,
    ) -> Result<(), KeyringError> {
        self.store.activate_key(&pending.key_id, client_id).await?;
        self.cache
            .lock()
            .expect("the key cache lock is never poisoned")
            .insert(
                (client_id.to_string(), purpose_key(purpose)),
                pending.key.clone(),
            );
        Ok(())
    }

    /// Returns the app's active key for `purpose`, or `None` when the
    /// registrar holds none (the caller supplied the app's keys).
    pub async fn active(
        &self,
        client_id: &str,
        purpose: KeyPurpose,
    ) -> Result<Option<Arc<KeyPair>>, KeyringError> {
        let cache_key = (client_id.to_string(), purpose_key(purpose));
        if let Some(key) = self
            .cache
            .lock()
            .expect("the key cache lock is never poisoned")
            .get(&cache_key)
        {
            return Ok(Some(key.clone()));
        }
        let Some(sealed) = self.store.active_key(client_id, purpose).await? else {
            return Ok(None);
        };
        let der = self
            .master
            .decrypt(&sealed.sealed, sealed.key_id.as_bytes())?;
        let algorithm = SigningAlgorithm::parse(&sealed.algorithm).ok_or_else(|| {
            KeyError::Malformed(format!("unknown algorithm {:?}", sealed.algorithm))
        })?;
        let public = public_jwk_from_json(&sealed.public_jwk)?;
        let key = Arc::new(KeyPair::from_parts(algorithm, der, public)?);
        self.cache
            .lock()
            .expect("the key cache lock is never poisoned")
            .insert(cache_key, key.clone());
        Ok(Some(key))
    }

    /// Drops cached keys of an app, for example after it was deleted.
    pub fn forget(&self, client_id: &str) {
        self.cache
            .lock()
            .expect("the key cache lock is never poisoned")
            .retain(|(cached_client, _), _| cached_client != client_id);
    }

    /// Drops every cached key, so that each is read from the store again.
    pub fn forget_all(&self) {
        self.cache
            .lock()
            .expect("the key cache lock is never poisoned")
            .clear();
    }
}

fn public_jwk_from_json(json: &str) -> Result<Jwk, KeyError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|err| KeyError::Malformed(err.to_string()))?;
    let public = jwk::from_okta_json(&value);
    public
        .jwk
        .ok_or_else(|| KeyError::Malformed("the stored public JWK is empty".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[tokio::test]
    async fn keys_survive_a_restart_encrypted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/keys.db", dir.path().display());
        let master = MasterKey::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([3u8; 32]),
            "test",
        )
        .expect("master key");

        let store = Store::open(&url).await.expect("store");
        let keyring = Keyring::new(master.clone(), store.clone());
        let pending = keyring
            .generate_pending(KeyAlgorithm::Es256, KeyPurpose::Assertion)
            .await
            .expect("generated");
        assert!(
            keyring
                .active("0oa1", KeyPurpose::Assertion)
                .await
                .expect("read")
                .is_none()
        );
        keyring
            .activate(&pending, "0oa1", KeyPurpose::Assertion)
            .await
            .expect("activate");

        // A new keyring (a restarted process) decrypts the stored key.
        let restarted = Keyring::new(master, Store::open(&url).await.expect("store"));
        let loaded = restarted
            .active("0oa1", KeyPurpose::Assertion)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(loaded.kid(), pending.key.kid());
        assert_eq!(loaded.private_der(), pending.key.private_der());

        // The database files never contain the private key in plain text.
        drop(restarted);
        drop(keyring);
        let der = pending.key.private_der();
        for entry in std::fs::read_dir(dir.path()).expect("list directory") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("database file");
            assert!(
                !bytes
                    .windows(32)
                    .any(|window| window == &der[der.len() - 32..])
            );
        }

        // Another master key cannot read it.
        let wrong = MasterKey::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([4u8; 32]),
            "test",
        )
        .expect("master key");
        let other = Keyring::new(wrong, Store::open(&url).await.expect("store"));
        assert!(matches!(
            other.active("0oa1", KeyPurpose::Assertion).await,
            Err(KeyringError::MasterKey(MasterKeyError::Decrypt))
        ));
    }
}
