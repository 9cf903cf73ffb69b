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

mod credential;

pub use credential::{CredentialSource, OktaCredentialArgs};

use crate::auth::{AuthArgs, AuthConfig};
use crate::keys::master::MasterKey;
use crate::org::OrgUrl;
use crate::rotation::RotationSettings;
use crate::secret::Secret;

/// The validated configuration of [`crate::run`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Okta org the registrar manages.
    pub okta_org: OrgUrl,
    /// The registrar's own Okta credential: a Super Admin's API token, or
    /// an OAuth service app with the Super Admin role.
    pub okta_credential: crate::okta::OktaCredential,
    /// The files that `okta_credential` was read from, which SIGHUP reads
    /// again; `None` when it came from the environment or from code.
    pub okta_credential_source: Option<CredentialSource>,
    /// The store's database URL, such as `sqlite://data/registrar.db`.
    pub database_url: DatabaseUrl,
    /// The time limit of each Okta request.
    pub okta_timeout: Duration,
    /// The share of Okta's rate limits the registrar uses, and its retries.
    pub okta_pacing: crate::okta::PacingSettings,
    /// The key that encrypts stored private keys.
    pub master_key: MasterKey,
    /// How far ahead of `iat` a client assertion's `exp` lies.
    pub assertion_lifetime: Duration,
    /// How long in-flight requests may run after shutdown starts before
    /// they are dropped.
    pub shutdown_grace: Duration,
    /// The timing of key rotations.
    pub rotation: RotationSettings,
    /// The caller authentication and TLS settings.
    pub auth: AuthConfig,
    /// Whether WatchRotations delivers each app's private signing key to
    /// callers that ask for it.
    pub deliver_private_keys: bool,
    /// The caller policy.
    pub policies: crate::policy::Policies,
    /// The listen address of `GET /metrics`, or `None` for no metrics
    /// endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

/// The default delay between registering a new key in Okta and signing
/// with it.
pub const DEFAULT_PROPAGATION_DELAY: Duration = Duration::from_secs(30);
/// Clock skew that a rotation's grace period covers beyond the assertion
/// lifetime: the 60 s by which assertions are backdated, plus 60 s for a
/// token endpoint clock that runs ahead.
pub const ROTATION_SKEW_ALLOWANCE: Duration = Duration::from_secs(120);

/// The default time in-flight requests get to finish after a shutdown
/// signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The default client assertion lifetime: five minutes, as Okta's guide
/// for service apps suggests.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// The longest accepted assertion lifetime. Okta rejects assertions whose
/// `exp` lies more than one hour ahead of its clock; half an hour leaves room
/// for clock skew.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 1800;

