//! The contents of an access token of the org authorization server: the
//! scopes a client-credentials request gets, and the signed JWT.
//!
//! The JWT has the claims of the example in Okta's service-app guide:
//! `ver`, `jti` (`AT.…`), `iss` and `aud` (both the org URL), `sub` and
//! `cid` (the client id), `iat`, `exp` and `scp`, plus `cnf.jkt` for DPoP
//! tokens. Okta's docs direct clients to treat these tokens as opaque, and
//! the emulator accepts only tokens it stored when issuing them.

use serde_json::{Value, json};

use crate::errors::OAuthError;
use crate::ids;
use crate::oauth_state::IssuedToken;
use crate::org_key::{KeyError, OrgKey};

const NO_SCOPES: &str = "No scopes were requested.";
const OPENID: &str = "Cannot request 'openid' scopes using client credentials.";
const SELF_SCOPES: &str = "The 'client_credentials' grant type may not request .self scopes.";
const NONE_GRANTED: &str = "You are not allowed any of the requested scopes.";

/// Picks the scopes of a client-credentials token: the requested scopes
/// the app has grants for, in the order requested, without duplicates.
///
/// Okta's docs and a reported exchange show that ungranted scopes are
/// dropped when at least one requested scope is granted.
pub(crate) fn granted_scopes(
    requested: Option<&str>,
    grants: &[String],
) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in requested.unwrap_or_default().split_whitespace() {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::bad_request("invalid_scope", NO_SCOPES));
    }
    if scopes.contains(&"openid") {
        return Err(OAuthError::bad_request("invalid_scope", OPENID));
    }
    if scopes.iter().any(|scope| scope.ends_with(".self")) {
        return Err(OAuthError::bad_request(
            "client_credentials_self_scope_requested",
            SELF_SCOPES,
        ));
    }

    let granted: Vec<String> = scopes
        .into_iter()
        .filter(|scope| grants.iter().any(|grant| grant == scope))
        .map(str::to_owned)
        .collect();
    if granted.is_empty() {
        return Err(OAuthError::bad_request("consent_required", NONE_GRANTED));
    }
    Ok(granted)
}

/// The facts an access token states.
#[derive(Debug, Clone)]
pub(crate) struct TokenClaims<'a> {
    /// The org URL, used as `iss` and `aud`.
    pub(crate) org_url: &'a str,
    /// The client the token is for.
    pub(crate) client_id: &'a str,
    /// The granted scopes.
    pub(crate) scopes: Vec<String>,
    /// The DPoP key thumbprint for a DPoP-bound token.
    pub(crate) jkt: Option<String>,
    /// `iat`, in epoch seconds.
    pub(crate) issued_at: i64,
    /// Lifetime in seconds; `exp` is `iat` plus this.
    pub(crate) lifetime: i64,
}

/// Signs an access token and returns it with the record to store.
pub(crate) fn mint(
    key: &OrgKey,
    claims: TokenClaims<'_>,
) -> Result<(String, IssuedToken), KeyError> {
    let expires_at = claims.issued_at + claims.lifetime;
    let mut body = json!({
        "ver": 1,
        "jti": ids::access_token_id(),
        "iss": claims.org_url,
        "aud": claims.org_url,
        "sub": claims.client_id,
        "iat": claims.issued_at,
        "exp": expires_at,
        "cid": claims.client_id,
        "scp": claims.scopes,
    });
    if let Some(jkt) = &claims.jkt {
        body["cnf"] = json!({ "jkt": jkt });
    }
    let token = key.sign_jwt(&body)?;
    let issued = IssuedToken {
        client_id: claims.client_id.to_owned(),
        scopes: claims.scopes,
        expires_at,
        jkt: claims.jkt,
    };
    Ok((token, issued))
}

/// Builds the 200 body of the token endpoint.
pub(crate) fn response_body(token: &str, issued: &IssuedToken, lifetime: i64) -> Value {
    let token_type = if issued.jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    json!({
        "token_type": token_type,
        "expires_in": lifetime,
        "access_token": token,
        "scope": issued.scopes.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::CompactJws;

    fn grants() -> Vec<String> {
        vec!["okta.users.read".into(), "okta.apps.read".into()]
    }

    fn rejection(requested: Option<&str>) -> (String, String) {
        let error = granted_scopes(requested, &grants()).expect_err("rejected");
        (error.error().to_owned(), error.description().to_owned())
    }

    #[test]
    fn scopes_are_intersected_in_request_order() {
        let scopes = granted_scopes(
            Some("okta.apps.read  okta.groups.read okta.users.read okta.apps.read"),
            &grants(),
        )
        .expect("two scopes are granted");
        assert_eq!(scopes, ["okta.apps.read", "okta.users.read"]);
    }

    #[test]
    fn scope_errors() {
        assert_eq!(rejection(None), ("invalid_scope".into(), NO_SCOPES.into()));
        assert_eq!(
            rejection(Some("  ")),
            ("invalid_scope".into(), NO_SCOPES.into())
        );
        assert_eq!(
            rejection(Some("openid okta.users.read")),
            ("invalid_scope".into(), OPENID.into())
        );
        assert_eq!(
            rejection(Some("okta.users.read.self")),
            (
                "client_credentials_self_scope_requested".into(),
                SELF_SCOPES.into()
            )
        );
        assert_eq!(
            rejection(Some("okta.groups.read")),
            ("consent_required".into(), NONE_GRANTED.into())
        );
    }

    #[test]
    fn minted_token_has_okta_claims() {
        let key = OrgKey::generate().expect("key generation succeeds");
        let (token, issued) = mint(
            &key,
            TokenClaims {
                org_url: "http://127.0.0.1:1",
                client_id: "0oa1",
                scopes: vec!["okta.users.read".into()],
                jkt: Some("thumb".into()),
                issued_at: 1_000,
                lifetime: 3_600,
            },
        )
        .expect("signing succeeds");

        let jws = CompactJws::parse(&token).expect("a JWT");
        assert_eq!(jws.claims["ver"], 1);
        assert!(
            jws.claim_str("jti")
                .is_some_and(|jti| jti.starts_with("AT."))
        );
        assert_eq!(jws.claim_str("iss"), Some("http://127.0.0.1:1"));
        assert_eq!(jws.claim_str("aud"), Some("http://127.0.0.1:1"));
        assert_eq!(jws.claim_str("sub"), Some("0oa1"));
        assert_eq!(jws.claim_str("cid"), Some("0oa1"));
        assert_eq!(jws.claim_seconds("iat"), Some(1_000));
        assert_eq!(jws.claim_seconds("exp"), Some(4_600));
        assert_eq!(jws.claims["scp"], json!(["okta.users.read"]));
        assert_eq!(jws.claims["cnf"], json!({ "jkt": "thumb" }));
        assert_eq!(issued.expires_at, 4_600);

        let body = response_body(&token, &issued, 3_600);
        assert_eq!(body["token_type"], "DPoP");
        assert_eq!(body["scope"], "okta.users.read");
    }
}
