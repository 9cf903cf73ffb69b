//! Parsing and validation of the policy file. Every error names the line,
//! the caller, the key and the fix.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use serde::Deserialize;
use toml::Spanned;

use super::{CallerRights, Operation, Policy, ScopePattern};

/// The maximum length of a caller id, in bytes. Certificate URI SANs and
/// subject CNs are far shorter in practice.
const MAX_CALLER_ID_LENGTH: usize = 1024;

/// The file as written, with the position of each value for messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    caller: Vec<RawCaller>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    id: Spanned<String>,
    #[serde(default)]
    operations: Vec<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    client_name_prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    deliver_private_keys: Option<Spanned<bool>>,
    #[serde(default)]
    admin: bool,
}

/// Parses and validates the text of a policy file.
pub(super) fn parse(text: &str) -> anyhow::Result<Policy> {
    let file: PolicyFile = toml::from_str(text).map_err(|err| {
        match err.span().map(|span| line_of(text, span.start)) {
            Some(line) => anyhow::anyhow!("line {line}: {}", err.message().trim_end()),
            None => anyhow::anyhow!("{}", err.message().trim_end()),
        }
    })?;
    if file.caller.is_empty() {
        bail!(
            "no [[caller]] entries, so the policy would deny every call; add one [[caller]] with an id and its operations per caller"
        );
    }

    let mut callers = HashMap::with_capacity(file.caller.len());
    let mut lines: HashMap<String, usize> = HashMap::new();
    for raw in file.caller {
        let line = line_of(text, raw.id.span().start);
        let id = raw.id.get_ref().clone();
        check_caller_id(&id).with_context(|| format!("line {line}: id"))?;
        if let Some(first) = lines.insert(id.clone(), line) {
            bail!(
                "line {line}: caller {id:?} is listed twice (first at line {first}); merge its rights into one [[caller]] entry"
            );
        }
        let rights = caller_rights(text, &id, raw)?;
        callers.insert(id, rights);
    }
    Ok(Policy {
        callers,
        allow_all: false,
    })
}

/// Validates one `[[caller]]` entry.
fn caller_rights(text: &str, id: &str, raw: RawCaller) -> anyhow::Result<CallerRights> {
    let mut operations = HashSet::new();
    for name in &raw.operations {
        let line = line_of(text, name.span().start);
        if name.get_ref() == "*" {
            operations.extend(Operation::ALL);
            continue;
        }
        let operation = Operation::parse(name.get_ref()).with_context(|| {
            format!(
                "line {line}: caller {id:?}: operations: {:?} is not an operation; use {}, or \"*\" for all",
                name.get_ref(),
                Operation::names()
            )
        })?;
        operations.insert(operation);
    }

    let mut scopes = Vec::with_capacity(raw.scopes.len());
    for pattern in &raw.scopes {
        let line = line_of(text, pattern.span().start);
        let parsed = ScopePattern::parse(pattern.get_ref())
            .map_err(|err| anyhow::anyhow!("line {line}: caller {id:?}: scopes: {err}"))?;
        scopes.push(parsed);
    }

    let mut client_name_prefixes = Vec::with_capacity(raw.client_name_prefixes.len());
    for prefix in &raw.client_name_prefixes {
        let line = line_of(text, prefix.span().start);
        if prefix.get_ref().chars().any(char::is_control) {
            bail!(
                "line {line}: caller {id:?}: client_name_prefixes: {:?} contains a control character, which no client name may contain; remove it",
                prefix.get_ref()
            );
        }
        client_name_prefixes.push(prefix.get_ref().clone());
    }

    let deliver_private_keys = match &raw.deliver_private_keys {
        Some(deliver) if *deliver.get_ref() && !operations.contains(&Operation::Watch) => {
            let line = line_of(text, deliver.span().start);
            bail!(
                "line {line}: caller {id:?}: deliver_private_keys is true, but keys are delivered only on WatchRotations; add \"watch\" to operations, or remove deliver_private_keys"
            );
        }
        Some(deliver) => *deliver.get_ref(),
        None => false,
    };

    Ok(CallerRights {
        operations,
        scopes,
        client_name_prefixes,
        deliver_private_keys,
        admin: raw.admin,
    })
}

