//! The registrar's own OAuth service app in the test emulator: registered
//! through DCR with the API token, granted scopes, given an admin role, and
//! turned into the registrar's credential.

use std::sync::Arc;
use std::time::Duration;

use okta_emulator::Emulator;
use registrar_api::v1::KeyAlgorithm;
use registrar_server::keys::KeyPair;
use registrar_server::okta::credential::DEFAULT_SCOPES;
use registrar_server::okta::model::NewClient;
use registrar_server::okta::{OAuthCredential, OktaClient, OktaCredential};
use registrar_server::org::OrgUrl;
use registrar_server::secret::Secret;

use crate::API_TOKEN;

/// How the registrar's own service app is set up.
#[derive(Debug, Clone)]
pub struct RegistrarApp {
    /// The scopes granted to the app in the emulator.
    pub granted_scopes: Vec<String>,
    /// The scopes the registrar requests (`--okta-scopes`).
    pub requested_scopes: Vec<String>,
    /// The admin role assigned to the app, if any.
    pub role: Option<String>,
    /// Whether the app requires DPoP-bound tokens.
    pub dpop_bound: bool,
}

impl Default for RegistrarApp {
    /// Returns the app an operator should set up: the default scopes, granted
    /// and requested, and the Super Admin role, without DPoP.
    fn default() -> Self {
        let scopes: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        Self {
            granted_scopes: scopes.clone(),
            requested_scopes: scopes,
            role: Some("SUPER_ADMIN".into()),
            dpop_bound: false,
        }
    }
}

/// Registers the registrar's service app in the emulator at `org_url` and
/// returns the credential that the registrar uses for it.
pub async fn register_registrar_app(
    emulator: &Emulator,
    org_url: &str,
    app: &RegistrarApp,
) -> OktaCredential {
    let org = OrgUrl::parse(org_url).expect("valid org URL");
    let okta = OktaClient::new(org, Secret::new(API_TOKEN), Duration::from_secs(10))
        .expect("client builds");
    let key = KeyPair::generate(KeyAlgorithm::Es256).expect("key generated");
    let jwk = registrar_server::jwk::to_okta_json(key.public_jwk());
    let client = okta
        .create_client(&NewClient::service_app("registrar".into(), vec![jwk]))
        .await
        .expect("the registrar's app is registered");
    for scope in &app.granted_scopes {
        okta.create_grant(&client.client_id, scope)
            .await
            .expect("scope granted to the registrar's app");
    }
    if let Some(role) = &app.role {
        emulator
            .assign_admin_role(&client.client_id, role)
            .expect("role assigned");
    }
    if app.dpop_bound {
        assert!(emulator.set_dpop_bound(&client.client_id, true));
    }
    OktaCredential::OAuth(OAuthCredential {
        client_id: client.client_id,
        key: Arc::new(key),
        scopes: app.requested_scopes.clone(),
    })
}

impl crate::TestEnv {
    /// Returns the client id of the registrar's own service app, when the
    /// registrar authenticates with OAuth.
    pub fn registrar_client_id(&self) -> Option<&str> {
        match &self.config.okta_credential {
            OktaCredential::OAuth(credential) => Some(&credential.client_id),
            OktaCredential::ApiToken(_) => None,
        }
    }
}
