//! SIGHUP reloads the files that decide which callers the registrar
//! accepts: the caller policy file and the bearer token file. Both are read
//! again on every signal, so that a caller added to both files can call at
//! once.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::auth::BearerTokens;
use crate::policy::Policies;

/// Listens for SIGHUP at once, and returns a future that reloads the policy
/// file and the bearer token file on every SIGHUP until `shutdown` turns
/// true. Listening before the future first runs means that no SIGHUP after
/// this call gets the default action, which ends the process.
///
/// A file that fails its checks is logged as an error, and what was read
/// from it before stays in force. The other file is reloaded all the same.
pub fn reload_on_hangup(
    policies: Policies,
    bearer_tokens: Option<BearerTokens>,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let hangups = signal(SignalKind::hangup());
    async move {
        let mut hangups = match hangups {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(
                    %error,
                    "cannot listen for SIGHUP; the policy and bearer token files are not reloaded until a restart"
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
            let (policies, bearer_tokens) = (policies.clone(), bearer_tokens.clone());
            let reloaded =
                tokio::task::spawn_blocking(move || reload(&policies, bearer_tokens.as_ref()))
                    .await;
            if let Err(error) = reloaded {
                tracing::error!(%error, "the reload task failed; the previous files stay in force");
            }
        }
    }
}

/// Reloads each file that the server was started with, and logs the
/// outcome.
fn reload(policies: &Policies, bearer_tokens: Option<&BearerTokens>) {
    let bearer_tokens = bearer_tokens.filter(|tokens| tokens.path().is_some());
    if policies.path().is_none() && bearer_tokens.is_none() {
        tracing::warn!(
            "SIGHUP received, but there is nothing to reload: the server has no --policy-file or --bearer-tokens-file"
        );
        return;
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
