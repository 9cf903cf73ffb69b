//! Options of the registrar's own Okta credential: an API token, or an
//! OAuth service app (client id, private key, optional key id, scopes).
//! Exactly one of the two must be configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use crate::keys::KeyError;
use crate::keys::import::key_pair_from_pem;
use crate::okta::credential::DEFAULT_SCOPES;
use crate::okta::{OAuthCredential, OktaCredential};

/// Options that choose the registrar's Okta credential.
#[derive(Debug, Clone, Args)]
pub struct OktaCredentialArgs {
    /// A file holding the Okta API token. Without it, the token is read from
    /// the OKTA_API_TOKEN environment variable.
    #[arg(long, env = "OKTA_API_TOKEN_FILE")]
    pub okta_api_token_file: Option<PathBuf>,
    /// The client id of the registrar's own OAuth service app in Okta; use
    /// it instead of an API token, together with --okta-private-key-file.
    #[arg(long, env = "OKTA_CLIENT_ID")]
    pub okta_client_id: Option<String>,
    /// A PEM file holding the private key (RSA or EC P-256; PKCS#8, PKCS#1
    /// or SEC1) whose public key is registered with that app.
    #[arg(long, env = "OKTA_PRIVATE_KEY_FILE")]
    pub okta_private_key_file: Option<PathBuf>,
    /// The kid under which the key is registered in Okta. Defaults to the
    /// key's RFC 7638 JWK thumbprint.
    #[arg(long, env = "OKTA_KEY_ID")]
    pub okta_key_id: Option<String>,
    /// The scopes the registrar requests for its access token, separated by
    /// spaces or commas.
    #[arg(long, env = "OKTA_SCOPES")]
    pub okta_scopes: Option<String>,
}

/// The files that the registrar's Okta credential was read from, so that
/// SIGHUP can read them again: the API token file, or the OAuth app's
/// private key file. The other options stay as they were at start.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    args: OktaCredentialArgs,
}

impl CredentialSource {
    /// Returns the source of the credential that `args` configure, or
    /// `None` when it comes from the environment only (`OKTA_API_TOKEN`),
    /// which cannot change while the process runs.
    pub fn of(args: &OktaCredentialArgs) -> Option<Self> {
        (args.okta_api_token_file.is_some() || args.okta_private_key_file.is_some())
            .then(|| Self { args: args.clone() })
    }

    /// Returns the file that contains the secret, for messages.
    pub fn path(&self) -> &Path {
        self.args
            .okta_api_token_file
            .as_deref()
            .or(self.args.okta_private_key_file.as_deref())
            .unwrap_or(Path::new(""))
    }

    /// Returns the fix for a reloaded credential that Okta rejected.
    pub fn hint(&self) -> &'static str {
        if self.args.okta_api_token_file.is_some() {
            "create the new token in Okta, as a Super Admin, before writing it to the file"
        } else if self.args.okta_key_id.is_some() {
            "--okta-key-id still names the kid of the key at start; register the new key in Okta under that kid, or restart with the new key's --okta-key-id"
        } else {
            "add the new key's public JWK to the registrar's app in Okta before writing the private key to the file"
        }
    }

    /// Reads and checks the credential again. The error names the option
    /// and never contains the secret.
    pub fn read(&self) -> anyhow::Result<OktaCredential> {
        self.args.clone().into_credential()
    }
}

impl OktaCredentialArgs {
    /// Validates the options and reads the token or the key. The error
    /// names the option and the fix, and never contains the secret.
    pub fn into_credential(self) -> anyhow::Result<OktaCredential> {
        let api_token_env = std::env::var("OKTA_API_TOKEN")
            .ok()
            .filter(|token| !token.is_empty());
        let wants_api_token = self.okta_api_token_file.is_some() || api_token_env.is_some();
        let wants_oauth = self.okta_client_id.is_some()
            || self.okta_private_key_file.is_some()
            || self.okta_key_id.is_some()
            || self.okta_scopes.is_some();
        match (wants_api_token, wants_oauth) {
            (true, true) => bail!(
                "two Okta credentials are configured: an API token (OKTA_API_TOKEN or --okta-api-token-file) and an OAuth service app (--okta-client-id, --okta-private-key-file, --okta-key-id or --okta-scopes); keep only one"
            ),
            (false, false) => bail!(
                "no Okta credential: set OKTA_API_TOKEN or --okta-api-token-file to use an API token, or --okta-client-id with --okta-private-key-file to use an OAuth service app"
            ),
            (true, false) => Ok(OktaCredential::ApiToken(super::read_api_token(
                self.okta_api_token_file.as_deref(),
            )?)),
            (false, true) => self.into_oauth().map(OktaCredential::OAuth),
        }
    }

    fn into_oauth(self) -> anyhow::Result<OAuthCredential> {
        let Some(client_id) = self.okta_client_id.filter(|id| !id.trim().is_empty()) else {
            bail!(
                "--okta-client-id (OKTA_CLIENT_ID) is missing: the OAuth credential needs the client id of the registrar's service app"
            );
        };
        let client_id = client_id.trim().to_string();
        if !client_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        {
            bail!(
                "--okta-client-id: {client_id:?} is not a valid client id; use the app's client id from Okta, such as 0oa1b2c3d4e5f6g7h8i9"
            );
        }
        let Some(path) = self.okta_private_key_file else {
            bail!(
                "--okta-private-key-file (OKTA_PRIVATE_KEY_FILE) is missing: the OAuth credential needs the PEM private key registered with the app {client_id}"
            );
        };
        let kid = self.okta_key_id.filter(|kid| !kid.trim().is_empty());
        let key = load_key(&path, kid.as_deref())?;
        let scopes = parse_scopes(self.okta_scopes.as_deref())?;
        Ok(OAuthCredential {
            client_id,
            key: Arc::new(key),
            scopes,
        })
    }
}

