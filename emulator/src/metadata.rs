//! Validation of OAuth client settings, shared by Dynamic Client
//! Registration and the Apps API.
//!
//! Okta's rules per `application_type`, from the description of
//! `createClient` in Okta's OAuth OpenAPI spec:
//!
//! | type | allowed grant types | must include |
//! |---|---|---|
//! | `browser` | `authorization_code`, `implicit`, SAML 2.0 bearer | |
//! | `native` | `authorization_code`, `implicit`, `password`, `refresh_token`, SAML 2.0 bearer | `authorization_code` |
//! | `service` | `client_credentials` | `client_credentials` |
//! | `web` | `authorization_code`, `implicit`, `refresh_token`, `client_credentials`, SAML 2.0 bearer | `authorization_code` |
//!
//! Every type except `service` may also use the Identity Engine grants
//! (`otp`, `oob`, `mfa-otp`, `mfa-oob`). Okta's spec also lists SAML 2.0
//! bearer and the Identity Engine grants for `service`. The emulator
//! rejects them there, so a service app uses client credentials only.

use serde_json::Value;

use crate::ids;
use crate::jwk::{self, JwkError, PublicJwk};
use crate::state::OAuthClient;

const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "client_credentials",
    "implicit",
    "interaction_code",
    "password",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:saml2-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:openid:params:grant-type:ciba",
    "urn:okta:params:oauth:grant-type:otp",
    "urn:okta:params:oauth:grant-type:oob",
    "http://auth0.com/oauth/grant-type/mfa-otp",
    "http://auth0.com/oauth/grant-type/mfa-oob",
];

const RESPONSE_TYPES: &[&str] = &["code", "id_token", "token", "none"];

const APPLICATION_TYPES: &[&str] = &["browser", "native", "service", "web"];

const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_jwt",
    "client_secret_post",
    "none",
    "private_key_jwt",
];

/// Authentication methods for which Okta generates a client secret.
const SECRET_AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_jwt",
    "client_secret_post",
];

const SAML2_BEARER: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

const IDENTITY_ENGINE_GRANTS: &[&str] = &[
    "urn:okta:params:oauth:grant-type:otp",
    "urn:okta:params:oauth:grant-type:oob",
    "http://auth0.com/oauth/grant-type/mfa-otp",
    "http://auth0.com/oauth/grant-type/mfa-oob",
];

/// Checks whether a grant type is one Okta defines, whether or not an app
/// may use it.
pub(crate) fn is_known_grant_type(grant_type: &str) -> bool {
    GRANT_TYPES.contains(&grant_type)
}

/// OAuth settings as a request sent them, before defaults apply.
#[derive(Debug, Clone, Default)]
pub(crate) struct OAuthSettings {
    pub(crate) application_type: Option<String>,
    pub(crate) grant_types: Option<Vec<String>>,
    pub(crate) response_types: Option<Vec<String>>,
    pub(crate) token_endpoint_auth_method: Option<String>,
    pub(crate) redirect_uris: Option<Vec<String>>,
    pub(crate) client_uri: Option<String>,
    pub(crate) logo_uri: Option<String>,
    /// The entries of `jwks.keys`, unvalidated.
    pub(crate) jwks_keys: Option<Vec<Value>>,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) consent_method: Option<String>,
    pub(crate) dpop_bound_access_tokens: Option<bool>,
}

/// A reason client settings are rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// A problem with the client metadata itself.
    #[error("{0}")]
    Metadata(String),
    /// A problem with a key in `jwks`.
    #[error(transparent)]
    Jwk(#[from] JwkError),
}