/// A database URL. `Debug` and `Display` replace its password, which a
/// PostgreSQL URL may carry, with `redacted`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Returns the whole URL, password included, to connect with.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_string())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(url.into())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parsed = url::Url::parse(&self.0)
            .ok()
            // Without a host, as in `postgres:/user:password@host/db`, the
            // password is not recognised as one.
            .filter(|url| url.has_host() || !self.0.contains('@'));
        let Some(mut url) = parsed else {
            // A URL that does not parse may still hold a password.
            return f.write_str("(a database URL that does not parse)");
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("redacted"));
        }
        // PostgreSQL URLs also take the password as a query parameter, and
        // a mistyped name would slip past a list of names to redact. So only
        // the values of parameters known to hold no secret are shown.
        const SHOWN: [&str; 8] = [
            "sslmode",
            "sslrootcert",
            "host",
            "port",
            "user",
            "dbname",
            "application_name",
            "mode",
        ];
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(name, value)| {
                    let value = if SHOWN.contains(&name.as_ref()) {
                        value.into_owned()
                    } else {
                        "redacted".to_string()
                    };
                    (name.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        f.write_str(url.as_str())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
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
    Serve(Box<ServeArgs>),
    /// Start an Okta emulator and a registrar on free loopback ports and
    /// register a sample service app through the gRPC API.
    Demo(DemoArgs),
    /// Read a bearer token from standard input and print its entry for the
    /// bearer token file, which stores only the token's SHA-256.
    HashToken(HashTokenArgs),
    /// The operator subcommands, which call a running registrar.
    #[command(flatten)]
    Operator(crate::cli::OperatorCommand),
}

/// Options of `registrar serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address the gRPC API listens on.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Caller authentication and TLS.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// The Okta org URL, such as https://example.okta.com.
    #[arg(long, env = "OKTA_ORG_URL")]
    pub okta_org_url: String,
    /// The registrar's own Okta credential.
    #[command(flatten)]
    pub okta_credential: OktaCredentialArgs,
    /// The directory for the default SQLite database.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The database URL. Defaults to sqlite://DATA_DIR/registrar.db.
    // The URL may carry a password, which --help must not show.
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// The time limit of each Okta request, in seconds.
    #[arg(long, env = "REGISTRAR_OKTA_TIMEOUT_SECS", default_value_t = 30)]
    pub okta_timeout_secs: u64,
    /// A file holding the master key (32 bytes, standard base64) that
    /// encrypts stored private keys. Without it, the key is read from
    /// REGISTRAR_MASTER_KEY, or else from DATA_DIR/master.key, which is
    /// created with mode 0600 on first run.
    #[arg(long, env = "REGISTRAR_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// How far ahead of its issue time a client assertion expires, in
    /// seconds (30 to 1800).
    #[arg(long, env = "REGISTRAR_ASSERTION_LIFETIME_SECS", default_value_t = 300)]
    pub assertion_lifetime_secs: u64,
    /// How long in-flight requests may run after SIGINT or SIGTERM before
    /// they are dropped, in seconds. A second signal stops at once.
    #[arg(long, env = "REGISTRAR_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// How long a new key is registered in Okta before the registrar signs
    /// with it during a rotation, in seconds.
    #[arg(
        long,
        env = "REGISTRAR_ROTATION_PROPAGATION_SECS",
        default_value_t = 30
    )]
    pub rotation_propagation_secs: u64,
    /// How long the old key stays active in Okta after signing switched, in
    /// seconds: at least the assertion lifetime plus 120 s of clock skew,
    /// which is also the default.
    #[arg(long, env = "REGISTRAR_ROTATION_GRACE_SECS")]
    pub rotation_grace_secs: Option<u64>,
    /// The planned lifetime of a registrar-held key, in days; automatic
    /// rotation starts near half of it. 0 turns automatic rotation off.
    #[arg(long, env = "REGISTRAR_KEY_LIFETIME_DAYS", default_value_t = 90)]
    pub key_lifetime_days: u64,
    /// Let WatchRotations deliver the private signing key of each watched
    /// app to callers that ask for it, so that they can sign assertions and
    /// get tokens from Okta while the registrar is unreachable.
    #[arg(long, env = "REGISTRAR_DELIVER_PRIVATE_KEYS")]
    pub deliver_private_keys: bool,
    /// A TOML file of what each caller may do; SIGHUP reloads it. Required
    /// with caller authentication; without it, --insecure-no-auth allows
    /// every call.
    #[arg(long, env = "REGISTRAR_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// The share of each Okta rate-limit bucket the registrar may use per
    /// window, above 0 and at most 1; the rest is left to other clients of
    /// the org.
    #[arg(long, env = "REGISTRAR_OKTA_RATE_SHARE", default_value_t = crate::okta::DEFAULT_RATE_SHARE)]
    pub okta_rate_share: f64,
    /// How often a failed Okta request is retried (0 to 10); 0 turns
    /// retries off.
    #[arg(long, env = "REGISTRAR_OKTA_MAX_RETRIES", default_value_t = crate::okta::retry::DEFAULT_MAX_RETRIES)]
    pub okta_max_retries: u32,
    /// The address of the Prometheus endpoint `GET /metrics`, which has no
    /// authentication; bind it to loopback or a private network. Off when
    /// not set.
    #[arg(long, env = "REGISTRAR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Options of `registrar hash-token`.
