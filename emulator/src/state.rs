//! The emulated org: its apps with their OAuth settings, keys and scope
//! grants, the request log and the rate-limit windows.
//!
//! Every app here is an OIDC app (`name: oidc_client`), whether it was
//! created through Dynamic Client Registration or the Apps API, because
//! those are the only apps the emulated endpoints create.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::errors::OktaError;
use crate::jwk::PublicJwk;
use crate::oauth_state::OAuthState;
use crate::ratelimit::RateLimiter;
use crate::{AppSnapshot, KeyEvent, RecordedRequest, ids};

/// Lifecycle status of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppStatus {
    /// The app can be used and cannot be deleted.
    Active,
    /// The app is deactivated and can be deleted.
    Inactive,
}

impl AppStatus {
    /// Returns the value of the app's `status` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// Status of an app key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStatus {
    /// The key verifies client assertions.
    Active,
    /// The key is kept but does not verify client assertions.
    Inactive,
}

impl KeyStatus {
    /// Returns the value of the key's `status` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// A public key registered for an app.
#[derive(Debug, Clone)]
pub(crate) struct AppKey {
    /// Okta's key id (`pks…`), distinct from the `kid`.
    pub(crate) id: String,
    /// ACTIVE or INACTIVE.
    pub(crate) status: KeyStatus,
    /// When the key was added.
    pub(crate) created: OffsetDateTime,
    /// When the key's status last changed.
    pub(crate) last_updated: OffsetDateTime,
    /// The validated public JWK, including its `kid`.
    pub(crate) jwk: PublicJwk,
}

impl AppKey {
    /// Wraps a validated JWK as a new ACTIVE key.
    pub(crate) fn new_active(jwk: PublicJwk, at: OffsetDateTime) -> Self {
        Self::new(jwk, KeyStatus::Active, at)
    }

    /// Wraps a validated JWK as a new key with the given status.
    pub(crate) fn new(jwk: PublicJwk, status: KeyStatus, at: OffsetDateTime) -> Self {
        Self {
            id: ids::key_id(),
            status,
            created: at,
            last_updated: at,
            jwk,
        }
    }

    /// Returns the `kid`, or Okta's key id for a key without one.
    pub(crate) fn name(&self) -> &str {
        self.jwk.kid.as_deref().unwrap_or(&self.id)
    }

    /// Checks whether the key is ACTIVE.
    pub(crate) fn is_active(&self) -> bool {
        self.status == KeyStatus::Active
    }

    /// Checks whether the key is an encryption key (`use: enc`).
    pub(crate) fn is_encryption_key(&self) -> bool {
        self.jwk.key_use.as_deref() == Some("enc")
    }
}

/// A scope consent grant: permission for the app to request an Okta scope
/// from the org authorization server.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// Grant id (`oag…`).
    pub(crate) id: String,
    /// The granted scope, such as `okta.users.read`.
    pub(crate) scope_id: String,
    /// The issuer the grant was made for: the org URL.
    pub(crate) issuer: String,
    /// When the grant was made.
    pub(crate) created: OffsetDateTime,
    /// Id of the user who made the grant: the owner of the API token.
    pub(crate) created_by: String,
}

/// OAuth client settings of an app. DCR shows them at the top level of the
/// client object, and the Apps API splits them between
/// `settings.oauthClient` and `credentials.oauthClient`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthClient {
    /// `browser`, `native`, `service` or `web`.
    pub(crate) application_type: String,
    /// Allowed grant types.
    pub(crate) grant_types: Vec<String>,
    /// Allowed response types.
    pub(crate) response_types: Vec<String>,
    /// Client authentication method at the token endpoint.
    pub(crate) token_endpoint_auth_method: String,
    /// Redirect URIs, empty for service apps.
    pub(crate) redirect_uris: Vec<String>,
    /// `client_uri`, echoed as sent.
    pub(crate) client_uri: Option<String>,
    /// `logo_uri`, echoed as sent.
    pub(crate) logo_uri: Option<String>,
    /// URL of the client's JWKS, used instead of inline keys.
    pub(crate) jwks_uri: Option<String>,
    /// The client secret, for the secret-based authentication methods.
    pub(crate) client_secret: Option<String>,
    /// `REQUIRED` for DCR clients, `TRUSTED` by default for the Apps API.
    pub(crate) consent_method: String,
    /// Whether access tokens must be DPoP-bound.
    pub(crate) dpop_bound_access_tokens: bool,
    /// Whether Okta rotates the app's own signing key.
    pub(crate) auto_key_rotation: bool,
}

