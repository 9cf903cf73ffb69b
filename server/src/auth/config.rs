//! The authentication options of `registrar serve` and their validation.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::BoolishValueParser;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use super::{BearerTokens, DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CALLER};

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The error when no authentication is configured, listing the choices.
const NO_AUTH_CONFIGURED: &str = "no caller authentication is configured; choose one: \
(1) mTLS: --tls-cert-file, --tls-key-file and --client-ca-file; \
(2) bearer tokens: --bearer-tokens-file (with --tls-cert-file and --tls-key-file unless --listen is a loopback address); \
(3) development only: --insecure-no-auth, with a loopback --listen address";

/// The authentication options of `registrar serve`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The server's TLS certificate chain, PEM. Turns on TLS.
    #[arg(long, env = "REGISTRAR_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of the TLS certificate, PEM (PKCS #8, PKCS #1 or
    /// SEC1).
    #[arg(long, env = "REGISTRAR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA certificates, PEM, that sign trusted client certificates.
    /// Turns on mTLS: the caller id is the certificate's spiffe:// URI SAN,
    /// or else its subject CN.
    #[arg(long, env = "REGISTRAR_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// A TOML file of callers and the SHA-256 digests of their bearer
    /// tokens; `registrar hash-token` prints the entries.
    #[arg(long, env = "REGISTRAR_BEARER_TOKENS_FILE")]
    pub bearer_tokens_file: Option<PathBuf>,
    /// Accept calls without authentication. Development only: allowed on a
    /// loopback --listen address only.
    #[arg(long, env = "REGISTRAR_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Serve gRPC reflection without authentication. The health service is
    /// always public.
    #[arg(long, env = "REGISTRAR_PUBLIC_REFLECTION", value_parser = BoolishValueParser::new())]
    pub public_reflection: bool,
    /// How many requests one authenticated caller may have in flight; more
    /// get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "REGISTRAR_MAX_CONCURRENT_REQUESTS_PER_CALLER",
        default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CALLER
    )]
    pub max_concurrent_requests_per_caller: usize,
}

impl AuthArgs {
    /// Reads the files, validates the combination for the listen address
    /// and returns the configuration. The error names the option and the
    /// fix.
    pub fn into_config(self, listen: SocketAddr) -> anyhow::Result<AuthConfig> {
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles::load(cert, key, self.client_ca_file.as_deref())?)
            }
            (None, None) if self.client_ca_file.is_some() => bail!(
                "--client-ca-file needs --tls-cert-file and --tls-key-file, because clients send certificates only over TLS"
            ),
            (None, None) => None,
            _ => bail!("--tls-cert-file and --tls-key-file must be given together"),
        };
        let bearer_tokens = self
            .bearer_tokens_file
            .as_deref()
            .map(BearerTokens::load)
            .transpose()?;
        let config = AuthConfig {
            tls,
            bearer_tokens,
            insecure_no_auth: self.insecure_no_auth,
            public_reflection: self.public_reflection,
            max_concurrent_requests_per_caller: self.max_concurrent_requests_per_caller,
        };
        config.check(listen)?;
        Ok(config)
    }
}

/// The validated authentication settings of the server.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The server's TLS certificate and, for mTLS, the client CA bundle;
    /// `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// The callers that authenticate with bearer tokens.
    pub bearer_tokens: Option<BearerTokens>,
    /// Whether calls without credentials are accepted.
    pub insecure_no_auth: bool,
    /// Whether reflection is served without authentication.
    pub public_reflection: bool,
    /// The maximum of requests in flight per authenticated caller.
    pub max_concurrent_requests_per_caller: usize,
}

impl AuthConfig {
    /// Returns the development setting: no authentication, plaintext,
    /// public reflection. [`AuthConfig::check`] accepts it only on a
    /// loopback address.
    pub fn insecure_loopback() -> Self {
        Self {
            tls: None,
            bearer_tokens: None,
            insecure_no_auth: true,
            public_reflection: true,
            max_concurrent_requests_per_caller: DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CALLER,
        }
    }