/// Validates client settings and applies Okta's defaults. Returns the
/// client and its keys, or every violation found, in the order Okta
/// reports them: type values, response and grant agreement, grant types
/// for the application type, then key settings.
pub(crate) fn validate(
    settings: OAuthSettings,
    default_consent_method: &str,
) -> Result<(OAuthClient, Vec<PublicJwk>), Vec<Violation>> {
    let mut violations = Vec::new();
    let application_type = settings.application_type.unwrap_or_else(|| "web".into());
    let is_service = application_type == "service";
    let grant_types = settings.grant_types.unwrap_or_else(|| {
        let default = if is_service {
            "client_credentials"
        } else {
            "authorization_code"
        };
        vec![default.into()]
    });
    let response_types = settings.response_types.unwrap_or_else(|| {
        let default = if is_service { "token" } else { "code" };
        vec![default.into()]
    });
    let auth_method = settings
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".into());

    check_known_values(
        &application_type,
        &grant_types,
        &response_types,
        &auth_method,
        &mut violations,
    );
    if APPLICATION_TYPES.contains(&application_type.as_str()) {
        check_response_types(
            &application_type,
            &grant_types,
            &response_types,
            &mut violations,
        );
        check_grant_types(&application_type, &grant_types, &mut violations);
    }
    let keys = check_key_settings(
        &auth_method,
        settings.jwks_keys.as_deref(),
        settings.jwks_uri.as_deref(),
        &mut violations,
    );
    if !violations.is_empty() {
        return Err(violations);
    }

    let client_secret = SECRET_AUTH_METHODS
        .contains(&auth_method.as_str())
        .then(ids::client_secret);
    let client = OAuthClient {
        application_type,
        grant_types,
        response_types,
        token_endpoint_auth_method: auth_method,
        redirect_uris: settings.redirect_uris.unwrap_or_default(),
        client_uri: settings.client_uri,
        logo_uri: settings.logo_uri,
        jwks_uri: settings.jwks_uri,
        client_secret,
        consent_method: settings
            .consent_method
            .unwrap_or_else(|| default_consent_method.into()),
        dpop_bound_access_tokens: settings.dpop_bound_access_tokens.unwrap_or(false),
        auto_key_rotation: true,
    };
    Ok((client, keys))
}

fn quoted_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| format!("'{value}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

fn check_known_values(
    application_type: &str,
    grant_types: &[String],
    response_types: &[String],
    auth_method: &str,
    violations: &mut Vec<Violation>,
) {
    if !APPLICATION_TYPES.contains(&application_type) {
        violations.push(Violation::Metadata(format!(
            "'application_type' must be {}, not '{application_type}'.",
            quoted_list(APPLICATION_TYPES)
        )));
    }
    for grant in grant_types
        .iter()
        .filter(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        violations.push(Violation::Metadata(format!(
            "'grant_types' contains the unknown grant type '{grant}'."
        )));
    }
    for response in response_types
        .iter()
        .filter(|r| !RESPONSE_TYPES.contains(&r.as_str()))
    {
        violations.push(Violation::Metadata(format!(
            "'response_types' contains the unknown response type '{response}'."
        )));
    }
    if !AUTH_METHODS.contains(&auth_method) {
        violations.push(Violation::Metadata(format!(
            "'token_endpoint_auth_method' must be {}, not '{auth_method}'.",
            quoted_list(AUTH_METHODS)
        )));
    }
}

fn check_response_types(
    application_type: &str,
    grant_types: &[String],
    response_types: &[String],
    violations: &mut Vec<Violation>,
) {
    let has_grant = |grant: &str| grant_types.iter().any(|g| g == grant);
    let has_response = |response: &str| response_types.iter().any(|r| r == response);

    if application_type == "service" {
        // Okta's own service example sends `response_types: ["token"]`
        // without the implicit grant, so the web rules do not apply.
        if response_types.iter().any(|r| r != "token") {
            violations.push(Violation::Metadata(
                "'response_types' may only contain 'token' when 'application_type' is 'service'."
                    .into(),
            ));
        }
        return;
    }

    if has_response("code") && !has_grant("authorization_code") {
        violations.push(Violation::Metadata(
            "'grant_types' must contain 'authorization_code' when 'response_types' contains 'code'."
                .into(),
        ));
    }
    for response in ["token", "id_token"] {
        if has_response(response) && !has_grant("implicit") {
            violations.push(Violation::Metadata(format!(
                "'grant_types' must contain 'implicit' when 'response_types' contains '{response}'."
            )));
        }
    }
    if has_grant("authorization_code") && !has_response("code") {
        violations.push(Violation::Metadata(
            "'response_types' must contain 'code' when 'grant_types' contains 'authorization_code'."
                .into(),
        ));
    }
    if has_grant("implicit") && !has_response("token") && !has_response("id_token") {
        violations.push(Violation::Metadata(
            "'response_types' must contain 'token' or 'id_token' when 'grant_types' contains 'implicit'."
                .into(),
        ));
    }
}

fn allowed_grants(application_type: &str) -> &'static [&'static str] {
    match application_type {
        "browser" => &["authorization_code", "implicit", SAML2_BEARER],
        "native" => &[
            "authorization_code",
            "implicit",
            "password",
            "refresh_token",
            SAML2_BEARER,
        ],
        "web" => &[
            "authorization_code",
            "implicit",
            "refresh_token",
            "client_credentials",
            SAML2_BEARER,
        ],
        _ => &["client_credentials"],
    }
}

