//! Command-line options and the validated server configuration.
//!
//! Every option has an environment variable. The Okta API token is read from
//! a file or from the environment only, never from a flag, because flag
//! values show in `ps`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::org::OrgUrl;
use crate::secret::Secret;

/// The validated configuration of [`crate::run`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Okta org the registrar manages.
    pub okta_org: OrgUrl,
    /// The Okta API token (`SSWS`) of a Super Admin.
    pub okta_api_token: Secret,
    /// The store's database URL, such as `sqlite://data/registrar.db`.
    pub database_url: String,
    /// The time limit of each Okta request.
    pub okta_timeout: Duration,
}

impl ServerConfig {
    /// Returns the database URL without credentials, for messages.
    pub fn database_url_for_display(&self) -> String {
        match url::Url::parse(&self.database_url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                url.to_string()
            }
            _ => self.database_url.clone(),
        }
    }
}

/// The `registrar` command line.
#[derive(Debug, Parser)]
#[command(
    name = "registrar",
    version,
    about = "Register services as Okta OAuth service apps"
)]
pub struct Cli {
    /// The log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "REGISTRAR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the registrar gRPC API.
    Serve(ServeArgs),
    /// Start an Okta emulator and a registrar on free loopback ports and
    /// register a sample service app through the gRPC API.
    Demo(DemoArgs),
}

/// Options of `registrar serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address the gRPC API listens on.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// The Okta org URL, such as https://example.okta.com.
    #[arg(long, env = "OKTA_ORG_URL")]
    pub okta_org_url: String,
    /// A file holding the Okta API token. Without it, the token is read from
    /// the OKTA_API_TOKEN environment variable.
    #[arg(long, env = "OKTA_API_TOKEN_FILE")]
    pub okta_api_token_file: Option<PathBuf>,
    /// The directory for the default SQLite database.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The database URL. Defaults to sqlite://DATA_DIR/registrar.db.
    #[arg(long, env = "REGISTRAR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The time limit of each Okta request, in seconds.
    #[arg(long, env = "REGISTRAR_OKTA_TIMEOUT_SECS", default_value_t = 30)]
    pub okta_timeout_secs: u64,
}

/// Options of `registrar demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the emulator and the registrar running after the demo, for
    /// grpcurl, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

impl ServeArgs {
    /// Validates the options and reads the API token. The error names the
    /// option and the fix.
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        let okta_org = OrgUrl::parse(&self.okta_org_url)
            .map_err(|err| anyhow::anyhow!("--okta-org-url (OKTA_ORG_URL): {err}"))?;
        let okta_api_token = read_api_token(self.okta_api_token_file.as_deref())?;
        if self.okta_timeout_secs == 0 || self.okta_timeout_secs > 300 {
            bail!(
                "--okta-timeout-secs: {} is out of range; use 1 to 300",
                self.okta_timeout_secs
            );
        }
        let database_url = match self.database_url {
            Some(url) => url,
            None => default_database_url(&self.data_dir)?,
        };
        Ok(ServerConfig {
            okta_org,
            okta_api_token,
            database_url,
            okta_timeout: Duration::from_secs(self.okta_timeout_secs),
        })
    }
}

/// Creates the data directory (mode 0700 on Unix) and returns the URL of
/// the SQLite database inside it.
pub fn default_database_url(data_dir: &Path) -> anyhow::Result<String> {
    create_private_dir(data_dir)
        .with_context(|| format!("--data-dir: cannot create {}", data_dir.display()))?;
    let path = data_dir.join("registrar.db");
    let path = path
        .to_str()
        .with_context(|| format!("--data-dir: {} is not valid UTF-8", data_dir.display()))?;
    Ok(format!("sqlite://{path}"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn read_api_token(file: Option<&Path>) -> anyhow::Result<Secret> {
    let from_env = std::env::var("OKTA_API_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    let token = match (file, from_env) {
        (Some(_), Some(_)) => bail!(
            "--okta-api-token-file and OKTA_API_TOKEN are both set; keep only one source of the Okta API token"
        ),
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("--okta-api-token-file: cannot read {}", path.display()))?,
        (None, Some(token)) => token,
        (None, None) => bail!(
            "no Okta API token: set OKTA_API_TOKEN or pass --okta-api-token-file with a file that holds it"
        ),
    };
    let token = token.trim();
    if token.is_empty() {
        bail!(
            "the Okta API token is empty; put the token of a Super Admin in the file or variable"
        );
    }
    if token
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        bail!(
            "the Okta API token contains whitespace; it must be a single token without the SSWS prefix"
        );
    }
    Ok(Secret::new(token))
}