    /// Returns whether client certificates are verified, which is mTLS.
    pub fn verifies_client_certificates(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_pem.is_some())
    }

    /// Checks the combination of settings for a listen address: some
    /// authentication is configured, and the insecure setting and bearer
    /// tokens over plaintext are used on loopback only.
    pub fn check(&self, listen: SocketAddr) -> anyhow::Result<()> {
        let loopback = listen.ip().to_canonical().is_loopback();
        if self.max_concurrent_requests_per_caller == 0 {
            bail!("--max-concurrent-requests-per-caller: 0 would reject every call; use 1 or more");
        }
        if self.insecure_no_auth {
            if self.verifies_client_certificates() || self.bearer_tokens.is_some() {
                bail!(
                    "--insecure-no-auth turns caller authentication off, so it cannot be combined with --client-ca-file or --bearer-tokens-file; drop one of them"
                );
            }
            if !loopback {
                bail!(
                    "--insecure-no-auth is allowed only on a loopback --listen address, and {listen} is not one; listen on 127.0.0.1, or configure mTLS (--client-ca-file) or bearer tokens (--bearer-tokens-file)"
                );
            }
            return Ok(());
        }
        if !self.verifies_client_certificates() && self.bearer_tokens.is_none() {
            bail!("{NO_AUTH_CONFIGURED}");
        }
        if self.bearer_tokens.is_some() && self.tls.is_none() && !loopback {
            bail!(
                "--bearer-tokens-file: bearer tokens over plaintext are allowed only on a loopback --listen address, and {listen} is not one; add --tls-cert-file and --tls-key-file"
            );
        }
        Ok(())
    }
}

/// The server's TLS certificate chain and key, and the client CA bundle,
/// all PEM. The key is kept out of `Debug`.
#[derive(Clone)]
pub struct TlsFiles {
    cert_pem: Vec<u8>,
    key_pem: Arc<Zeroizing<Vec<u8>>>,
    client_ca_pem: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads and validates the files of `--tls-cert-file`, `--tls-key-file`
    /// and `--client-ca-file`.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Self> {
        let read = |path: &Path, option: &str| {
            std::fs::read(path).with_context(|| format!("{option}: cannot read {}", path.display()))
        };
        let cert_pem = read(cert, "--tls-cert-file")?;
        let key_pem = read(key, "--tls-key-file")?;
        let client_ca_pem = client_ca
            .map(|path| read(path, "--client-ca-file"))
            .transpose()?;
        Self::from_pem(cert_pem, key_pem, client_ca_pem)
    }

    /// Validates PEM contents: the certificates parse, the key parses and
    /// matches the certificate, and the CA bundle contains at least one
    /// certificate.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Option<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let key_pem = Zeroizing::new(key_pem);
        let count = count_certificates(&cert_pem).context("--tls-cert-file")?;
        if count == 0 {
            bail!(
                "--tls-cert-file: no CERTIFICATE block; use the PEM certificate chain of the server, leaf first"
            );
        }
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            anyhow::anyhow!(
                "--tls-key-file: no PEM private key (PKCS #8, PKCS #1 or SEC1) found; use the key of the --tls-cert-file certificate"
            )
        })?;
        if let Some(bundle) = &client_ca_pem {
            let count = count_certificates(bundle).context("--client-ca-file")?;
            if count == 0 {
                bail!(
                    "--client-ca-file: no CERTIFICATE block; use the PEM certificates of the CAs that sign client certificates"
                );
            }
        }
        let files = Self {
            cert_pem,
            key_pem: Arc::new(key_pem),
            client_ca_pem,
        };
        // Building the acceptor checks that the key belongs to the
        // certificate, which otherwise would fail only at the first
        // handshake.
        tonic::transport::Server::builder()
            .tls_config(files.server_tls_config())
            .map_err(|err| {
                anyhow::anyhow!(
                    "--tls-cert-file, --tls-key-file: cannot build the TLS configuration ({}); check that the key belongs to the certificate",
                    error_chain(&err)
                )
            })?;
        Ok(files)
    }

    /// Returns tonic's TLS configuration. Client certificates are optional
    /// at the TLS layer, so that health probes connect without one; the
    /// auth layer rejects API calls that lack one.
    pub fn server_tls_config(&self) -> ServerTlsConfig {
        let identity = Identity::from_pem(&self.cert_pem, self.key_pem.as_slice());
        let mut config = ServerTlsConfig::new()
            .identity(identity)
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(bundle) = &self.client_ca_pem {
            config = config
                .client_ca_root(Certificate::from_pem(bundle))
                .client_auth_optional(true);
        }
        config
    }
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("key_pem", &"[redacted]")
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish()
    }
}

