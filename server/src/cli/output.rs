//! Output of the operator subcommands: aligned tables for people, and JSON
//! built from the API messages for scripts.
//!
//! JSON members use the proto field names, enum values the proto enum
//! names, and timestamps RFC 3339 in UTC. No JSON or table ever contains a
//! private key.

use registrar_api::prost_types::Timestamp;
use registrar_api::v1::{
    AppKeyState, AppStatus, Grant, KeyStatus, PublicKey, RotationPhase, ScopeOutcome, ScopeResult,
    ServiceApp,
};
use serde_json::{Value, json};
use std::fmt;
use std::io::{self, Write};

use super::error::CliError;

/// Writes to standard output and flushes, so that a stream's lines reach a
/// pipe as they happen. A closed pipe gives `CliError::OutputClosed`.
pub fn write(text: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|error| match error.kind() {
            io::ErrorKind::BrokenPipe => CliError::OutputClosed,
            _ => CliError::Local(format!("writing to standard output failed: {error}")),
        })
}

/// Writes to standard error. Errors are ignored: a message that cannot be
/// shown must not turn into a panic or hide the exit code.
pub fn write_err(text: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(text).and_then(|()| stderr.flush());
}

/// Treats a closed standard output as success, for output that precedes a
/// failure whose exit code must not be lost.
pub fn unless_closed(printed: Result<(), CliError>) -> Result<(), CliError> {
    match printed {
        Err(CliError::OutputClosed) => Ok(()),
        other => other,
    }
}

/// Prints one JSON document, indented.
pub fn print_json(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| CliError::Local(format!("cannot format JSON: {error}")))?;
    outln!("{text}")
}

/// Prints one JSON object on one line, for streams.
pub fn print_json_line(value: &Value) -> Result<(), CliError> {
    outln!("{value}")
}

/// Formats rows as columns separated by two spaces, with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(column) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = header.iter().map(ToString::to_string).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let width = widths.get(column).copied().unwrap_or_default();
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Formats a timestamp as RFC 3339 in UTC, or "-" when it is unset.
pub fn timestamp(value: Option<&Timestamp>) -> String {
    timestamp_json(value)
        .as_str()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}

/// Formats a timestamp as an RFC 3339 JSON string, or null when unset.
pub fn timestamp_json(value: Option<&Timestamp>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    time::OffsetDateTime::from_unix_timestamp(value.seconds)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// Returns the first 12 characters of a kid, for lines that list several.
pub fn short_kid(kid: &str) -> String {
    if kid.is_empty() {
        return "-".into();
    }
    let short: String = kid.chars().take(12).collect();
    if short.len() < kid.len() {
        format!("{short}…")
    } else {
        short
    }
}

fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_string()
    }
}

/// Names an app status in a table.
pub fn app_status(status: i32) -> &'static str {
    match AppStatus::try_from(status).unwrap_or_default() {
        AppStatus::Active => "active",
        AppStatus::Inactive => "inactive",
        AppStatus::Unspecified => "unknown",
    }
}

/// Names a key status in a table.
pub fn key_status(status: i32) -> &'static str {
    match KeyStatus::try_from(status).unwrap_or_default() {
        KeyStatus::Active => "active",
        KeyStatus::Inactive => "inactive",
        KeyStatus::Unspecified => "-",
    }
}

/// Names a scope outcome in a table.
pub fn outcome(outcome: i32) -> &'static str {
    match ScopeOutcome::try_from(outcome).unwrap_or_default() {
        ScopeOutcome::Granted => "granted",
        ScopeOutcome::AlreadyGranted => "already granted",
        ScopeOutcome::Revoked => "revoked",
        ScopeOutcome::NotGranted => "not granted",
        ScopeOutcome::Failed => "FAILED",
        ScopeOutcome::Unspecified => "unknown",
    }
}

/// Describes a rotation phase in a line.
pub fn phase(phase: i32) -> &'static str {
    match RotationPhase::try_from(phase).unwrap_or_default() {
        RotationPhase::Unspecified => "no rotation",
        RotationPhase::KeyGenerated => "new key generated",
        RotationPhase::NewKeyAdded => "new key added to Okta",
        RotationPhase::SigningSwitched => "signing switched",
    }
}