#[derive(Debug, Args)]
pub struct HashTokenArgs {
    /// The caller's name: its caller id in logs and policies (ASCII
    /// letters, digits, '.', '_' and '-').
    #[arg(long)]
    pub name: String,
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
        let okta_credential_source = CredentialSource::of(&self.okta_credential);
        let okta_credential = self.okta_credential.into_credential()?;
        if self.okta_timeout_secs == 0 || self.okta_timeout_secs > 300 {
            bail!(
                "--okta-timeout-secs: {} is out of range; use 1 to 300",
                self.okta_timeout_secs
            );
        }
        if !(30..=MAX_ASSERTION_LIFETIME_SECS).contains(&self.assertion_lifetime_secs) {
            bail!(
                "--assertion-lifetime-secs: {} is out of range; use 30 to {MAX_ASSERTION_LIFETIME_SECS}",
                self.assertion_lifetime_secs
            );
        }
        let auth = self.auth.into_config(self.listen)?;
        let policies = load_policies(self.policy_file.as_deref(), auth.insecure_no_auth)?;
        if !(self.okta_rate_share > 0.0 && self.okta_rate_share <= 1.0) {
            bail!(
                "--okta-rate-share: {} is out of range; use a number above 0 and at most 1, such as 0.5",
                self.okta_rate_share
            );
        }
        if self.okta_max_retries > 10 {
            bail!(
                "--okta-max-retries: {} is out of range; use 0 (no retries) to 10",
                self.okta_max_retries
            );
        }
        let okta_pacing = crate::okta::PacingSettings {
            rate_share: self.okta_rate_share,
            retry: crate::okta::retry::RetryPolicy {
                max_retries: self.okta_max_retries,
                ..Default::default()
            },
        };
        let database_url = match self.database_url {
            Some(url) => url,
            None => default_database_url(&self.data_dir)?,
        };
        if self.key_lifetime_days > 3650 {
            bail!(
                "--key-lifetime-days: {} is out of range; use 0 (no automatic rotation) to 3650",
                self.key_lifetime_days
            );
        }
        let assertion_lifetime = Duration::from_secs(self.assertion_lifetime_secs);
        let minimum_grace = assertion_lifetime + ROTATION_SKEW_ALLOWANCE;
        let grace_period = match self.rotation_grace_secs {
            None => minimum_grace,
            Some(secs) if Duration::from_secs(secs) >= minimum_grace => Duration::from_secs(secs),
            Some(secs) => bail!(
                "--rotation-grace-secs: {secs} is too short; it must be at least the assertion lifetime plus 120 s of clock skew ({} s), or old assertions would fail",
                minimum_grace.as_secs()
            ),
        };
        let master_key = load_master_key(self.master_key_file.as_deref(), &self.data_dir)?;
        Ok(ServerConfig {
            okta_org,
            okta_credential,
            okta_credential_source,
            database_url,
            okta_timeout: Duration::from_secs(self.okta_timeout_secs),
            okta_pacing,
            master_key,
            assertion_lifetime: Duration::from_secs(self.assertion_lifetime_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            rotation: RotationSettings {
                propagation_delay: Duration::from_secs(self.rotation_propagation_secs),
                grace_period,
                key_lifetime: (self.key_lifetime_days > 0)
                    .then(|| Duration::from_secs(self.key_lifetime_days * 86_400)),
            },
            deliver_private_keys: self.deliver_private_keys,
            policies,
            auth,
            metrics_listen: self.metrics_listen,
        })
    }
}

/// Loads the policy file, or allows every call when callers are not
/// authenticated and no file is given. With caller authentication a policy
/// file is required, because authenticated callers exist to be limited.
fn load_policies(
    file: Option<&Path>,
    insecure_no_auth: bool,
) -> anyhow::Result<crate::policy::Policies> {
    match file {
        Some(path) => crate::policy::Policies::load(path),
        None if insecure_no_auth => Ok(crate::policy::Policies::allow_all()),
        None => bail!(
            "--policy-file is missing: with caller authentication on, the registrar needs a policy of what each caller may do, and denies everything without one; write a policy file (see the README, \"Caller policy\") and pass it with --policy-file or REGISTRAR_POLICY_FILE"
        ),
    }
}

