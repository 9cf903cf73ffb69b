//! SIGHUP reloads the files that the server reads at start and that an
//! operator changes while it runs: the caller policy file, the bearer token
//! file, and the file of the registrar's own Okta credential. Each is read
//! again on every signal, so that a caller added to the policy and token
//! files can call at once, and a new Okta API token or key is used without
//! a restart.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::auth::BearerTokens;
use crate::config::CredentialSource;
use crate::okta::OktaClient;
use crate::policy::Policies;

/// The files that SIGHUP reads again, and where their contents go.
#[derive(Debug, Clone)]
pub struct Reloadable {
    /// The caller policy.
    pub policies: Policies,
    /// The callers of the bearer token file, if the server has one.
    pub bearer_tokens: Option<BearerTokens>,
    /// The Okta client and the files of its credential, unless the
    /// credential came from the environment.
    pub okta_credential: Option<(OktaClient, CredentialSource)>,
}

/// Listens for SIGHUP at once, and returns a future that reloads every file
/// of `files` on each SIGHUP until `shutdown` turns true. Listening before
/// the future first runs means that no SIGHUP after this call gets the
/// default action, which ends the process.
///
/// A file that fails its checks is logged as an error, and what was read
/// from it before stays in force. The other files are reloaded all the
/// same.
pub fn reload_on_hangup(
    files: Reloadable,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let hangups = signal(SignalKind::hangup());
    async move {
        let mut hangups = match hangups {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(
                    %error,
                    "cannot listen for SIGHUP; the policy, bearer token and Okta credential files are not reloaded until a restart"
                );
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangups.recv() => if received.is_none() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            // A file on a stalled network mount blocks its read, which
            // must not hold up a runtime thread that serves requests.
            let files = files.clone();
            let reloaded = tokio::task::spawn_blocking(move || reload(&files)).await;
            if let Err(error) = reloaded {
                tracing::error!(%error, "the reload task failed; the previous files stay in force");
            }
        }
    }
}

/// Reloads each file that the server was started with, and logs the
/// outcome.
fn reload(files: &Reloadable) {
    let policies = &files.policies;
    let bearer_tokens = files
        .bearer_tokens
        .as_ref()
        .filter(|tokens| tokens.path().is_some());
    if policies.path().is_none() && bearer_tokens.is_none() && files.okta_credential.is_none() {
        tracing::warn!(
            "SIGHUP received, but there is nothing to reload: the server has no --policy-file, --bearer-tokens-file, --okta-api-token-file or --okta-private-key-file"
        );
        return;
    }
    if let Some((okta, source)) = &files.okta_credential {
        reload_credential(okta, source);
    }
    if policies.path().is_some()
        && let Err(error) = policies.reload()
    {
        tracing::error!(
            error = format!("{error:#}"),
            "policy reload failed; the previous policy stays in force"
        );
    }
    if let Some(tokens) = bearer_tokens
        && let Err(error) = tokens.reload()
    {
        tracing::error!(
            error = format!("{error:#}"),
            "bearer token file reload failed; the previous callers and tokens stay in force"
        );
    }
    // Open streams check their callers again against both files.
    policies.announce_reload();
}

/// Reads the Okta credential's file again and makes the client use it for
/// the calls that start from now on.
fn reload_credential(okta: &OktaClient, source: &CredentialSource) {
    let replaced = source.read().and_then(|credential| {
        okta.replace_credential(credential)
            .map_err(|error| anyhow::anyhow!("{error}"))
    });
    match replaced {
        Ok(()) => tracing::info!(
            path = %source.path().display(),
            "Okta credential reloaded; new calls use it"
        ),
        Err(error) => tracing::error!(
            error = format!("{error:#}"),
            "Okta credential reload failed; the previous credential stays in force"
        ),
    }
}