fn load_key(path: &Path, kid: Option<&str>) -> anyhow::Result<crate::keys::KeyPair> {
    let pem = zeroize::Zeroizing::new(super::read_settings_file("--okta-private-key-file", path)?);
    key_pair_from_pem(&pem, kid).map_err(|err| {
        let detail = match err {
            KeyError::Malformed(detail) | KeyError::Generate(detail) => detail,
        };
        anyhow::anyhow!("--okta-private-key-file: {}: {detail}", path.display())
    })
}

/// Splits `--okta-scopes` on spaces and commas, or returns the default
/// scopes when it is not given.
fn parse_scopes(value: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(value) = value else {
        return Ok(DEFAULT_SCOPES
            .iter()
            .map(|scope| scope.to_string())
            .collect());
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in value
        .split(|ch: char| ch == ',' || ch.is_whitespace())
        .filter(|scope| !scope.is_empty())
    {
        if !scope.starts_with("okta.") || !scope.chars().all(|ch| ch.is_ascii_graphic()) {
            bail!("--okta-scopes: {scope:?} is not an Okta scope; Okta scopes start with okta.");
        }
        if !scopes.iter().any(|known| known == scope) {
            scopes.push(scope.to_string());
        }
    }
    if scopes.is_empty() {
        bail!(
            "--okta-scopes is empty; leave it out for the default scopes ({})",
            DEFAULT_SCOPES.join(" ")
        );
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_default_and_split() {
        assert_eq!(
            parse_scopes(None).expect("default").len(),
            DEFAULT_SCOPES.len()
        );
        assert_eq!(
            parse_scopes(Some("okta.apps.read, okta.apps.manage okta.apps.read")).expect("valid"),
            ["okta.apps.read", "okta.apps.manage"]
        );
        assert!(parse_scopes(Some(" , ")).is_err());
        assert!(parse_scopes(Some("openid")).is_err());
    }

    fn oauth_args() -> OktaCredentialArgs {
        OktaCredentialArgs {
            okta_api_token_file: None,
            okta_client_id: Some("0oaRegistrar".into()),
            okta_private_key_file: None,
            okta_key_id: None,
            okta_scopes: None,
        }
    }

    #[test]
    fn two_credentials_are_rejected() {
        let args = OktaCredentialArgs {
            okta_api_token_file: Some(PathBuf::from("/run/secrets/okta-api-token")),
            ..oauth_args()
        };
        let error = args.into_credential().expect_err("two credentials");
        assert!(error.to_string().contains("keep only one"), "{error}");
    }

    #[test]
    fn oauth_needs_a_key_file() {
        let error = oauth_args().into_oauth().expect_err("no key file");
        assert!(
            error.to_string().contains("--okta-private-key-file"),
            "{error}"
        );
    }

    #[test]
    fn oauth_loads_a_pem_key() {
        let key = crate::keys::KeyPair::generate(registrar_api::v1::KeyAlgorithm::Es256)
            .expect("generated");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key.pem");
        std::fs::write(&path, key.private_pkcs8_pem().expect("PEM").as_bytes()).expect("written");
        let args = OktaCredentialArgs {
            okta_private_key_file: Some(path),
            ..oauth_args()
        };
        let credential = args.into_oauth().expect("loads");
        assert_eq!(credential.key.kid(), key.kid());
        assert_eq!(credential.scopes.len(), DEFAULT_SCOPES.len());
        let printed = format!("{credential:?}");
        assert!(printed.contains("redacted"), "{printed}");
    }

    /// SIGHUP reads a replaced key file: the source yields the new key.
    #[test]
    fn source_reads_a_replaced_key_file() {
        assert!(
            CredentialSource::of(&oauth_args()).is_none(),
            "no file, nothing to reload"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key.pem");
        let write_key = || {
            let key = crate::keys::KeyPair::generate(registrar_api::v1::KeyAlgorithm::Es256)
                .expect("generated");
            std::fs::write(&path, key.private_pkcs8_pem().expect("PEM").as_bytes())
                .expect("written");
            key.kid().to_string()
        };
        let first = write_key();
        let source = CredentialSource::of(&OktaCredentialArgs {
            okta_private_key_file: Some(path.clone()),
            ..oauth_args()
        })
        .expect("a key file");
        assert_eq!(source.path(), path.as_path());
        let kid = |credential: OktaCredential| match credential {
            OktaCredential::OAuth(oauth) => oauth.key.kid().to_string(),
            OktaCredential::ApiToken(_) => panic!("an OAuth credential"),
        };
        assert_eq!(kid(source.read().expect("reads")), first);
        let second = write_key();
        assert_ne!(first, second);
        assert_eq!(kid(source.read().expect("reads again")), second);

        std::fs::write(&path, "not a key").expect("written");
        let error = source.read().expect_err("a broken file");
        assert!(
            error.to_string().contains("--okta-private-key-file"),
            "{error}"
        );
    }
}
