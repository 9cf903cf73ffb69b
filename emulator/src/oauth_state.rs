//! The state the org authorization server keeps between requests: issued
//! access tokens, spent `jti` values of client assertions and DPoP proofs,
//! and DPoP nonces.
//!
//! All times are UTC epoch seconds of the emulator's clock. Entries are
//! dropped once they expire, checked whenever a new one is stored.

use std::collections::HashMap;

use crate::ids;

/// Seconds one DPoP nonce stays the current one. Okta's DPoP guide states
/// that nonces rotate every 24 hours.
const NONCE_ROTATION_SECONDS: i64 = 24 * 3600;

/// Seconds a nonce is accepted after it was issued. Okta's DPoP guide
/// states that an old nonce keeps working for 3 days.
const NONCE_LIFETIME_SECONDS: i64 = 3 * 24 * 3600;

/// An access token the emulator issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedToken {
    /// The client the token was issued to.
    pub(crate) client_id: String,
    /// The granted scopes, in the order requested.
    pub(crate) scopes: Vec<String>,
    /// The `exp` claim.
    pub(crate) expires_at: i64,
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to, for
    /// DPoP tokens.
    pub(crate) jkt: Option<String>,
}

#[derive(Debug, Clone)]
struct Nonce {
    value: String,
    issued_at: i64,
}

/// The state of the org authorization server.
#[derive(Debug, Default)]
pub(crate) struct OAuthState {
    /// Spent client-assertion `jti` values per client, with the assertion's
    /// `exp`.
    assertion_jtis: HashMap<(String, String), i64>,
    /// Spent DPoP-proof `jti` values, with the time after which the proof
    /// would be rejected as too old anyway.
    proof_jtis: HashMap<String, i64>,
    /// DPoP nonces, oldest first.
    nonces: Vec<Nonce>,
    /// Issued access tokens by their compact serialization.
    tokens: HashMap<String, IssuedToken>,
    /// Number of successful token responses.
    issued_count: usize,
}

impl OAuthState {
    /// Marks a client assertion's `jti` as spent until `exp`. Returns false
    /// when the client already used it and it has not expired.
    pub(crate) fn spend_assertion_jti(
        &mut self,
        client_id: &str,
        jti: &str,
        exp: i64,
        now: i64,
    ) -> bool {
        self.assertion_jtis.retain(|_, until| *until >= now);
        let key = (client_id.to_owned(), jti.to_owned());
        if self.assertion_jtis.contains_key(&key) {
            return false;
        }
        self.assertion_jtis.insert(key, exp);
        true
    }

    /// Marks a DPoP proof's `jti` as spent until `until`. Returns false when
    /// it was spent before and has not expired.
    pub(crate) fn spend_proof_jti(&mut self, jti: &str, until: i64, now: i64) -> bool {
        self.proof_jtis.retain(|_, expiry| *expiry >= now);
        if self.proof_jtis.contains_key(jti) {
            return false;
        }
        self.proof_jtis.insert(jti.to_owned(), until);
        true
    }

    /// Returns the current DPoP nonce, issuing a new one when there is none
    /// or the current one is 24 hours old.
    pub(crate) fn current_nonce(&mut self, now: i64) -> String {
        self.nonces
            .retain(|nonce| now - nonce.issued_at < NONCE_LIFETIME_SECONDS);
        match self.nonces.last() {
            Some(nonce) if now - nonce.issued_at < NONCE_ROTATION_SECONDS => nonce.value.clone(),
            _ => {
                let value = ids::dpop_nonce();
                self.nonces.push(Nonce {
                    value: value.clone(),
                    issued_at: now,
                });
                value
            }
        }
    }

    /// Checks whether a nonce was issued less than 3 days ago.
    pub(crate) fn accepts_nonce(&self, value: &str, now: i64) -> bool {
        self.nonces
            .iter()
            .any(|nonce| nonce.value == value && now - nonce.issued_at < NONCE_LIFETIME_SECONDS)
    }

    /// Stores an issued access token and counts the token response.
    pub(crate) fn store_token(&mut self, token: String, issued: IssuedToken, now: i64) {
        self.tokens.retain(|_, stored| stored.expires_at > now);
        self.tokens.insert(token, issued);
        self.issued_count += 1;
    }

    /// Finds an access token that has not expired.
    pub(crate) fn valid_token(&self, token: &str, now: i64) -> Option<&IssuedToken> {
        self.tokens
            .get(token)
            .filter(|issued| issued.expires_at > now)
    }

    /// Returns the unexpired access tokens.
    pub(crate) fn unexpired_tokens(&self, now: i64) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|(_, issued)| issued.expires_at > now)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Returns the number of successful token responses.
    pub(crate) fn issued_count(&self) -> usize {
        self.issued_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_jti_is_single_use_until_exp() {
        let mut state = OAuthState::default();
        assert!(state.spend_assertion_jti("0oa1", "j1", 200, 100));
        assert!(!state.spend_assertion_jti("0oa1", "j1", 200, 150));
        assert!(
            state.spend_assertion_jti("0oa2", "j1", 200, 150),
            "jti values are per client"
        );
        assert!(
            state.spend_assertion_jti("0oa1", "j1", 400, 201),
            "an expired entry is forgotten"
        );
    }

    #[test]
    fn proof_jti_is_single_use() {
        let mut state = OAuthState::default();
        assert!(state.spend_proof_jti("p1", 400, 100));
        assert!(!state.spend_proof_jti("p1", 400, 100));
        assert!(state.spend_proof_jti("p2", 400, 100));
    }

    #[test]
    fn nonce_rotates_daily_and_lives_three_days() {
        let mut state = OAuthState::default();
        let day = 24 * 3600;
        let first = state.current_nonce(0);
        assert_eq!(state.current_nonce(day - 1), first);
        assert!(state.accepts_nonce(&first, day - 1));

        let second = state.current_nonce(day);
        assert_ne!(second, first);
        assert!(state.accepts_nonce(&first, day));
        assert!(state.accepts_nonce(&first, 3 * day - 1));
        assert!(!state.accepts_nonce(&first, 3 * day));
        assert!(!state.accepts_nonce("unknown", 0));
    }

    #[test]
    fn tokens_expire() {
        let mut state = OAuthState::default();
        let issued = IssuedToken {
            client_id: "0oa1".into(),
            scopes: vec!["okta.users.read".into()],
            expires_at: 100,
            jkt: None,
        };
        state.store_token("t".into(), issued.clone(), 0);
        assert_eq!(state.valid_token("t", 99), Some(&issued));
        assert_eq!(state.valid_token("t", 100), None);
        assert_eq!(state.issued_count(), 1);
    }
}
