//! `registrar rotate` and `registrar watch`: start a key rotation and
//! follow key state over the `WatchRotations` stream.

use std::ops::ControlFlow;
use std::time::Duration;

use clap::Args;
use registrar_api::v1::{
    AppKeyState, RotateKeyRequest, RotationPhase, WatchRotationsRequest, WatchRotationsResponse,
};
use registrar_sdk::Client;
use serde_json::json;
use tonic::Code;

use super::connect::CommonArgs;
use super::error::{CliError, Target};
use super::output;

/// The first wait before reopening a broken watch stream.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The maximum wait before reopening a broken watch stream.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Options of `registrar rotate`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar rotate 0oa1b2c3d4e5f6g7h8i9
  registrar rotate 0oa1b2c3d4e5f6g7h8i9 --no-wait --json

Only apps whose key the registrar holds (created with --generate-key or by
RegisterService) can be rotated. The new key is registered beside the old
one; signing switches after the server's propagation delay, and the old key
is removed after its grace period, which takes minutes with the server's
defaults. Ctrl-C stops waiting (exit code 130) but not the rotation.",
    "\n\n",
    exit_codes_help!()
))]
pub struct RotateArgs {
    /// The app's client id.
    pub client_id: String,
    /// Return once the new key is registered in Okta instead of following
    /// the rotation until the old key is removed.
    #[arg(long)]
    pub no_wait: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `registrar watch`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar watch 0oa1b2c3d4e5f6g7h8i9
  registrar watch 0oa1b2c3d4e5f6g7h8i9 0oa9h8g7f6e5d4c3b2a1 --json | jq .

Prints the current key state at once and then every change, until Ctrl-C.
With --json every change is one JSON object per line. A broken stream is
reopened with backoff; errors that a retry cannot fix, such as NOT_FOUND,
end the command.",
    "\n\n",
    exit_codes_help!()
))]
pub struct WatchArgs {
    /// The client ids of apps that the registrar manages (1 to 100).
    #[arg(required = true, value_name = "CLIENT_ID")]
    pub client_ids: Vec<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The end of following a stream.
enum Ending {
    /// The handler saw what it waited for.
    Done,
    /// Ctrl-C was pressed.
    Interrupted,
}

/// Starts a rotation and, unless `--no-wait`, follows it until the old
/// key is gone.
pub async fn rotate(args: RotateArgs) -> Result<(), CliError> {
    let (mut client, target) = args.common.connect().await?;
    let request = RotateKeyRequest {
        client_id: args.client_id.clone(),
    };
    let state = client
        .raw()
        .rotate_key(request)
        .await
        .map_err(|status| target.status_error(&status))?
        .into_inner()
        .state
        .unwrap_or_default();
    let old_kid = state.signing_kid.clone();

    if args.no_wait {
        if args.common.json {
            return output::print_json(&output::key_state_json(&state));
        }
        outln!("rotation started: {}", output::key_state_line(&state))?;
        return outln!("follow it with: registrar watch {}", args.client_id);
    }
    if !args.common.json {
        outln!(
            "rotation started for {}; Ctrl-C stops waiting but not the rotation",
            args.client_id
        )?;
    }
    print_state(&state, args.common.json)?;

    let mut last_revision = state.revision;
    let json = args.common.json;
    let ids = [args.client_id.clone()];
    let ending = follow(&mut client, &target, &ids, |message| {
        let Some(state) = message.apps.first() else {
            return Ok(ControlFlow::Continue(()));
        };
        if state.revision > last_revision {
            last_revision = state.revision;
            print_state(state, json)?;
        }
        if rotation_finished(state, &old_kid) {
            Ok(ControlFlow::Break(()))
        } else {
            Ok(ControlFlow::Continue(()))
        }
    })
    .await?;
    match ending {
        Ending::Done => {
            if !json {
                outln!("rotation finished: the old key {old_kid} is removed")?;
            }
            Ok(())
        }
        Ending::Interrupted => Err(CliError::Interrupted(format!(
            "stopped waiting; the rotation goes on in the registrar; follow it with `registrar watch {}`",
            args.client_id
        ))),
    }
}

/// Prints the key state of the apps and every change until Ctrl-C.
pub async fn watch(args: WatchArgs) -> Result<(), CliError> {
    let (mut client, target) = args.common.connect().await?;
    let json = args.common.json;
    let ending = follow(&mut client, &target, &args.client_ids, |message| {
        if json {
            let apps: Vec<_> = message.apps.iter().map(output::key_state_json).collect();
            output::print_json_line(&json!({ "revision": message.revision, "apps": apps }))?;
        } else {
            for state in &message.apps {
                print_state(state, false)?;
            }
        }
        Ok(ControlFlow::Continue(()))
    })
    .await?;
    match ending {
        Ending::Done | Ending::Interrupted => Ok(()),
    }
}

/// Returns whether a rotation away from `old_kid` is complete: signing uses another
/// key, no phase is running, and the old key is gone from Okta.
fn rotation_finished(state: &AppKeyState, old_kid: &str) -> bool {
    state.phase == RotationPhase::Unspecified as i32
        && state.signing_kid != old_kid
        && state.keys.iter().all(|key| key.kid != old_kid)
}

fn print_state(state: &AppKeyState, json: bool) -> Result<(), CliError> {
    if json {
        output::print_json_line(&output::key_state_json(state))
    } else {
        outln!(
            "{}  {}",
            output::timestamp(Some(&now())),
            output::key_state_line(state)
        )
    }
}

fn now() -> registrar_api::prost_types::Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    registrar_api::prost_types::Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Streams the key state of `client_ids` and passes every message with a
/// new revision to `handle` until it breaks, fails, or Ctrl-C is pressed. A stream
/// that ends or fails with a code that a retry may fix is reopened with
/// jittered backoff, which every message resets.
async fn follow(
    client: &mut Client,
    target: &Target,
    client_ids: &[String],
    mut handle: impl FnMut(&WatchRotationsResponse) -> Result<ControlFlow<()>, CliError>,
) -> Result<Ending, CliError> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // A reader that goes away between changes, as `head` does, ends the
    // command now rather than at the next change, which may be days away.
    let closed = output_closed();
    tokio::pin!(closed);
    let mut last_revision = 0;
    let mut backoff = FIRST_BACKOFF;
    let mut opened_once = false;
    loop {
        let request = WatchRotationsRequest {
            client_ids: client_ids.to_vec(),
            include_private_keys: false,
        };
        let opened = tokio::select! {
            opened = client.raw().watch_rotations(request) => opened,
            _ = &mut interrupted => return Ok(Ending::Interrupted),
            () = &mut closed => return Err(CliError::OutputClosed),
        };
        let broken = match opened {
            Ok(response) => {
                opened_once = true;
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        _ = &mut interrupted => return Ok(Ending::Interrupted),
                        () = &mut closed => return Err(CliError::OutputClosed),
                    };
                    match message {
                        Ok(Some(message)) => {
                            backoff = FIRST_BACKOFF;
                            // Revisions increase across reconnects, so a
                            // reopened stream's repeat of the state is skipped.
                            if message.revision <= last_revision {
                                continue;
                            }
                            last_revision = message.revision;
                            if handle(&message)?.is_break() {
                                return Ok(Ending::Done);
                            }
                        }
                        Ok(None) => break "the registrar ended the stream".to_string(),
                        Err(status) if retry_may_help(&status) => {
                            break format!("the stream failed ({})", status.message());
                        }
                        Err(status) => return Err(target.status_error(&status)),
                    }
                }
            }
            // The first failure to open is reported at once, so that a
            // wrong --server fails fast.
            Err(status) if opened_once && retry_may_help(&status) => {
                format!("cannot reopen the stream ({})", status.message())
            }
            Err(status) => return Err(target.status_error(&status)),
        };

        let delay = jittered(backoff);
        errln!("{broken}; reconnecting in {:.1} s", delay.as_secs_f64());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut interrupted => return Ok(Ending::Interrupted),
            () = &mut closed => return Err(CliError::OutputClosed),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How often `watch` checks whether the reader of its output has gone.