/// An OIDC app.
#[derive(Debug, Clone)]
pub(crate) struct App {
    /// App id (`0oa…`), also the `client_id`.
    pub(crate) id: String,
    /// Position in creation order, which is the listing order.
    sequence: u64,
    /// The display name; DCR's `client_name`.
    pub(crate) label: String,
    /// ACTIVE or INACTIVE.
    pub(crate) status: AppStatus,
    /// Creation time.
    pub(crate) created: OffsetDateTime,
    /// Time of the last change to the app itself.
    pub(crate) last_updated: OffsetDateTime,
    /// The OAuth client settings.
    pub(crate) client: OAuthClient,
    /// Registered public keys, in the order they were added.
    pub(crate) keys: Vec<AppKey>,
    /// ACTIVE scope grants, in the order they were made.
    pub(crate) grants: Vec<Grant>,
}

impl App {
    /// Creates an app that has not been added to an org yet.
    pub(crate) fn new(
        label: String,
        status: AppStatus,
        client: OAuthClient,
        keys: Vec<AppKey>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id: ids::app_id(),
            sequence: 0,
            label,
            status,
            created: at,
            last_updated: at,
            client,
            keys,
            grants: Vec::new(),
        }
    }

    /// Builds the public snapshot of the app.
    pub(crate) fn snapshot(&self) -> AppSnapshot {
        AppSnapshot {
            id: self.id.clone(),
            label: self.label.clone(),
            status: self.status.as_str().to_owned(),
            application_type: self.client.application_type.clone(),
            kids: self
                .keys
                .iter()
                .filter_map(|key| key.jwk.kid.clone())
                .collect(),
            active_kids: self.active_key_names(),
            granted_scopes: self
                .grants
                .iter()
                .map(|grant| grant.scope_id.clone())
                .collect(),
            dpop_bound: self.client.dpop_bound_access_tokens,
        }
    }

    /// Returns the `kid` of every ACTIVE key, or its key id when it has no
    /// `kid`, in the order the keys were added.
    pub(crate) fn active_key_names(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|key| key.is_active())
            .map(|key| key.name().to_owned())
            .collect()
    }
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page<'a> {
    /// The apps on this page.
    pub(crate) apps: Vec<&'a App>,
    /// Whether more matching apps follow the last one on this page.
    pub(crate) has_more: bool,
}

/// All state of the emulated org.
#[derive(Debug)]
pub(crate) struct Org {
    /// The org URL, set when the emulator starts serving.
    pub(crate) org_url: Option<String>,
    /// Id of the user that owns the API token; grants name it in
    /// `createdBy`.
    pub(crate) admin_user_id: String,
    /// Apps in creation order.
    apps: Vec<App>,
    /// Sequence number of every app id ever issued, including deleted apps,
    /// so that a paging cursor stays valid when its app is deleted.
    issued_app_ids: HashMap<String, u64>,
    next_sequence: u64,
    /// Every request received, in the order the responses completed.
    pub(crate) requests: Vec<RecordedRequest>,
    /// Rate-limit windows.
    pub(crate) limiter: RateLimiter,
    /// Issued access tokens, spent `jti` values and DPoP nonces.
    pub(crate) oauth: OAuthState,
    /// Changes made through the app key endpoints, oldest first.
    pub(crate) key_events: Vec<KeyEvent>,
}

