//! `registrar token`: prints an access token for an app whose key the
//! registrar holds.

use std::io::IsTerminal;

use clap::Args;
use serde_json::json;

use super::connect::CommonArgs;
use super::error::CliError;
use super::output;

/// Options of `registrar token`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  TOKEN=$(registrar token 0oa1b2c3d4e5f6g7h8i9 okta.users.read)
  registrar token 0oa1b2c3d4e5f6g7h8i9 okta.users.read,okta.apps.read --json

This command prints the access token on standard output, because that is
its job; --json output contains it too. Treat the output as a secret: do
not paste it into tickets or logs. Nothing else the CLI prints contains a
token.",
    "\n\n",
    exit_codes_help!()
))]
pub struct TokenArgs {
    /// The app's client id.
    pub client_id: String,
    /// The scopes the token must carry, separated by spaces or commas.
    #[arg(required = true, value_delimiter = ',', value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Ignore the registrar's cached token and get a new one from Okta.
    #[arg(long)]
    pub force_refresh: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Gets the token and prints it.
pub async fn run(args: TokenArgs) -> Result<(), CliError> {
    let scopes: Vec<&str> = args
        .scopes
        .iter()
        .map(|scope| scope.trim())
        .filter(|scope| !scope.is_empty())
        .collect();
    if scopes.is_empty() {
        return Err(CliError::Usage(
            "no scope given; name at least one, such as okta.users.read".into(),
        ));
    }
    let (mut client, target) = args.common.connect().await?;
    let fetched = if args.force_refresh {
        client.refresh_access_token(&args.client_id, &scopes).await
    } else {
        client.access_token(&args.client_id, &scopes).await
    };
    let token = fetched.map_err(|error| target.sdk_error(error))?;

    if args.common.json {
        return output::print_json(&json!({
            "client_id": args.client_id,
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": output::timestamp_json(token.expires_at.as_ref()),
            "scopes": token.scopes,
            "cached": token.cached,
        }));
    }
    outln!("{}", token.access_token)?;
    // People at a terminal see the details, and scripts get the token alone.
    if std::io::stderr().is_terminal() {
        errln!(
            "{} token for {}, expires {}{}",
            token.token_type,
            token.scopes.join(" "),
            output::timestamp(token.expires_at.as_ref()),
            if token.cached { " (cached)" } else { "" }
        );
    }
    Ok(())
}
