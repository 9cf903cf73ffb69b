//! The background task that keeps one client's `WatchRotations` stream
//! open and reconnects it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use registrar_api::v1::WatchRotationsRequest;
use tokio::sync::watch;
use tonic::{Code, Status};

use super::WatchHub;

/// The first reconnect delay, before jitter.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// The maximum reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl WatchHub {
    /// Opens one stream for `client_ids` and reads it until it ends or the
    /// list of watched apps changes.
    async fn stream(
        &self,
        client_ids: &[String],
        (list_version, include_private_keys): (u64, bool),
        changed: &mut watch::Receiver<()>,
        backoff: &mut Backoff,
    ) -> StreamEnd {
        let request = WatchRotationsRequest {
            client_ids: client_ids.to_vec(),
            include_private_keys,
        };
        let mut client = self.client.clone();
        let response = tokio::select! {
            response = client.watch_rotations(request) => response,
            () = self.list_changed(list_version, changed) => return StreamEnd::ListChanged,
        };
        let mut stream = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return StreamEnd::Failed(status),
        };
        self.streams_opened.fetch_add(1, Ordering::Relaxed);
        let _open = OpenStream::new(self, client_ids);
        tracing::info!(?client_ids, "rotation watch stream opened");
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(message)) => {
                        backoff.reset();
                        let updated = self.lock().apply(client_ids, &message);
                        if updated {
                            self.notify();
                        }
                    }
                    Ok(None) => return StreamEnd::Closed,
                    Err(status) => return StreamEnd::Failed(status),
                },
                () = self.list_changed(list_version, changed) => return StreamEnd::ListChanged,
            }
        }
    }

    /// Completes once the list of watched apps differs from `list_version`.
    async fn list_changed(&self, list_version: u64, changed: &mut watch::Receiver<()>) {
        loop {
            if self.lock().list_version != list_version {
                return;
            }
            if changed.changed().await.is_err() {
                unreachable!("the watch hub's change sender lives as long as the hub");
            }
        }
    }
}

/// The reason a stream ended.
enum StreamEnd {
    /// Apps were added or released: reconnect at once with the new list.
    ListChanged,
    /// The registrar ended the stream with OK, as it does when it shuts down.
    Closed,
    /// The call or the stream failed with this status.
    Failed(Status),
}

/// Runs the stream for the hub's apps until none is left.
pub(super) async fn run(hub: Arc<WatchHub>) {
    let mut changed = hub.changed.subscribe();
    let mut backoff = Backoff::default();
    loop {
        let (client_ids, list_version, private_keys) = {
            let mut state = hub.lock();
            if state.apps.is_empty() {
                // Cleared under the same lock as the check, so that a
                // registration either finds a running task that serves its
                // app or starts a new one.
                state.running = false;
                drop(state);
                hub.notify();
                tracing::debug!("rotation watch stopped: no app is watched");
                return;
            }
            let client_ids: Vec<String> = state.apps.keys().cloned().collect();
            (client_ids, state.list_version, state.private_keys)
        };
        let delay = match hub
            .stream(
                &client_ids,
                (list_version, private_keys),
                &mut changed,
                &mut backoff,
            )
            .await
        {
            StreamEnd::ListChanged => continue,
            StreamEnd::Closed => {
                let delay = backoff.next_delay();
                tracing::info!(
                    ?client_ids,
                    delay_ms = delay.as_millis(),
                    "rotation watch stream ended by the registrar; reconnecting"
                );
                delay
            }
            StreamEnd::Failed(status) if is_permanent(status.code()) => {
                tracing::error!(
                    ?client_ids,
                    code = ?status.code(),
                    message = status.message(),
                    "rotation watch failed with a status that a retry cannot fix; the watch of these apps has ended"
                );
                hub.fail(&client_ids, &status);
                continue;
            }
            StreamEnd::Failed(status) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    ?client_ids,
                    code = ?status.code(),
                    message = status.message(),
                    attempt = backoff.attempt,
                    delay_ms = delay.as_millis(),
                    "rotation watch failed; reconnecting"
                );
                delay
            }
        };
        // A change of the list, such as the last handle going away, cuts
        // the wait short.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = hub.list_changed(list_version, &mut changed) => {}
        }
    }
}

/// Returns whether a status ends the watch instead of causing a reconnect.
fn is_permanent(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::Unimplemented
    )
}

/// The reconnect delay: exponential, with jitter so that many clients of a
/// restarted registrar do not reconnect in step.
#[derive(Debug)]
struct Backoff {
    /// The upper bound of the next delay.
    ceiling: Duration,
    /// The reconnects since the last received message.
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            ceiling: INITIAL_BACKOFF,
            attempt: 0,
        }
    }
}

impl Backoff {
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Returns a random delay between half the ceiling and the ceiling,
    /// and doubles the ceiling up to [`MAX_BACKOFF`].
    fn next_delay(&mut self) -> Duration {
        let delay = self.ceiling.mul_f64(rand::random_range(0.5..=1.0));
        self.ceiling = (self.ceiling * 2).min(MAX_BACKOFF);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }
}

/// Marks a stream as open in [`WatchStats`] for as long as it lives.
struct OpenStream<'a> {
    hub: &'a WatchHub,
}

impl<'a> OpenStream<'a> {
    fn new(hub: &'a WatchHub, client_ids: &[String]) -> Self {
        hub.lock().open_stream = Some(client_ids.to_vec());
        Self { hub }
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.hub.lock().open_stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_cap_with_jitter() {
        let mut backoff = Backoff::default();
        let mut ceiling = INITIAL_BACKOFF;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay >= ceiling / 2, "{delay:?} below half of {ceiling:?}");
            assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
            ceiling = (ceiling * 2).min(MAX_BACKOFF);
        }
        assert_eq!(backoff.ceiling, MAX_BACKOFF);
        assert_eq!(backoff.attempt, 20);
    }

    #[test]
    fn backoff_reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL_BACKOFF);
        assert_eq!(backoff.attempt, 1);
    }

    #[test]
    fn permanent_and_retried_codes() {
        let permanent = [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::Unimplemented,
        ];
        for code in permanent {
            assert!(is_permanent(code), "{code:?}");
        }
        let retried = [
            Code::Unavailable,
            Code::Unknown,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Cancelled,
        ];
        for code in retried {
            assert!(!is_permanent(code), "{code:?}");
        }
    }
}
