//! Random identifiers in the shapes Okta uses.
//!
//! Okta object ids are 20 characters: a 3-character type prefix (`0oa` for
//! apps, `oag` for scope grants, `pks` for app keys, `00u` for users)
//! followed by 17 alphanumeric characters. Error ids are `oae` followed by
//! 22 URL-safe characters.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of every Okta object id, prefix included.
const OBJECT_ID_LEN: usize = 20;

/// Characters of the URL-safe base64 alphabet, used where Okta's values
/// contain `-` and `_` as well as letters and digits.
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Generates an app id, which DCR also returns as the `client_id`.
pub(crate) fn app_id() -> String {
    object_id("0oa")
}

/// Generates a scope consent grant id.
pub(crate) fn grant_id() -> String {
    object_id("oag")
}

/// Generates the Okta id of an app key (not its `kid`).
pub(crate) fn key_id() -> String {
    object_id("pks")
}

/// Generates a user id.
pub(crate) fn user_id() -> String {
    object_id("00u")
}

/// Generates the `errorId` of an Okta error body.
pub(crate) fn error_id() -> String {
    format!("oae{}", url_safe(22))
}

/// Generates an `X-Okta-Request-Id` header value.
pub(crate) fn request_id() -> String {
    alphanumeric(27)
}

/// Generates the `kid` of the org's signing key.
pub(crate) fn signing_key_id() -> String {
    url_safe(43)
}

/// Generates the `jti` of an access token: `AT.` followed by 43 URL-safe
/// characters, the shape of the example tokens in Okta's docs.
pub(crate) fn access_token_id() -> String {
    format!("AT.{}", url_safe(43))
}

/// Generates a DPoP nonce, 32 alphanumeric characters like the nonces in
/// recorded Okta responses.
pub(crate) fn dpop_nonce() -> String {
    alphanumeric(32)
}

/// Generates an OAuth client secret.
pub(crate) fn client_secret() -> String {
    url_safe(40)
}

fn object_id(prefix: &str) -> String {
    let mut id = String::with_capacity(OBJECT_ID_LEN);
    id.push_str(prefix);
    id.push_str(&alphanumeric(OBJECT_ID_LEN - prefix.len()));
    id
}

fn alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn url_safe(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(URL_SAFE[rng.random_range(0..URL_SAFE.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_have_prefix_and_length() {
        for (id, prefix) in [
            (app_id(), "0oa"),
            (grant_id(), "oag"),
            (key_id(), "pks"),
            (user_id(), "00u"),
        ] {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.starts_with(prefix), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn error_id_shape() {
        let id = error_id();
        assert_eq!(id.len(), 25);
        assert!(id.starts_with("oae"));
        assert!(
            id.bytes().all(|b| URL_SAFE.contains(&b)),
            "{id} has a character outside the URL-safe alphabet"
        );
    }

    #[test]
    fn ids_differ_between_calls() {
        assert_ne!(app_id(), app_id());
    }
}