const OUTPUT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Resolves when standard output is a pipe or socket whose reader has gone
/// away. Never resolves for a terminal or a regular file, whose reader
/// cannot go away.
async fn output_closed() {
    loop {
        tokio::time::sleep(OUTPUT_CHECK_INTERVAL).await;
        if reader_gone() {
            return;
        }
    }
}

/// Returns whether poll(2) reports an error or hang-up on standard output,
/// which is how the kernel signals that a pipe's or socket's reader closed
/// it. Both flags are reported without being asked for.
#[cfg(unix)]
fn reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};

    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(ready) if ready > 0)
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

#[cfg(not(unix))]
fn reader_gone() -> bool {
    false
}

/// Returns whether reopening the stream may help after this status.
fn retry_may_help(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::AlreadyExists
            | Code::OutOfRange
    )
}

/// Returns a delay between half of `backoff` and all of it.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use registrar_api::v1::PublicKey;

    fn state(phase: RotationPhase, signing: &str, kids: &[&str]) -> AppKeyState {
        AppKeyState {
            phase: phase as i32,
            signing_kid: signing.into(),
            keys: kids
                .iter()
                .map(|kid| PublicKey {
                    kid: (*kid).into(),
                    ..PublicKey::default()
                })
                .collect(),
            ..AppKeyState::default()
        }
    }

    #[test]
    fn rotation_finishes_when_old_key_is_gone() {
        let cases = [
            (
                state(RotationPhase::NewKeyAdded, "old", &["old", "new"]),
                false,
            ),
            (
                state(RotationPhase::SigningSwitched, "new", &["old", "new"]),
                false,
            ),
            (
                state(RotationPhase::Unspecified, "new", &["old", "new"]),
                false,
            ),
            (state(RotationPhase::Unspecified, "new", &["new"]), true),
        ];
        for (state, finished) in cases {
            assert_eq!(rotation_finished(&state, "old"), finished, "{state:?}");
        }
    }

    #[test]
    fn jitter_stays_within_backoff() {
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(2));
            assert!(delay >= Duration::from_secs(1), "{delay:?}");
            assert!(delay <= Duration::from_secs(2), "{delay:?}");
        }
    }
}