/// Loads the master key from a file, from REGISTRAR_MASTER_KEY, or from
/// DATA_DIR/master.key, creating that file on first run.
pub fn load_master_key(file: Option<&Path>, data_dir: &Path) -> anyhow::Result<MasterKey> {
    let from_env = std::env::var("REGISTRAR_MASTER_KEY")
        .ok()
        .filter(|key| !key.is_empty());
    match (file, from_env) {
        (Some(_), Some(_)) => bail!(
            "--master-key-file and REGISTRAR_MASTER_KEY are both set; keep only one source of the master key"
        ),
        (Some(path), None) => {
            let encoded =
                zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("--master-key-file: cannot read {}", path.display())
                })?);
            MasterKey::from_base64(&encoded, &path.display().to_string())
                .map_err(|err| anyhow::anyhow!("--master-key-file: {err}"))
        }
        (None, Some(encoded)) => {
            let encoded = zeroize::Zeroizing::new(encoded);
            MasterKey::from_base64(&encoded, "REGISTRAR_MASTER_KEY")
                .map_err(|err| anyhow::anyhow!("{err}"))
        }
        (None, None) => {
            create_private_dir(data_dir)
                .with_context(|| format!("--data-dir: cannot create {}", data_dir.display()))?;
            let path = data_dir.join("master.key");
            let (key, created) =
                MasterKey::load_or_create(&path).map_err(|err| anyhow::anyhow!("{err}"))?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "created a new master key for stored private keys; back it up, because without it the stored keys cannot be decrypted"
                );
            } else {
                tracing::info!(path = %path.display(), "loaded the master key");
            }
            Ok(key)
        }
    }
}

/// Creates the data directory (mode 0700 on Unix) and returns the URL of
/// the SQLite database inside it.
pub fn default_database_url(data_dir: &Path) -> anyhow::Result<DatabaseUrl> {
    create_private_dir(data_dir)
        .with_context(|| format!("--data-dir: cannot create {}", data_dir.display()))?;
    let path = data_dir.join("registrar.db");
    let path = path
        .to_str()
        .with_context(|| format!("--data-dir: {} is not valid UTF-8", data_dir.display()))?;
    Ok(format!("sqlite://{path}").into())
}

