//! The connection and output options that every operator subcommand that
//! calls the registrar shares, and the client built from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use registrar_sdk::Client;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

use super::error::{CliError, Target};

/// The longest accepted `--timeout-secs`.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// How to reach the registrar, and how to print the result.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The registrar's gRPC URL. An https:// URL connects with TLS.
    #[arg(
        long,
        env = "REGISTRAR_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub server: String,
    /// PEM CA certificates that verify the registrar's TLS certificate, in
    /// place of the system's trusted roots. Needs an https:// --server.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mTLS. Needs --key-file and an
    /// https:// --server.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// A file that contains the bearer token sent as "authorization: Bearer
    /// TOKEN". The token is not accepted as a flag value, because flag
    /// values show in ps.
    #[arg(long, env = "REGISTRAR_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Time limit for connecting and for each call, in seconds (1 to 3600).
    /// It does not limit how long a watch stream stays open.
    #[arg(long, env = "REGISTRAR_TIMEOUT_SECS", default_value_t = 30)]
    pub timeout_secs: u64,
    /// Print JSON for scripts: one document, or one JSON object per line
    /// for streams.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// Returns the target for messages, after checking `--timeout-secs`.
    pub fn target(&self) -> Result<Target, CliError> {
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(CliError::Usage(format!(
                "--timeout-secs: {} is out of range; use 1 to {MAX_TIMEOUT_SECS}",
                self.timeout_secs
            )));
        }
        Ok(Target {
            server: self.server.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
        })
    }

    /// Checks the options, connects to the registrar, and returns a client
    /// that sends the bearer token, if any, with every call.
    pub async fn connect(&self) -> Result<(Client, Target), CliError> {
        let target = self.target()?;
        let endpoint = self.endpoint(&target)?;
        let token = self.token_file.as_deref().map(read_token).transpose()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| target.connect_error(&error))?;
        let mut client = Client::from_channel(channel);
        if let Some(token) = token {
            client = client.with_bearer_token(&token).map_err(|_| {
                CliError::Usage(format!(
                    "--token-file: the token in {} must be printable ASCII without spaces",
                    self.token_file
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                ))
            })?;
        }
        Ok((client, target))
    }

    fn endpoint(&self, target: &Target) -> Result<Endpoint, CliError> {
        let invalid = || {
            CliError::Usage(format!(
                "--server: {:?} is not a valid URL; use http://HOST:PORT, or https://HOST:PORT for TLS",
                self.server
            ))
        };
        let tls = if self.server.starts_with("https://") {
            true
        } else if self.server.starts_with("http://") {
            false
        } else {
            return Err(invalid());
        };
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|_| invalid())?
            .connect_timeout(target.timeout)
            .timeout(target.timeout);
        if !tls {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                return Err(CliError::Usage(format!(
                    "--ca-file and --cert-file need TLS, but --server {} is plaintext; use an https:// URL",
                    self.server
                )));
            }
            return Ok(endpoint);
        }
        endpoint
            .tls_config(self.tls_config()?)
            .map_err(|error| CliError::Usage(format!("TLS settings are invalid: {error}")))
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, CliError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(path) => {
                config.ca_certificate(Certificate::from_pem(read_file("--ca-file", path)?))
            }
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let cert = read_file("--cert-file", cert)?;
            let key = Zeroizing::new(read_file("--key-file", key)?);
            config = config.identity(Identity::from_pem(cert, &*key));
        }
        Ok(config)
    }
}

fn read_file(option: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| {
        CliError::Usage(format!("{option}: cannot read {}: {error}", path.display()))
    })
}

/// Reads the bearer token without its trailing line break.
fn read_token(path: &Path) -> Result<Zeroizing<String>, CliError> {
    let content = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        CliError::Usage(format!(
            "--token-file: cannot read {}: {error}",
            path.display()
        ))
    })?);
    let token = content.trim_end_matches(['\r', '\n']);
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "--token-file: {} is empty; put the bearer token in it",
            path.display()
        )));
    }
    Ok(Zeroizing::new(token.to_string()))
}
