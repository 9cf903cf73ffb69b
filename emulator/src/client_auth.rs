//! Client authentication at the token endpoint: `private_key_jwt` client
//! assertions (RFC 7523), verified with the rules and `error_description`
//! texts of Okta's docs and OAuth error catalogue.
//!
//! The checks run in this order: credentials present, assertion type,
//! parsing, `alg`, `iss`, client state, `sub`, key selection by `kid`,
//! signature, `aud`, `exp`, `iat`, `jti`. Okta does not document its order.
//! An assertion that passes every check spends its `jti`, even when the
//! token request then fails on DPoP, grant type or scope.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::errors::OAuthError;
use crate::jws::{Algorithm, CompactJws};
use crate::state::{App, AppKey, AppStatus, KeyStatus, Org};

/// The only `client_assertion_type` Okta accepts.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Maximum assertion lifetime in seconds, because Okta rejects an `exp`
/// more than one hour ahead.
const MAX_LIFETIME_SECONDS: i64 = 3600;

pub(crate) const GENERIC: &str =
    "Client authentication failed. Either the client or the client credentials are invalid.";
const NO_CREDENTIALS: &str = "No client credentials found.";
const UNKNOWN_CLIENT_ID: &str = "Invalid value for 'client_id' parameter.";
const BAD_ISSUER: &str = "The issuer claim for client_assertion is not a valid client_id.";
const BAD_SUBJECT: &str = "The subject claim for client_assertion is not a valid client_id.";
const BAD_AUDIENCE: &str =
    "The audience claim for client_assertion must be the endpoint invoked for the request.";
const NO_EXP: &str = "The client_assertion must contain the 'exp' claim as seconds since epoch.";
const EXPIRED: &str = "The client_assertion token is expired.";
const EXP_TOO_FAR: &str = "The client_assertion token has an expiration too far into the future.";
const IAT_IN_FUTURE: &str = "The client_assertion token must be issued before the current time.";
const REPLAYED: &str = "The client_assertion token has already been used.";
const BAD_SIGNATURE: &str = "The client_assertion signature is invalid.";
const UNPARSABLE: &str = "The parsing of the client_assertion failed.";
const BAD_KID: &str = "The client_assertion JWT kid is invalid.";
const BAD_ALG: &str = "The client_assertion JWT signature algorithm is invalid.";
const NO_JWKS: &str =
    "The client does not have a JWKSet configured, but the client_assertion requires one.";
const NOT_SIGNING_KEY: &str = "The client_assertion JWT needs to be signed using a signing key.";
const JWKS_URI_FAILED: &str = "Error retrieving the client JWKSet from jwks_uri.";
const NEEDS_PRIVATE_KEY_JWT: &str = "Client Credentials requests to the Org Authorization Server must use the private_key_jwt token_endpoint_auth_method.";
const BAD_ASSERTION_TYPE: &str = "The client_assertion_type is invalid.";
const MULTIPLE_CREDENTIALS: &str = "Cannot supply multiple client credentials. Use one of the following: credentials in the Authorization header, credentials in the post body, or a client_assertion in the post body.";

/// The credentials a token request carries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credentials<'a> {
    /// The `client_assertion_type` form field.
    pub(crate) assertion_type: Option<&'a str>,
    /// The `client_assertion` form field.
    pub(crate) assertion: Option<&'a str>,
    /// The `client_id` form field.
    pub(crate) client_id: Option<&'a str>,
    /// The `client_secret` form field.
    pub(crate) client_secret: Option<&'a str>,
    /// The `Authorization` header.
    pub(crate) authorization: Option<&'a str>,
}

/// The times an assertion is checked against, in epoch seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AssertionTimes {
    /// The emulator's current time.
    pub(crate) now: i64,
    /// How far in the future `iat` may be.
    pub(crate) leeway: i64,
}

/// Authenticates the client and returns its id. `token_url` is the URL the
/// assertion's `aud` must equal.
pub(crate) fn authenticate(
    credentials: Credentials<'_>,
    org: &mut Org,
    token_url: &str,
    times: AssertionTimes,
) -> Result<String, OAuthError> {
    let basic = credentials.authorization.and_then(parse_basic);
    let has_secret = basic.is_some() || credentials.client_secret.is_some();
    let has_assertion = credentials.assertion.is_some() || credentials.assertion_type.is_some();

    if has_secret && has_assertion {
        return Err(OAuthError::bad_request(
            "invalid_request",
            MULTIPLE_CREDENTIALS,
        ));
    }
    if has_secret {
        let (client_id, secret) = match basic {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (
                credentials.client_id.map(str::to_owned),
                credentials.client_secret.map(str::to_owned),
            ),
        };
        return Err(reject_secret(org, client_id.as_deref(), secret.as_deref()));
    }
    if credentials
        .assertion_type
        .is_some_and(|kind| kind != JWT_BEARER)
        || (credentials.assertion.is_some() && credentials.assertion_type.is_none())
    {
        return Err(OAuthError::bad_request(
            "invalid_request",
            BAD_ASSERTION_TYPE,
        ));
    }
    let Some(assertion) = credentials.assertion.filter(|value| !value.is_empty()) else {
        return Err(OAuthError::invalid_client(NO_CREDENTIALS));
    };
    verify_assertion(assertion, credentials.client_id, org, token_url, times)
}