/// Formats a service app as labelled lines and a table of its keys.
pub fn app_details(app: &ServiceApp) -> String {
    let mut text = format!(
        "client_id:  {}\nname:       {}\nstatus:     {}\ncreated:    {}\n",
        app.client_id,
        app.client_name,
        app_status(app.status),
        timestamp(app.client_id_issued_at.as_ref()),
    );
    let rows: Vec<Vec<String>> = app
        .keys
        .iter()
        .map(|key| {
            let jwk = key.jwk.clone().unwrap_or_default();
            vec![
                or_dash(&key.kid),
                or_dash(&jwk.kty),
                or_dash(&jwk.alg),
                key_status(key.status).into(),
            ]
        })
        .collect();
    text.push_str("keys:\n");
    for line in table(&["KID", "TYPE", "ALG", "STATUS"], &rows).lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Converts a public key to JSON.
pub fn key_json(key: &PublicKey) -> Value {
    let jwk = key
        .jwk
        .as_ref()
        .map_or(Value::Null, crate::jwk::to_okta_json);
    json!({
        "kid": key.kid,
        "thumbprint": key.thumbprint,
        "status": KeyStatus::try_from(key.status).unwrap_or_default().as_str_name(),
        "okta_key_id": key.okta_key_id,
        "jwk": jwk,
    })
}

/// Converts a service app to JSON.
pub fn app_json(app: &ServiceApp) -> Value {
    json!({
        "client_id": app.client_id,
        "client_name": app.client_name,
        "status": AppStatus::try_from(app.status).unwrap_or_default().as_str_name(),
        "client_id_issued_at": timestamp_json(app.client_id_issued_at.as_ref()),
        "keys": app.keys.iter().map(key_json).collect::<Vec<_>>(),
    })
}

/// Converts a grant to JSON.
pub fn grant_json(grant: &Grant) -> Value {
    json!({
        "grant_id": grant.grant_id,
        "scope_id": grant.scope_id,
        "issuer": grant.issuer,
        "created": timestamp_json(grant.created.as_ref()),
    })
}

/// Converts one scope's result to JSON.
pub fn scope_result_json(result: &ScopeResult) -> Value {
    json!({
        "scope_id": result.scope_id,
        "outcome": ScopeOutcome::try_from(result.outcome).unwrap_or_default().as_str_name(),
        "grant_id": result.grant_id,
        "error": result.error,
    })
}

/// Converts an app's key state to JSON. A delivered private key is left
/// out, because the operator CLI never requests one.
pub fn key_state_json(state: &AppKeyState) -> Value {
    json!({
        "client_id": state.client_id,
        "revision": state.revision,
        "phase": RotationPhase::try_from(state.phase).unwrap_or_default().as_str_name(),
        "signing_kid": state.signing_kid,
        "next_step_at": timestamp_json(state.next_step_at.as_ref()),
        "next_rotation": timestamp_json(state.next_rotation.as_ref()),
        "token_endpoint": state.token_endpoint,
        "keys": state.keys.iter().map(key_json).collect::<Vec<_>>(),
    })
}

/// Formats an app's key state as one line: phase, signing kid, the keys in
/// Okta and when the next step is due.
pub fn key_state_line(state: &AppKeyState) -> String {
    let keys: Vec<String> = state
        .keys
        .iter()
        .map(|key| format!("{} ({})", short_kid(&key.kid), key_status(key.status)))
        .collect();
    let mut line = format!(
        "{}  revision {}  {}  signing {}  keys {}",
        state.client_id,
        state.revision,
        phase(state.phase),
        short_kid(&state.signing_kid),
        keys.join(", ")
    );
    if state.next_step_at.is_some() {
        line.push_str("  next step ");
        line.push_str(&timestamp(state.next_step_at.as_ref()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["okta.users.read".to_string(), "granted".to_string()],
            vec!["a".to_string(), "FAILED".to_string()],
        ];
        let text = table(&["SCOPE", "OUTCOME"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SCOPE            OUTCOME");
        assert_eq!(lines[1], "okta.users.read  granted");
        assert_eq!(lines[2], "a                FAILED");
    }

    #[test]
    fn timestamp_is_rfc3339() {
        let value = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(timestamp(Some(&value)), "2023-11-14T22:13:20Z");
        assert_eq!(timestamp(None), "-");
    }

    #[test]
    fn short_kid_marks_cut() {
        assert_eq!(short_kid("abc"), "abc");
        assert_eq!(short_kid("0123456789abcdef"), "0123456789ab…");
        assert_eq!(short_kid(""), "-");
    }
}
