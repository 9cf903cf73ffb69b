//! [`ServiceIdentity`]: a registered service, its tokens and a live view of
//! its app's key state.

use std::sync::Arc;

use registrar_api::v1::{AppKeyState, GetAccessTokenResponse, ScopeResult, ServiceApp};
use tokio::sync::watch;
use tonic::Code;

use crate::local::LocalTokens;
use crate::watch::AppWatch;
use crate::{Client, Error};

/// A registered service: its app, a client that gets its tokens, and a live
/// view of the app's key state.
///
/// Every identity registered through one [`Client`] and its clones shares
/// that client's single `WatchRotations` stream. Cloning an identity adds a
/// handle to the same watch. The stream stops when the last handle of the
/// last watched app is closed with [`ServiceIdentity::close`] or dropped.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub(crate) client: Client,
    pub(crate) app: ServiceApp,
    pub(crate) created: bool,
    pub(crate) grants: Vec<ScopeResult>,
    pub(crate) watch: AppWatch,
    /// Tokens fetched with the delivered key, shared by clones.
    pub(crate) local: Arc<LocalTokens>,
}

impl ServiceIdentity {
    /// Returns the app's client id.
    pub fn client_id(&self) -> &str {
        &self.app.client_id
    }

    /// Returns the app as registration returned it.
    pub fn app(&self) -> &ServiceApp {
        &self.app
    }

    /// Returns whether registration created the app.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Returns the result of each requested scope.
    pub fn grants(&self) -> &[ScopeResult] {
        &self.grants
    }

    /// Returns an access token with these scopes, from the registrar's cache
    /// when it holds a fresh one.
    ///
    /// With key delivery on (see [`Client::with_key_delivery`]), an
    /// unreachable registrar (UNAVAILABLE or DEADLINE_EXCEEDED) is no longer
    /// fatal. The SDK then signs a client assertion with the delivered key
    /// and requests a token from Okta's token endpoint itself. It caches
    /// that token in this identity until three quarters of its lifetime
    /// have passed. DPoP-bound apps are not covered, because the registrar
    /// signs their proofs.
    pub async fn access_token(&self, scopes: &[&str]) -> Result<GetAccessTokenResponse, Error> {
        self.token(scopes, false).await
    }

    async fn token(&self, scopes: &[&str], refresh: bool) -> Result<GetAccessTokenResponse, Error> {
        let mut client = self.client.clone();
        let result = if refresh {
            client
                .refresh_access_token(&self.app.client_id, scopes)
                .await
        } else {
            client.access_token(&self.app.client_id, scopes).await
        };
        match result {
            Err(Error::Status(status)) if self.can_work_alone(&status) => {
                tracing::warn!(
                    client_id = %self.app.client_id,
                    code = ?status.code(),
                    message = status.message(),
                    "the registrar is unreachable; requesting a token from Okta with the delivered key"
                );
                self.local
                    .access_token(&self.key_state(), scopes, refresh)
                    .await
            }
            other => other,
        }
    }

    /// Returns a client assertion (RFC 7523) for the app, signed in this
    /// process with the delivered private key: `iss` and `sub` the client
    /// id, `aud` the token endpoint, a five-minute lifetime and a fresh
    /// `jti`. Send it to the token endpoint within that time.
    ///
    /// It fails with [`Error::NoDeliveredKey`] unless key delivery is on
    /// (see [`Client::with_key_delivery`]).
    pub fn client_assertion(&self) -> Result<String, Error> {
        crate::local::client_assertion(&self.key_state())
    }

    /// Returns whether a failed call may fall back to the delivered key:
    /// the registrar is unreachable and a key was delivered.
    fn can_work_alone(&self, status: &tonic::Status) -> bool {
        matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
            && self.watch.has_signing_key()
    }

    /// Returns a new access token, for use after a resource server answered
    /// 401 to the cached one. With key delivery on, it falls back to the
    /// delivered key like [`ServiceIdentity::access_token`].
    pub async fn refresh_access_token(
        &self,
        scopes: &[&str],
    ) -> Result<GetAccessTokenResponse, Error> {
        self.token(scopes, true).await
    }

    /// Returns the app's last good key state from the rotation watch.
    ///
    /// It is never older than the state at the end of registration. A
    /// message that the SDK rejects (the app missing from it, or a revision
    /// lower than the last one) leaves it unchanged, and so does a failed
    /// watch (see [`ServiceIdentity::watch_error`]).
    pub fn key_state(&self) -> AppKeyState {
        self.watch.key_state()
    }

    /// Returns a receiver of the app's key state, which is notified of each
    /// new revision.
    ///
    /// A slow reader sees only the newest state. `changed()` returns an
    /// error once the watch has failed for good; [`ServiceIdentity::watch_error`]
    /// then returns the status. While the registrar is unreachable, the
    /// receiver keeps the last state and the SDK reconnects in the
    /// background.
    ///
    /// ```no_run
    /// # async fn example(identity: registrar_sdk::ServiceIdentity) {
    /// let mut changes = identity.changes();
    /// while changes.changed().await.is_ok() {
    ///     let state = changes.borrow_and_update().clone();
    ///     println!("revision {}: signing with {}", state.revision, state.signing_kid);
    /// }
    /// if let Some(status) = identity.watch_error() {
    ///     eprintln!("the key state watch failed: {status}");
    /// }
    /// # }
    /// ```
    pub fn changes(&self) -> watch::Receiver<AppKeyState> {
        self.watch.changes()
    }

    /// Returns the status that ended the app's key state watch, or `None`
    /// while the watch runs.
    ///
    /// Only statuses that a retry cannot fix end the watch:
    /// INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED,
    /// FAILED_PRECONDITION and UNIMPLEMENTED. Because one stream covers every
    /// app of the client, such a status ends the watch of each app on that
    /// stream. Other statuses and a clean end of the stream make the SDK
    /// reconnect.
    pub fn watch_error(&self) -> Option<tonic::Status> {
        self.watch.error()
    }

    /// Closes this handle of the key state watch. When it was the last
    /// handle of the last app its client watches, it waits until the
    /// `WatchRotations` stream has stopped, so no reconnect follows.
    ///
    /// Dropping the identity releases the handle as well, without waiting.
    pub async fn close(self) {
        self.watch.close().await;
    }
}
