//! `registrar grant` and `registrar revoke`: change an app's scope grants
//! and show the outcome of each scope.

use clap::Args;
use registrar_api::v1::{ScopeOutcome, ScopeResult};
use registrar_sdk::Client;
use serde_json::{Value, json};

use super::connect::CommonArgs;
use super::error::{CliError, Target};
use super::output;

/// The number of scope ids sent in one call. The registrar accepts up to
/// 50, but every scope may cost a paced Okta request, so smaller batches
/// keep each call within --timeout-secs and show progress more often.
const SCOPES_PER_CALL: usize = 10;

/// Options of `registrar grant` and `registrar revoke`.
#[derive(Debug, Args)]
#[command(after_long_help = concat!("\
Examples:
  registrar grant 0oa1b2c3d4e5f6g7h8i9 okta.users.read okta.apps.read
  registrar revoke 0oa1b2c3d4e5f6g7h8i9 okta.apps.read --json

Scopes may be separated by spaces or commas. Lists of more than 10 scopes
are sent in batches of 10, with progress on standard error. The exit code
is 6 when some scopes failed and the others succeeded.",
    "\n\n",
    exit_codes_help!()
))]
pub struct ScopesArgs {
    /// The app's client id.
    pub client_id: String,
    /// The Okta scope ids, such as okta.users.read.
    #[arg(required = true, value_delimiter = ',', value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Whether scopes are granted or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// GrantScopes.
    Grant,
    /// RevokeScopes.
    Revoke,
}

/// Grants or revokes the scopes and prints one result per scope.
pub async fn run(args: ScopesArgs, change: Change) -> Result<(), CliError> {
    let scopes = distinct_scopes(&args.scopes)?;
    let (mut client, target) = args.common.connect().await?;

    let mut results = Vec::with_capacity(scopes.len());
    let batches: Vec<&[String]> = scopes.chunks(SCOPES_PER_CALL).collect();
    for (index, batch) in batches.iter().enumerate() {
        if batches.len() > 1 {
            let first = index * SCOPES_PER_CALL + 1;
            errln!(
                "{} scopes {first}-{} of {}",
                verb(change),
                first + batch.len() - 1,
                scopes.len()
            );
        }
        match send(&mut client, &target, &args.client_id, batch, change).await {
            Ok(batch_results) => results.extend(batch_results),
            Err(error) if results.is_empty() => return Err(error),
            Err(error) => {
                // Earlier batches took effect: show them before failing.
                // A closed standard output must not hide the failure.
                output::unless_closed(print_results(&args.client_id, &results, args.common.json))?;
                return Err(error);
            }
        }
    }

    let printed = print_results(&args.client_id, &results, args.common.json);
    let failed = results
        .iter()
        .filter(|result| result.outcome == ScopeOutcome::Failed as i32)
        .count();
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} of {} scopes failed; see the error of each failed scope above",
            results.len()
        )));
    }
    printed
}

async fn send(
    client: &mut Client,
    target: &Target,
    client_id: &str,
    batch: &[String],
    change: Change,
) -> Result<Vec<ScopeResult>, CliError> {
    let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
    let sent = match change {
        Change::Grant => client.grant_scopes(client_id, &batch).await,
        Change::Revoke => client.revoke_scopes(client_id, &batch).await,
    };
    sent.map_err(|error| target.sdk_error(error))
}

fn verb(change: Change) -> &'static str {
    match change {
        Change::Grant => "granting",
        Change::Revoke => "revoking",
    }
}

/// Trims the scope ids and drops empty and repeated ones, keeping the
/// order.
fn distinct_scopes(scopes: &[String]) -> Result<Vec<String>, CliError> {
    let mut distinct: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes.iter().map(|scope| scope.trim()) {
        if !scope.is_empty() && !distinct.iter().any(|seen| seen == scope) {
            distinct.push(scope.to_string());
        }
    }
    if distinct.is_empty() {
        return Err(CliError::Usage(
            "no scope ids given; name at least one, such as okta.users.read".into(),
        ));
    }
    Ok(distinct)
}

fn print_results(client_id: &str, results: &[ScopeResult], json: bool) -> Result<(), CliError> {
    if json {
        let results: Vec<Value> = results.iter().map(output::scope_result_json).collect();
        return output::print_json(&json!({ "client_id": client_id, "results": results }));
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|result| {
            vec![
                result.scope_id.clone(),
                output::outcome(result.outcome).into(),
                result.grant_id.clone(),
                result.error.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        output::table(&["SCOPE", "OUTCOME", "GRANT_ID", "ERROR"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_scopes_keeps_order() {
        let scopes: Vec<String> = ["b", " a ", "", "b", "c"].map(String::from).into();
        assert_eq!(
            distinct_scopes(&scopes).expect("scopes"),
            vec!["b".to_string(), "a".into(), "c".into()]
        );
    }

    #[test]
    fn only_empty_scopes_is_usage_error() {
        let scopes = vec![String::new(), " ".to_string()];
        let error = distinct_scopes(&scopes).expect_err("no scopes");
        assert!(matches!(error, CliError::Usage(_)), "{error:?}");
    }
}
