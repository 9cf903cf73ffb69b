//! Okta's JSON shapes, as far as the registrar reads them. Every struct
//! ignores unknown fields and defaults missing ones, so that additions to
//! Okta's API do not break decoding.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of a dynamic client registration (`POST /oauth2/v1/clients`).
#[derive(Debug, Clone, Serialize)]
pub struct NewClient {
    /// The app's name.
    pub client_name: String,
    /// Always `service`.
    pub application_type: &'static str,
    /// Always `["client_credentials"]`.
    pub grant_types: Vec<&'static str>,
    /// Always `["token"]`.
    pub response_types: Vec<&'static str>,
    /// Always `private_key_jwt`.
    pub token_endpoint_auth_method: &'static str,
    /// The app's public keys.
    pub jwks: JwkSet,
}

impl NewClient {
    /// Builds the registration body of a service app that authenticates with
    /// `private_key_jwt`, as Okta's service-app guide describes it.
    pub fn service_app(client_name: String, keys: Vec<Value>) -> Self {
        Self {
            client_name,
            application_type: "service",
            grant_types: vec!["client_credentials"],
            response_types: vec!["token"],
            token_endpoint_auth_method: "private_key_jwt",
            jwks: JwkSet { keys },
        }
    }
}

/// A JSON Web Key Set with keys kept as raw JSON, so that one key in an
/// unexpected shape does not fail the whole object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<Value>,
}

/// The registered client that `POST /oauth2/v1/clients` returns.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisteredClient {
    /// The client id, equal to the Okta app id.
    pub client_id: String,
    /// The app's name.
    #[serde(default)]
    pub client_name: String,
    /// When Okta issued the client id, in seconds since the Unix epoch.
    #[serde(default)]
    pub client_id_issued_at: Option<i64>,
    /// The registered public keys.
    #[serde(default)]
    pub jwks: Option<JwkSet>,
}

/// An Okta app (`/api/v1/apps/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    /// The app id, which is also the OAuth client id.
    pub id: String,
    /// The app's template name, `oidc_client` for OAuth apps.
    #[serde(default)]
    pub name: String,
    /// The app's display name: `client_name` for apps made by dynamic client
    /// registration.
    #[serde(default)]
    pub label: String,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default)]
    pub status: String,
    /// When the app was created, as ISO 8601.
    #[serde(default)]
    pub created: Option<String>,
    /// The app's settings.
    #[serde(default)]
    pub settings: AppSettings,
}

impl App {
    /// Returns whether the app is an OAuth 2.0 service app.
    pub fn is_service_app(&self) -> bool {
        self.name == "oidc_client"
            && self
                .settings
                .oauth_client
                .as_ref()
                .and_then(|client| client.application_type.as_deref())
                == Some("service")
    }

    /// Returns the app's inline public keys.
    pub fn keys(&self) -> &[Value] {
        self.settings
            .oauth_client
            .as_ref()
            .and_then(|client| client.jwks.as_ref())
            .map(|jwks| jwks.keys.as_slice())
            .unwrap_or_default()
    }
}

/// The `settings` object of an app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppSettings {
    /// The OAuth client settings of OIDC apps.
    #[serde(rename = "oauthClient", default)]
    pub oauth_client: Option<OAuthClientSettings>,
}

/// `settings.oauthClient` of an OIDC app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OAuthClientSettings {
    /// `service`, `web`, `native` or `browser`.
    #[serde(default)]
    pub application_type: Option<String>,
    /// Inline public keys, each with Okta's `id` and `status`.
    #[serde(default)]
    pub jwks: Option<JwkSet>,
}

/// A scope consent grant (`/api/v1/apps/{id}/grants`).
#[derive(Debug, Clone, Deserialize)]
pub struct ScopeGrant {
    /// The grant id (`oag…`).
    pub id: String,
    /// The granted scope.
    #[serde(rename = "scopeId")]
    pub scope_id: String,
    /// The authorization server issuer the grant applies to.
    #[serde(default)]
    pub issuer: String,
    /// `ACTIVE` or `REVOKED`.
    #[serde(default)]
    pub status: String,
    /// When the grant was created, as ISO 8601.
    #[serde(default)]
    pub created: Option<String>,
}

/// The body of a scope grant request.
#[derive(Debug, Clone, Serialize)]
pub struct NewGrant<'a> {
    /// The scope to grant.
    #[serde(rename = "scopeId")]
    pub scope_id: &'a str,
    /// The org authorization server's issuer: the org URL.
    pub issuer: &'a str,
}

/// A successful token endpoint response (RFC 6749 section 5.1). Its
/// `Debug` output leaves out the token.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a DPoP-bound token.
    #[serde(default)]
    pub token_type: String,
    /// The lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The granted scopes, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}
