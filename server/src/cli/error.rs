//! Errors of the operator subcommands, their exit codes, and the one map
//! from gRPC status codes to messages that name the fix.

use std::process::ExitCode;
use std::time::Duration;

use tonic::{Code, Status};

/// The exit code of a local failure, such as a file that cannot be written.
pub const EXIT_FAILURE: u8 = 1;
/// The exit code of invalid options or input files, which clap also uses.
pub const EXIT_USAGE: u8 = 2;
/// The exit code when the registrar cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// The exit code when the registrar rejected the request.
pub const EXIT_REJECTED: u8 = 4;
/// The exit code of a failure that a later retry may fix: a timeout, the
/// registrar or Okta unavailable, or a rate limit.
pub const EXIT_RETRY: u8 = 5;
/// The exit code when some scopes of `grant` or `revoke` failed and the
/// others succeeded.
pub const EXIT_PARTIAL: u8 = 6;
/// The exit code when Ctrl-C interrupted `rotate` before the rotation
/// finished, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failed operator command. The message is one line for standard error
/// and never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An option or input file is invalid.
    #[error("{0}")]
    Usage(String),
    /// A local operation failed.
    #[error("{0}")]
    Local(String),
    /// The registrar cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The registrar rejected the request.
    #[error("{0}")]
    Rejected(String),
    /// A retry later may succeed.
    #[error("{0}")]
    Retry(String),
    /// Some scopes failed and the others succeeded.
    #[error("{0}")]
    Partial(String),
    /// Ctrl-C stopped the command before it finished.
    #[error("{0}")]
    Interrupted(String),
    /// Standard output was closed by its reader, as `head` does. The
    /// command stops quietly and exits 0.
    #[error("standard output is closed")]
    OutputClosed,
}

impl CliError {
    /// Returns the process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Local(_) => EXIT_FAILURE,
            Self::Unreachable(_) => EXIT_UNREACHABLE,
            Self::Rejected(_) => EXIT_REJECTED,
            Self::Retry(_) => EXIT_RETRY,
            Self::Partial(_) => EXIT_PARTIAL,
            Self::Interrupted(_) => EXIT_INTERRUPTED,
            Self::OutputClosed => 0,
        })
    }
}

/// The registrar a command talks to, for messages.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `--server` URL.
    pub server: String,
    /// The `--timeout-secs` limit.
    pub timeout: Duration,
}

impl Target {
    /// Maps an error status of a call to a sentence with the fix.
    pub fn status_error(&self, status: &Status) -> CliError {
        let message = status.message();
        let server = &self.server;
        match status.code() {
            Code::Unauthenticated => CliError::Rejected(format!(
                "the registrar at {server} requires authentication ({message}); pass --token-file with a bearer token, or --cert-file and --key-file with a client certificate"
            )),
            Code::PermissionDenied => {
                CliError::Rejected(format!("permission denied by the registrar: {message}"))
            }
            Code::NotFound => CliError::Rejected(format!("not found: {message}")),
            Code::InvalidArgument => CliError::Rejected(format!("invalid request: {message}")),
            Code::AlreadyExists => CliError::Rejected(format!("already exists: {message}")),
            Code::FailedPrecondition => {
                CliError::Rejected(format!("the registrar rejected the request: {message}"))
            }
            // A status that tonic creates on this side has no metadata, but
            // one that the registrar sent has its response headers.
            Code::Unavailable if status.metadata().is_empty() => CliError::Unreachable(format!(
                "cannot reach the registrar at {server} ({message}); is it running? check --server"
            )),
            // The registrar's own message may already state when to retry.
            Code::Unavailable if message.contains("retry") => CliError::Retry(format!(
                "the registrar could not complete the call: {message}"
            )),
            Code::Unavailable => CliError::Retry(format!(
                "the registrar could not complete the call: {message}; retry later"
            )),
            Code::ResourceExhausted => {
                CliError::Retry(format!("rate limit reached: {message}; retry later"))
            }
            Code::Cancelled | Code::DeadlineExceeded => CliError::Retry(format!(
                "the call to the registrar at {server} timed out after {} s; retry, or raise --timeout-secs",
                self.timeout.as_secs()
            )),
            Code::Unimplemented => CliError::Local(format!(
                "the registrar at {server} does not implement this call ({message}); it may run an older version"
            )),
            code => CliError::Local(format!("the registrar failed: {code:?}: {message}")),
        }
    }

    /// Maps an SDK error to a sentence with the fix.
    pub fn sdk_error(&self, error: registrar_sdk::Error) -> CliError {
        match error {
            registrar_sdk::Error::Status(status) => self.status_error(&status),
            other => CliError::Local(other.to_string()),
        }
    }

    /// Maps a failure to connect to a sentence with the fix.
    pub fn connect_error(&self, error: &tonic::transport::Error) -> CliError {
        let cause = root_cause(error);
        let hint = if self.server.starts_with("https://") {
            "check --server and --ca-file"
        } else {
            "check --server"
        };
        CliError::Unreachable(format!(
            "cannot reach the registrar at {} ({cause}); is it running? {hint}",
            self.server
        ))
    }
}

/// Returns the innermost error of a chain, which names the actual cause
/// (such as "Connection refused") where the outer ones only read
/// "transport error".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            server: "http://127.0.0.1:1".into(),
            timeout: Duration::from_secs(7),
        }
    }

    #[test]
    fn local_unavailable_is_unreachable() {
        let error = target().status_error(&Status::unavailable("tcp connect error"));
        assert!(matches!(error, CliError::Unreachable(_)), "{error:?}");
        assert!(error.to_string().contains("check --server"), "{error}");
    }

    #[test]
    fn server_unavailable_is_retry() {
        let mut status = Status::unavailable("Okta could not be reached");
        status
            .metadata_mut()
            .insert("content-type", "application/grpc".parse().expect("ASCII"));
        let error = target().status_error(&status);
        assert!(matches!(error, CliError::Retry(_)), "{error:?}");
    }

    #[test]
    fn unauthenticated_names_the_options() {
        let error = target().status_error(&Status::unauthenticated("no credentials"));
        let message = error.to_string();
        assert!(message.contains("--token-file"), "{message}");
        assert!(message.contains("--cert-file"), "{message}");
        assert_eq!(error.exit_code(), ExitCode::from(EXIT_REJECTED));
    }

    #[test]
    fn timeout_names_the_limit() {
        let error = target().status_error(&Status::cancelled("Timeout expired"));
        assert!(error.to_string().contains("7 s"), "{error}");
        assert_eq!(error.exit_code(), ExitCode::from(EXIT_RETRY));
    }
}