/// Counts the CERTIFICATE blocks of a PEM bundle and checks that each is an
/// X.509 certificate.
fn count_certificates(pem: &[u8]) -> anyhow::Result<usize> {
    let mut count = 0;
    for (index, certificate) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let certificate = certificate
            .map_err(|err| anyhow::anyhow!("certificate {}: invalid PEM: {err}", index + 1))?;
        <x509_cert::Certificate as x509_cert::der::Decode>::from_der(&certificate).map_err(
            |err| anyhow::anyhow!("certificate {}: not an X.509 certificate: {err}", index + 1),
        )?;
        count += 1;
    }
    Ok(count)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            insecure_no_auth: false,
            public_reflection: false,
            ..AuthConfig::insecure_loopback()
        }
    }

    fn bearer() -> BearerTokens {
        let entry =
            super::super::token_file_entry("billing", &"t".repeat(40)).expect("valid entry");
        BearerTokens::parse(&entry).expect("valid file")
    }

    const LOOPBACK: &str = "127.0.0.1:50051";
    const ANY: &str = "0.0.0.0:50051";

    #[test]
    fn nothing_configured_lists_choices() {
        let error = config()
            .check(LOOPBACK.parse().unwrap())
            .expect_err("no auth");
        let message = error.to_string();
        assert!(message.contains("--client-ca-file"), "{message}");
        assert!(message.contains("--bearer-tokens-file"), "{message}");
        assert!(message.contains("--insecure-no-auth"), "{message}");
    }

    #[test]
    fn insecure_needs_loopback() {
        let insecure = AuthConfig::insecure_loopback();
        assert!(insecure.check(LOOPBACK.parse().unwrap()).is_ok());
        assert!(insecure.check("[::1]:50051".parse().unwrap()).is_ok());
        let error = insecure.check(ANY.parse().unwrap()).expect_err("0.0.0.0");
        assert!(error.to_string().contains("loopback"), "{error}");
    }

    #[test]
    fn insecure_excludes_bearer_tokens() {
        let mixed = AuthConfig {
            bearer_tokens: Some(bearer()),
            ..AuthConfig::insecure_loopback()
        };
        let error = mixed.check(LOOPBACK.parse().unwrap()).expect_err("mixed");
        assert!(error.to_string().contains("cannot be combined"), "{error}");
    }

    #[test]
    fn plaintext_bearer_needs_loopback() {
        let plaintext = AuthConfig {
            bearer_tokens: Some(bearer()),
            ..config()
        };
        assert!(plaintext.check(LOOPBACK.parse().unwrap()).is_ok());
        let error = plaintext.check(ANY.parse().unwrap()).expect_err("0.0.0.0");
        assert!(error.to_string().contains("--tls-cert-file"), "{error}");
    }

    #[test]
    fn zero_concurrency_is_rejected() {
        let zero = AuthConfig {
            max_concurrent_requests_per_caller: 0,
            ..AuthConfig::insecure_loopback()
        };
        let error = zero.check(LOOPBACK.parse().unwrap()).expect_err("zero");
        assert!(error.to_string().contains("--max-concurrent"), "{error}");
    }

    #[test]
    fn bad_pem_names_the_option() {
        let error = TlsFiles::from_pem(b"not pem".to_vec(), b"not pem".to_vec(), None)
            .expect_err("bad certificate");
        assert!(
            format!("{error:#}").contains("--tls-cert-file"),
            "{error:#}"
        );
    }
}
