//! `registrar create`, `registrar apps` and `registrar grants`: create a
//! service app and list apps and grants.

use std::path::{Path, PathBuf};

use clap::Args;
use registrar_api::v1::{Jwk, Jwks};
use serde_json::{Value, json};

use super::Algorithm;
use super::connect::CommonArgs;
use super::error::CliError;
use super::output;

/// The JWK members that only a private key has.
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// Options of `registrar create`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("key_source").required(true).args(["jwks", "generate_key"])
))]
#[command(after_long_help = concat!("\
Examples:
  registrar keygen --out billing-key.pem > billing-jwks.json
  registrar create billing-worker --jwks billing-jwks.json
  registrar create billing-worker --generate-key --algorithm es256 --json

--jwks takes a JWKS ({\"keys\": [...]}) or an Okta registration request with a
\"jwks\" member; private key members are rejected before anything is sent.",
    "\n\n",
    exit_codes_help!()
))]
pub struct CreateArgs {
    /// The app's name in Okta (1 to 100 characters).
    pub name: String,
    /// A JWKS file with the public keys the app signs its client
    /// assertions with, such as the output of `registrar keygen`.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// Let the registrar generate the key pair and keep the private key, so
    /// that it signs the app's assertions and gets its tokens.
    #[arg(long)]
    pub generate_key: bool,
    /// The algorithm of the key that --generate-key makes.
    #[arg(long, value_enum, default_value_t = Algorithm::Rs2562048)]
    pub algorithm: Algorithm,
    /// Make the app's access tokens DPoP-bound (RFC 9449). Needs
    /// --generate-key, because the registrar requests the tokens of a
    /// DPoP-bound app.
    // `requires = "generate_key"` does not fire for a flag with a default
    // value, and one key source is required, so this rules out --jwks.
    #[arg(long, conflicts_with = "jwks")]
    pub dpop_bound: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `registrar apps`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar apps
  registrar apps --prefix billing- --json

Lists every page of the org's service apps.",
    "\n\n",
    exit_codes_help!()
))]
pub struct AppsArgs {
    /// List only apps whose name starts with this prefix (Okta's search,
    /// which also matches other name fields).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `registrar grants`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar grants 0oa1b2c3d4e5f6g7h8i9
  registrar grants 0oa1b2c3d4e5f6g7h8i9 --json",
    "\n\n",
    exit_codes_help!()
))]
pub struct GrantsArgs {
    /// The app's client id.
    pub client_id: String,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Creates the app and prints it.
pub async fn create(args: CreateArgs) -> Result<(), CliError> {
    let jwks = args.jwks.as_deref().map(read_jwks).transpose()?;
    let (mut client, target) = args.common.connect().await?;
    let created = match jwks {
        Some(jwks) => client.create_service_app(&args.name, jwks).await,
        None => {
            client
                .create_service_app_with_generated_key(
                    &args.name,
                    args.algorithm.to_proto(),
                    args.dpop_bound,
                )
                .await
        }
    };
    let app = created.map_err(|error| target.sdk_error(error))?;
    if args.common.json {
        return output::print_json(&output::app_json(&app));
    }
    outln!("created service app {:?}", app.client_name)?;
    out!("{}", output::app_details(&app))
}

/// Lists the apps, all pages.
pub async fn apps(args: AppsArgs) -> Result<(), CliError> {
    let (mut client, target) = args.common.connect().await?;
    let apps = client
        .list_service_apps(&args.prefix)
        .await
        .map_err(|error| target.sdk_error(error))?;
    if args.common.json {
        let apps: Vec<Value> = apps.iter().map(output::app_json).collect();
        return output::print_json(&json!({ "apps": apps }));
    }
    if apps.is_empty() {
        return outln!("no service apps");
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            vec![
                app.client_id.clone(),
                app.client_name.clone(),
                output::app_status(app.status).into(),
                app.keys.len().to_string(),
                output::timestamp(app.client_id_issued_at.as_ref()),
            ]
        })
        .collect();
    out!(
        "{}",
        output::table(&["CLIENT_ID", "NAME", "STATUS", "KEYS", "CREATED"], &rows)
    )
}

/// Lists an app's grants.
pub async fn grants(args: GrantsArgs) -> Result<(), CliError> {
    let (mut client, target) = args.common.connect().await?;
    let grants = client
        .list_grants(&args.client_id)
        .await
        .map_err(|error| target.sdk_error(error))?;
    if args.common.json {
        let grants: Vec<Value> = grants.iter().map(output::grant_json).collect();
        return output::print_json(&json!({ "client_id": args.client_id, "grants": grants }));
    }
    if grants.is_empty() {
        return outln!("{} holds no grants", args.client_id);
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|grant| {
            vec![
                grant.scope_id.clone(),
                grant.grant_id.clone(),
                output::timestamp(grant.created.as_ref()),
                grant.issuer.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        output::table(&["SCOPE", "GRANT_ID", "CREATED", "ISSUER"], &rows)
    )
}

/// Reads a JWKS file and checks it as the registrar would, so that a bad
/// file fails before anything is sent.
fn read_jwks(path: &Path) -> Result<Jwks, CliError> {
    let invalid = |detail: String| CliError::Usage(format!("--jwks {}: {detail}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::Usage(format!("--jwks: cannot read {}: {error}", path.display()))
    })?;
    let document: Value =
        serde_json::from_str(&text).map_err(|error| invalid(format!("not valid JSON: {error}")))?;
    let keys = document
        .get("keys")
        .or_else(|| document.get("jwks").and_then(|jwks| jwks.get("keys")))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            invalid("no \"keys\" array; expected a JWKS such as `registrar keygen` prints".into())
        })?;

    let mut jwks = Jwks::default();
    for (index, key) in keys.iter().enumerate() {
        if let Some(member) = PRIVATE_MEMBERS
            .iter()
            .find(|member| key.get(**member).is_some())
        {
            return Err(invalid(format!(
                "key {index} has the private member {member:?}; register only public keys, such as the JWKS that `registrar keygen` prints"
            )));
        }
        jwks.keys.push(jwk_from_json(key));
    }
    crate::jwk::validate_jwks("jwks", &jwks).map_err(|error| invalid(error.to_string()))?;
    Ok(jwks)
}

fn jwk_from_json(key: &Value) -> Jwk {
    let member = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Jwk {
        kty: member("kty"),
        kid: member("kid"),
        r#use: member("use"),
        alg: member("alg"),
        n: member("n"),
        e: member("e"),
        crv: member("crv"),
        x: member("x"),
        y: member("y"),
        ..Jwk::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("jwks.json");
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn private_members_are_rejected() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = write(
            dir.path(),
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret"}]}"#,
        );
        let error = read_jwks(&path).expect_err("private key");
        let message = error.to_string();
        assert!(message.contains("\"d\""), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn registration_request_is_accepted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sample = include_str!("../../../fixtures/okta-dcr-service-app-request.json");
        let jwks = read_jwks(&write(dir.path(), sample)).expect("valid");
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kid, "O4O");
    }

    #[test]
    fn missing_keys_is_usage_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let error = read_jwks(&write(dir.path(), "{}")).expect_err("no keys");
        assert!(matches!(error, CliError::Usage(_)), "{error:?}");
    }
}