/// The largest policy or bearer token file that the server reads. Both
/// hold a few lines per caller, so 1 MiB leaves room for thousands.
pub const MAX_SETTINGS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a settings file that `option` names, such as the policy file. It
/// must be a regular file of at most [`MAX_SETTINGS_FILE_BYTES`], so that a
/// path replaced by a FIFO or a device cannot block or exhaust the server
/// on a reload. Errors name the option and the path, never the contents.
pub fn read_settings_file(option: &str, path: &Path) -> anyhow::Result<String> {
    use std::io::Read;

    let cannot_read = || format!("{option}: cannot read {}", path.display());
    // Opening a FIFO for reading waits for a writer unless O_NONBLOCK is
    // set, and the type is checked on the opened file, so that a path
    // replaced in between cannot slip through.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or_default(),
    );
    let file = options.open(path).with_context(cannot_read)?;
    if !file.metadata().with_context(cannot_read)?.is_file() {
        bail!(
            "{option}: {} is not a regular file; point the option at the file itself",
            path.display()
        );
    }
    let mut text = String::new();
    file.take(MAX_SETTINGS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(cannot_read)?;
    if text.len() as u64 > MAX_SETTINGS_FILE_BYTES {
        bail!(
            "{option}: {} is larger than {MAX_SETTINGS_FILE_BYTES} bytes; check that the option names the right file",
            path.display()
        );
    }
    Ok(text)
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
    let (token, source) = match (file, from_env) {
        (Some(_), Some(_)) => bail!(
            "--okta-api-token-file and OKTA_API_TOKEN are both set; keep only one source of the Okta API token"
        ),
        (Some(path), None) => (
            read_settings_file("--okta-api-token-file", path)?,
            format!("--okta-api-token-file {}", path.display()),
        ),
        (None, Some(token)) => (token, "OKTA_API_TOKEN".to_string()),
        (None, None) => bail!(
            "no Okta API token: set OKTA_API_TOKEN or pass --okta-api-token-file with a file that contains it"
        ),
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("{source}: the Okta API token is empty; put the token of a Super Admin there");
    }
    if token
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        bail!(
            "{source}: the Okta API token contains whitespace; it must be a single token without the SSWS prefix"
        );
    }
    // It goes into an HTTP header, which takes visible ASCII only.
    if !token.chars().all(|ch| ch.is_ascii_graphic()) {
        bail!(
            "{source}: the Okta API token contains characters other than visible ASCII; copy the token as Okta shows it"
        );
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn database_url_hides_passwords() {
        let cases = [
            "postgres://registrar:Secret1@db.internal:5432/registrar",
            "postgres://db.internal:5432/registrar?user=registrar&password=Secret2",
            "postgres://registrar:ab#Secret3@127.0.0.1:5432/x",
            "postgres://registrar:Secret4@127.0.0.1:notaport/db",
            "postgres://registrar:Secret5@[::1:5432/db",
            "postgres:/registrar:Secret6@127.0.0.1:5432/db",
            "postgres://registrar@127.0.0.1:5432/db?passwd=Secret7",
        ];
        for case in cases {
            let url = DatabaseUrl::from(case);
            for shown in [url.to_string(), format!("{url:?}")] {
                assert!(!shown.contains("Secret"), "{shown}");
            }
            assert_eq!(url.as_str(), case);
        }
    }

    #[test]
    fn database_url_keeps_the_rest() {
        let url =
            DatabaseUrl::from("postgres://registrar:pw@db.internal:5432/registrar?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://registrar:redacted@db.internal:5432/registrar?sslmode=require"
        );
        let sqlite = DatabaseUrl::from("sqlite:///var/lib/registrar/registrar.db");
        assert_eq!(
            sqlite.to_string(),
            "sqlite:///var/lib/registrar/registrar.db"
        );
    }

    #[test]
    fn settings_file_must_be_small_and_regular() {
        use super::{MAX_SETTINGS_FILE_BYTES, read_settings_file};

        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, "[[caller]]\n").expect("write");
        assert_eq!(
            read_settings_file("--policy-file", &file).expect("regular file"),
            "[[caller]]\n"
        );

        let error = read_settings_file("--policy-file", dir.path()).expect_err("a directory");
        let message = format!("{error:#}");
        assert!(message.contains("not a regular file"), "{message}");
        assert!(message.contains("--policy-file"), "{message}");

        #[cfg(unix)]
        {
            let error =
                read_settings_file("--bearer-tokens-file", std::path::Path::new("/dev/zero"))
                    .expect_err("a device");
            assert!(
                format!("{error:#}").contains("not a regular file"),
                "{error:#}"
            );

            // A FIFO without a writer is rejected at once instead of
            // blocking the read.
            let fifo = dir.path().join("fifo");
            let mkfifo = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .expect("mkfifo runs");
            assert!(mkfifo.success());
            let error = read_settings_file("--policy-file", &fifo).expect_err("a FIFO");
            assert!(
                format!("{error:#}").contains("not a regular file"),
                "{error:#}"
            );
        }

        let size = usize::try_from(MAX_SETTINGS_FILE_BYTES).expect("fits") + 1;
        std::fs::write(&file, "#".repeat(size)).expect("write");
        let error = read_settings_file("--policy-file", &file).expect_err("too large");
        let message = format!("{error:#}");
        assert!(message.contains("larger than"), "{message}");
        assert!(
            !message.contains("###"),
            "the contents are not quoted: {message}"
        );
    }
}