/// Splits `Authorization: Basic base64(id:secret)`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Builds the error for a client-secret authentication. The org
/// authorization server accepts only `private_key_jwt` for client
/// credentials, so every outcome is an error. A correct secret gets the
/// text that names `private_key_jwt`.
fn reject_secret(org: &Org, client_id: Option<&str>, secret: Option<&str>) -> OAuthError {
    let Some(app) = client_id.and_then(|id| org.app(id)) else {
        return OAuthError::invalid_client(UNKNOWN_CLIENT_ID);
    };
    let correct = secret.is_some() && app.client.client_secret.as_deref() == secret;
    if correct && app.status == AppStatus::Active {
        OAuthError::invalid_client(NEEDS_PRIVATE_KEY_JWT)
    } else {
        OAuthError::invalid_client(GENERIC)
    }
}

fn verify_assertion(
    assertion: &str,
    form_client_id: Option<&str>,
    org: &mut Org,
    token_url: &str,
    times: AssertionTimes,
) -> Result<String, OAuthError> {
    let fail = OAuthError::invalid_client;
    let jws = CompactJws::parse(assertion).ok_or_else(|| fail(UNPARSABLE))?;
    let alg = jws
        .header_str("alg")
        .and_then(Algorithm::from_name)
        .ok_or_else(|| fail(BAD_ALG))?;
    let client_id = jws
        .claim_str("iss")
        .filter(|iss| org.app(iss).is_some())
        .ok_or_else(|| fail(BAD_ISSUER))?
        .to_owned();
    if let Some(form_id) = form_client_id
        && form_id != client_id
    {
        let text = if org.app(form_id).is_some() {
            GENERIC
        } else {
            UNKNOWN_CLIENT_ID
        };
        return Err(fail(text));
    }
    let app = org.app(&client_id).ok_or_else(|| fail(BAD_ISSUER))?;

    check_client(app)?;
    if jws.claim_str("sub") != Some(client_id.as_str()) {
        return Err(fail(BAD_SUBJECT));
    }
    let key = select_key(app, jws.header_str("kid"))?;
    if key.jwk.key_use.as_deref() == Some("enc") {
        return Err(fail(NOT_SIGNING_KEY));
    }
    let alg_matches_key = key.jwk.alg.as_deref().is_none_or(|name| name == alg.name());
    if !alg.fits(&key.jwk.params) || !alg_matches_key {
        return Err(fail(BAD_ALG));
    }
    if !jws.verify(alg, &key.jwk.params) {
        return Err(fail(BAD_SIGNATURE));
    }

    if !audience_matches(&jws, token_url) {
        return Err(fail(BAD_AUDIENCE));
    }
    let exp = check_times(&jws, times)?;
    match jws.claims.get("jti") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(jti)) => {
            if !org
                .oauth
                .spend_assertion_jti(&client_id, jti, exp, times.now)
            {
                return Err(fail(REPLAYED));
            }
        }
        Some(_) => return Err(fail(UNPARSABLE)),
    }
    Ok(client_id)
}

/// Checks that the client may authenticate with a client assertion.
fn check_client(app: &App) -> Result<(), OAuthError> {
    // NOTE: Okta's docs do not say what an INACTIVE client gets; the
    // emulator returns the generic text.
    if app.status != AppStatus::Active {
        return Err(OAuthError::invalid_client(GENERIC));
    }
    if app.client.token_endpoint_auth_method != "private_key_jwt" {
        return Err(OAuthError::invalid_client(NEEDS_PRIVATE_KEY_JWT));
    }
    // The emulator never fetches a `jwks_uri`, so such clients always fail
    // the way an unreachable JWKS does at Okta.
    if app.client.jwks_uri.is_some() {
        return Err(OAuthError::invalid_client(JWKS_URI_FAILED));
    }
    if app.keys.is_empty() {
        return Err(OAuthError::invalid_client(NO_JWKS));
    }
    Ok(())
}

/// Finds the ACTIVE key the assertion names. Without a `kid`, the app must
/// have exactly one key. An INACTIVE key's `kid` counts as invalid.
fn select_key<'a>(app: &'a App, kid: Option<&str>) -> Result<&'a AppKey, OAuthError> {
    let key = match kid {
        Some(kid) => app
            .keys
            .iter()
            .find(|key| key.jwk.kid.as_deref() == Some(kid)),
        None if app.keys.len() == 1 => app.keys.first(),
        None => None,
    };
    key.filter(|key| key.status == KeyStatus::Active)
        .ok_or_else(|| OAuthError::invalid_client(BAD_KID))
}

/// Compares `aud` with the token URL exactly. RFC 7519 allows an array, in
/// which case one entry must match.
fn audience_matches(jws: &CompactJws, token_url: &str) -> bool {
    match jws.claims.get("aud") {
        Some(serde_json::Value::String(aud)) => aud == token_url,
        Some(serde_json::Value::Array(audiences)) => {
            audiences.iter().any(|aud| aud.as_str() == Some(token_url))
        }
        _ => false,
    }
}

/// Checks `exp` and `iat` and returns `exp`. `exp` gets no leeway: it must
/// be after now and at most one hour ahead.
fn check_times(jws: &CompactJws, times: AssertionTimes) -> Result<i64, OAuthError> {
    let fail = OAuthError::invalid_client;
    let exp = jws.claim_seconds("exp").ok_or_else(|| fail(NO_EXP))?;
    if exp <= times.now {
        return Err(fail(EXPIRED));
    }
    if exp > times.now + MAX_LIFETIME_SECONDS {
        return Err(fail(EXP_TOO_FAR));
    }
    match jws.claims.get("iat") {
        None | Some(serde_json::Value::Null) => {}
        Some(_) => match jws.claim_seconds("iat") {
            Some(iat) if iat <= times.now + times.leeway => {}
            _ => return Err(fail(IAT_IN_FUTURE)),
        },
    }
    Ok(exp)
}
