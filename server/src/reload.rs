//! SIGHUP reloads the files that the server reads at start and that an
//! operator changes while it runs: the caller policy file, the bearer token
//! file, and the file of the registrar's own Okta credential. Each is read
//! again on every signal, so that a caller added to the policy and token
//! files can call at once, and a new Okta API token or key is used without
//! a restart.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::auth::BearerTokens;
use crate::config::CredentialSource;
use crate::okta::{OktaClient, OktaCredential};
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
            reload_all(&files).await;
        }
    }
}

/// The maximum wait for the files of one reload. A file on a stalled
/// network mount can block its read for much longer.
const FILE_READ_LIMIT: Duration = Duration::from_secs(10);

/// Reloads every file, then tries a changed Okta credential against Okta,
/// and at last wakes the open streams to check their callers again.
async fn reload_all(files: &Reloadable) {
    // The reads run on a blocking thread, so that a stalled read holds up
    // no runtime thread that serves requests. The time limit keeps it from
    // holding up later reloads.
    let reading = files.clone();
    let read = tokio::time::timeout(
        FILE_READ_LIMIT,
        tokio::task::spawn_blocking(move || reload_files(&reading)),
    )
    .await;
    let credential = match read {
        Ok(Ok(credential)) => credential,
        Ok(Err(error)) => {
            tracing::error!(%error, "the reload task failed; the previous files stay in force");
            None
        }
        Err(_) => {
            tracing::error!(
                limit_secs = FILE_READ_LIMIT.as_secs(),
                "reading the reloaded files took too long; files not read yet keep their previous contents"
            );
            None
        }
    };
    if let (Some((okta, source)), Some(credential)) = (&files.okta_credential, credential) {
        replace_credential(okta, source, credential).await;
    }
    // Open streams check their callers again against the policy and the
    // bearer token file.
    files.policies.announce_reload();
}

/// Reloads the policy and bearer token files, and reads the Okta
/// credential's file, which [`replace_credential`] puts in force once Okta
/// accepts it. Logs each outcome.
fn reload_files(files: &Reloadable) -> Option<OktaCredential> {
    let policies = &files.policies;
    let bearer_tokens = files
        .bearer_tokens
        .as_ref()
        .filter(|tokens| tokens.path().is_some());
    if policies.path().is_none() && bearer_tokens.is_none() && files.okta_credential.is_none() {
        tracing::warn!(
            "SIGHUP received, but there is nothing to reload: the server has no --policy-file, --bearer-tokens-file, --okta-api-token-file or --okta-private-key-file"
        );
        return None;
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
    let (_, source) = files.okta_credential.as_ref()?;
    match source.read() {
        Ok(credential) => Some(credential),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "Okta credential reload failed; the previous credential stays in force"
            );
            None
        }
    }
}

/// Puts a reloaded Okta credential in force once a trial call with it
/// succeeds, and logs the outcome. The secret is never logged.
async fn replace_credential(
    okta: &OktaClient,
    source: &CredentialSource,
    credential: OktaCredential,
) {
    match okta.replace_credential(credential).await {
        Ok(true) => tracing::info!(
            path = %source.path().display(),
            "Okta credential reloaded; new calls use it"
        ),
        Ok(false) => tracing::debug!(
            path = %source.path().display(),
            "Okta credential file unchanged"
        ),
        Err(error) => tracing::error!(
            path = %source.path().display(),
            %error,
            hint = source.hint(),
            "Okta credential reload failed; the previous credential stays in force"
        ),
    }
}