/// Checks a caller id: the `name` of a bearer token entry, or the URI SAN
/// or subject CN of a client certificate.
fn check_caller_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() {
        bail!(
            "is empty; use the caller's bearer token name or its client certificate's spiffe:// URI or CN"
        );
    }
    if id.len() > MAX_CALLER_ID_LENGTH {
        bail!("has {} bytes; use at most {MAX_CALLER_ID_LENGTH}", id.len());
    }
    if id.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        bail!(
            "{id:?} contains whitespace or a control character, which no caller id contains; remove it"
        );
    }
    Ok(())
}

/// Returns the 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("invalid policy"))
    }

    #[test]
    fn full_entry_parses() {
        let policy = parse(
            r#"
[[caller]]
id = "billing"
operations = ["create", "grant", "watch", "read"]
scopes = ["okta.users.*", "okta.apps.read"]
client_name_prefixes = ["billing-"]
deliver_private_keys = true

[[caller]]
id = "spiffe://example.org/ns/ops/sa/admin"
operations = ["*"]
scopes = ["*"]
client_name_prefixes = [""]
admin = true
"#,
        )
        .expect("valid policy");
        let billing = policy.rights("billing").expect("billing listed");
        assert!(billing.operations.contains(&Operation::Grant));
        assert!(!billing.operations.contains(&Operation::Delete));
        assert_eq!(billing.scopes.len(), 2);
        assert!(billing.deliver_private_keys);
        assert!(!billing.admin);
        let admin = policy
            .rights("spiffe://example.org/ns/ops/sa/admin")
            .expect("admin listed");
        assert_eq!(admin.operations.len(), Operation::ALL.len());
        assert!(admin.admin);
        assert!(policy.rights("reports").is_none());
    }

    #[test]
    fn unknown_operation_names_key_and_choices() {
        let message = error_of("[[caller]]\nid = \"billing\"\noperations = [\"grnat\"]\n");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("\"billing\""), "{message}");
        assert!(message.contains("operations"), "{message}");
        assert!(message.contains("\"grnat\""), "{message}");
        assert!(message.contains("grant"), "{message}");
    }

    #[test]
    fn bad_scope_pattern_names_key() {
        let message = error_of(
            "[[caller]]\nid = \"billing\"\noperations = [\"grant\"]\nscopes = [\"okta.users*\"]\n",
        );
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("scopes"), "{message}");
        assert!(message.contains("okta.users.*"), "{message}");
    }

    #[test]
    fn unknown_key_names_it() {
        let message = error_of("[[caller]]\nid = \"billing\"\nscope = [\"okta.users.read\"]\n");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("scope"), "{message}");
        assert!(message.contains("scopes"), "{message}");
    }

    #[test]
    fn wrong_type_names_line() {
        let message = error_of("[[caller]]\nid = \"billing\"\nadmin = \"yes\"\n");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn repeated_caller_names_both_lines() {
        let message = error_of("[[caller]]\nid = \"billing\"\n\n[[caller]]\nid = \"billing\"\n");
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn missing_id_is_named() {
        let message = error_of("[[caller]]\noperations = [\"read\"]\n");
        assert!(message.contains("id"), "{message}");
    }

    #[test]
    fn empty_id_is_rejected() {
        let message = error_of("[[caller]]\nid = \"\"\n");
        assert!(message.contains("line 2: id"), "{message}");
    }

    #[test]
    fn empty_policy_is_rejected() {
        let message = error_of("# nothing yet\n");
        assert!(message.contains("[[caller]]"), "{message}");
    }

    #[test]
    fn key_delivery_needs_watch() {
        let message = error_of(
            "[[caller]]\nid = \"billing\"\noperations = [\"read\"]\ndeliver_private_keys = true\n",
        );
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("deliver_private_keys"), "{message}");
        assert!(message.contains("\"watch\""), "{message}");
    }

    #[test]
    fn control_character_in_prefix_is_rejected() {
        let message =
            error_of("[[caller]]\nid = \"billing\"\nclient_name_prefixes = [\"bill\\u0000\"]\n");
        assert!(message.contains("client_name_prefixes"), "{message}");
    }
}
