//! The operator subcommands of the `registrar` binary: `keygen` works
//! locally, and the others call a running registrar through the SDK.
//!
//! Exit codes, which the README lists too:
//!
//! - 0: success, or standard output closed by its reader.
//! - 1: a local failure, or an internal error of the registrar.
//! - 2: invalid options or input files.
//! - 3: the registrar cannot be reached.
//! - 4: the registrar rejected the request.
//! - 5: a failure that a retry may fix: a timeout, UNAVAILABLE or
//!   RESOURCE_EXHAUSTED.
//! - 6: some scopes of `grant` or `revoke` failed.
//! - 130: Ctrl-C stopped `rotate` before the rotation finished.

/// Expands to the exit code summary that every subcommand's long help ends
/// with.
macro_rules! exit_codes_help {
    () => {
        "Exit codes: 0 success, 1 local failure, 2 invalid options or input files,\n\
         3 registrar unreachable, 4 rejected by the registrar, 5 retry later\n\
         (timeout, unavailable, rate limit), 6 some scopes failed, 130 rotate\n\
         interrupted."
    };
}

/// Writes to standard output like `print!`, and returns
/// `CliError::OutputClosed` when the reader has gone away instead of
/// panicking as `print!` does.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// Writes a line to standard output like `println!`; see `out!`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes a line to standard error like `eprintln!`, but ignores a closed
/// or failing standard error instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod apps;
pub mod connect;
pub mod error;
pub mod keygen;
pub mod output;
pub mod scopes;
pub mod token;
pub mod watch;

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use registrar_api::v1::KeyAlgorithm;

use apps::{AppsArgs, CreateArgs, GrantsArgs};
use keygen::KeygenArgs;
use scopes::ScopesArgs;
use token::TokenArgs;
use watch::{RotateArgs, WatchArgs};

/// The operator subcommands.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Generate a key pair, write the private key to a file (mode 0600),
    /// and print the public JWKS for `registrar create --jwks`.
    Keygen(KeygenArgs),
    /// Create a service app from a JWKS file or with a registrar-generated
    /// key.
    Create(CreateArgs),
    /// Grant Okta scopes to a service app and show each scope's outcome.
    Grant(ScopesArgs),
    /// Revoke scopes from a service app and show each scope's outcome.
    Revoke(ScopesArgs),
    /// Rotate the key of an app whose key the registrar holds, and follow
    /// the rotation until the old key is removed.
    Rotate(RotateArgs),
    /// Print the key state of one or more apps and every change, until
    /// Ctrl-C.
    Watch(WatchArgs),
    /// List the org's service apps, all pages.
    Apps(AppsArgs),
    /// List a service app's scope grants.
    Grants(GrantsArgs),
    /// Print an access token for an app and scopes (the output is a secret).
    Token(TokenArgs),
}

/// The algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algorithm {
    /// RSA with a 2048-bit modulus, signing with RS256.
    #[value(name = "rs256-2048")]
    Rs2562048,
    /// RSA with a 3072-bit modulus, signing with RS256.
    #[value(name = "rs256-3072")]
    Rs2563072,
    /// RSA with a 4096-bit modulus, signing with RS256.
    #[value(name = "rs256-4096")]
    Rs2564096,
    /// EC on curve P-256, signing with ES256.
    #[value(name = "es256")]
    Es256,
}

impl Algorithm {
    /// Returns the API's key algorithm.
    pub fn to_proto(self) -> KeyAlgorithm {
        match self {
            Self::Rs2562048 => KeyAlgorithm::Rs2562048,
            Self::Rs2563072 => KeyAlgorithm::Rs2563072,
            Self::Rs2564096 => KeyAlgorithm::Rs2564096,
            Self::Es256 => KeyAlgorithm::Es256,
        }
    }
}

/// Runs an operator subcommand, prints its error on standard error, and
/// returns the exit code.
pub async fn run(command: OperatorCommand) -> ExitCode {
    let outcome = match command {
        OperatorCommand::Keygen(args) => keygen::run(args).await,
        OperatorCommand::Create(args) => apps::create(args).await,
        OperatorCommand::Grant(args) => scopes::run(args, scopes::Change::Grant).await,
        OperatorCommand::Revoke(args) => scopes::run(args, scopes::Change::Revoke).await,
        OperatorCommand::Rotate(args) => watch::rotate(args).await,
        OperatorCommand::Watch(args) => watch::watch(args).await,
        OperatorCommand::Apps(args) => apps::apps(args).await,
        OperatorCommand::Grants(args) => apps::grants(args).await,
        OperatorCommand::Token(args) => token::run(args).await,
    };
    match outcome {
        // `registrar apps | head -1`: the reader has all it wanted.
        Ok(()) | Err(error::CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("registrar: {error}");
            error.exit_code()
        }
    }
}