fn check_grant_types(
    application_type: &str,
    grant_types: &[String],
    violations: &mut Vec<Violation>,
) {
    let required = match application_type {
        "service" => Some("client_credentials"),
        "web" | "native" => Some("authorization_code"),
        _ => None,
    };
    if let Some(required) = required
        && !grant_types.iter().any(|g| g == required)
    {
        violations.push(Violation::Metadata(format!(
            "'grant_types' must contain '{required}' when 'application_type' is '{application_type}'."
        )));
    }

    let allowed = allowed_grants(application_type);
    let mut disallowed = grant_types.iter().filter(|grant| {
        let grant = grant.as_str();
        let identity_engine_ok =
            application_type != "service" && IDENTITY_ENGINE_GRANTS.contains(&grant);
        // Unknown grant types were reported already.
        GRANT_TYPES.contains(&grant) && !allowed.contains(&grant) && !identity_engine_ok
    });

    if application_type == "service" {
        if disallowed.next().is_some() {
            violations.push(Violation::Metadata(
                "'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'."
                    .into(),
            ));
        }
        return;
    }
    for grant in disallowed {
        violations.push(Violation::Metadata(format!(
            "'grant_types' can't contain '{grant}' when 'application_type' is '{application_type}'."
        )));
    }
}

/// Checks `jwks` and `jwks_uri` against the authentication method and
/// returns the validated keys, which are empty when a violation was found.
fn check_key_settings(
    auth_method: &str,
    jwks_keys: Option<&[Value]>,
    jwks_uri: Option<&str>,
    violations: &mut Vec<Violation>,
) -> Vec<PublicJwk> {
    let has_keys = jwks_keys.is_some_and(|keys| !keys.is_empty());
    if jwks_keys.is_some() && jwks_uri.is_some() {
        violations.push(Violation::Metadata(
            "'jwks' and 'jwks_uri' can't both be set. Send only one of them.".into(),
        ));
    }
    if auth_method == "private_key_jwt" && !has_keys && jwks_uri.is_none() {
        violations.push(Violation::Metadata(
            "'jwks' or 'jwks_uri' is required when 'token_endpoint_auth_method' is 'private_key_jwt'."
                .into(),
        ));
    }
    if let Some(uri) = jwks_uri {
        let is_http_url = url::Url::parse(uri)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
        if !is_http_url {
            violations.push(Violation::Metadata(format!(
                "'jwks_uri' must be an absolute http or https URL, not '{uri}'."
            )));
        }
    }

    match jwk::validate_jwks(jwks_keys.unwrap_or_default()) {
        Ok(keys) => keys,
        Err(error) => {
            violations.push(error.into());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