impl Org {
    /// Creates an empty org whose rate-limit windows last `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            org_url: None,
            admin_user_id: ids::user_id(),
            apps: Vec::new(),
            issued_app_ids: HashMap::new(),
            next_sequence: 0,
            requests: Vec::new(),
            limiter: RateLimiter::new(window),
            oauth: OAuthState::default(),
            key_events: Vec::new(),
        }
    }

    /// Returns the org URL.
    ///
    /// # Panics
    ///
    /// Panics before `Emulator::serve` has run, which cannot happen inside a
    /// request handler because `serve` sets the URL before it accepts
    /// connections.
    pub(crate) fn org_url(&self) -> &str {
        self.org_url
            .as_deref()
            .expect("serve() sets the org URL before it accepts requests")
    }

    /// Adds an app at the end of the creation order.
    pub(crate) fn add_app(&mut self, mut app: App) -> &App {
        app.sequence = self.next_sequence;
        self.next_sequence += 1;
        self.issued_app_ids.insert(app.id.clone(), app.sequence);
        self.apps.push(app);
        self.apps
            .last()
            .expect("the vector is non-empty right after a push")
    }

    /// Finds an app by id.
    pub(crate) fn app(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|app| app.id == id)
    }

    /// Finds an app by id for changing it.
    pub(crate) fn app_mut(&mut self, id: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|app| app.id == id)
    }

    /// Removes an app, and with it its keys and grants.
    pub(crate) fn remove_app(&mut self, id: &str) -> Option<App> {
        let index = self.apps.iter().position(|app| app.id == id)?;
        Some(self.apps.remove(index))
    }

    /// Returns all apps in creation order.
    pub(crate) fn apps(&self) -> &[App] {
        &self.apps
    }

    /// Returns up to `limit` apps that match `keep`, starting after the app
    /// id `after` in creation order.
    ///
    /// Fails with E0000029 when `after` is not an app id this org issued.
    pub(crate) fn page_apps(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&App) -> bool,
    ) -> Result<Page<'_>, OktaError> {
        let start = match after {
            // An empty cursor starts at the beginning, which the next link
            // of an injected empty first page relies on.
            None | Some("") => 0,
            Some(cursor) => {
                let sequence = self
                    .issued_app_ids
                    .get(cursor)
                    .ok_or_else(OktaError::invalid_cursor)?;
                sequence + 1
            }
        };

        let mut matching = self
            .apps
            .iter()
            .filter(|app| app.sequence >= start)
            .filter(|app| keep(app));
        let apps: Vec<&App> = matching.by_ref().take(limit).collect();
        let has_more = matching.next().is_some();
        Ok(Page { apps, has_more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_client() -> OAuthClient {
        OAuthClient {
            application_type: "service".into(),
            grant_types: vec!["client_credentials".into()],
            response_types: vec!["token".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            redirect_uris: Vec::new(),
            client_uri: None,
            logo_uri: None,
            jwks_uri: None,
            client_secret: None,
            consent_method: "REQUIRED".into(),
            dpop_bound_access_tokens: false,
            auto_key_rotation: true,
        }
    }

    fn org_with_apps(labels: &[&str]) -> (Org, Vec<String>) {
        let mut org = Org::new(Duration::from_secs(60));
        let ids = labels
            .iter()
            .map(|label| {
                let app = App::new(
                    (*label).to_owned(),
                    AppStatus::Active,
                    service_client(),
                    Vec::new(),
                    OffsetDateTime::now_utc(),
                );
                org.add_app(app).id.clone()
            })
            .collect();
        (org, ids)
    }

    #[test]
    fn pages_follow_creation_order() {
        let (org, ids) = org_with_apps(&["a", "b", "c"]);

        let first = org.page_apps(None, 2, |_| true).expect("no cursor");
        let first_ids: Vec<_> = first.apps.iter().map(|app| app.id.clone()).collect();
        assert_eq!(first_ids, ids[..2]);
        assert!(first.has_more);

        let second = org
            .page_apps(Some(&ids[1]), 2, |_| true)
            .expect("known cursor");
        assert_eq!(second.apps.len(), 1);
        assert_eq!(second.apps[0].id, ids[2]);
        assert!(!second.has_more);
    }

    #[test]
    fn cursor_of_deleted_app_stays_valid() {
        let (mut org, ids) = org_with_apps(&["a", "b", "c"]);
        org.remove_app(&ids[1]);

        let page = org
            .page_apps(Some(&ids[1]), 5, |_| true)
            .expect("issued cursor");
        assert_eq!(page.apps.len(), 1);
        assert_eq!(page.apps[0].id, ids[2]);
    }

    #[test]
    fn unknown_cursor_is_e0000029() {
        let (org, _) = org_with_apps(&["a"]);
        let error = org
            .page_apps(Some("0oaNOTISSUED000000000"), 5, |_| true)
            .expect_err("unknown cursor");
        assert_eq!(error.code(), "E0000029");
    }

    #[test]
    fn filter_applies_before_limit() {
        let (org, _) = org_with_apps(&["x1", "y", "x2", "x3"]);
        let page = org
            .page_apps(None, 2, |app| app.label.starts_with('x'))
            .expect("no cursor");
        let labels: Vec<_> = page.apps.iter().map(|app| app.label.as_str()).collect();
        assert_eq!(labels, ["x1", "x2"]);
        assert!(page.has_more);
    }
}
