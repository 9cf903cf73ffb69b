//! Properties of the request validation functions: they never panic,
//! every error names its field in a short message, and well-formed values
//! pass.

use proptest::prelude::*;
use registrar_server::validate::{self, InvalidArgument};

/// The maximum length of an error, in bytes, so that a huge value never makes
/// a huge `grpc-message` header.
const MAX_MESSAGE_BYTES: usize = 1024;

fn check_error(error: &InvalidArgument, field: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        error.field.starts_with(field),
        "{} is not {field}",
        error.field
    );
    prop_assert!(!error.message.is_empty());
    prop_assert!(error.to_string().len() <= MAX_MESSAGE_BYTES, "{error}");
    Ok(())
}

/// Generates any string, including long ones and ones outside ASCII.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        ".{90,110}",
        "[a-zA-Z0-9._-]{0,300}",
        ".{200,2000}"
    ]
}

/// Generates a scope id in Okta's form, such as `okta.users.read`.
fn scope_id() -> impl Strategy<Value = String> {
    (
        "[a-z][a-zA-Z0-9_-]{0,15}",
        prop::collection::vec("[a-zA-Z0-9_-]{1,15}", 1..4),
    )
        .prop_map(|(first, rest)| format!("{first}.{}", rest.join(".")))
}

proptest! {
    #[test]
    fn client_name_never_panics(name in any_text()) {
        if let Err(error) = validate::client_name(&name) {
            check_error(&error, "client_name")?;
        } else {
            prop_assert!(name.chars().count() <= validate::MAX_CLIENT_NAME_LEN);
        }
    }

    #[test]
    fn client_name_accepts_plain_names(name in "[a-zA-Z0-9][a-zA-Z0-9 ._-]{0,98}[a-zA-Z0-9]") {
        prop_assert_eq!(validate::client_name(&name), Ok(()));
    }

    #[test]
    fn long_client_name_names_sizes(extra in 1usize..500) {
        let name = "n".repeat(validate::MAX_CLIENT_NAME_LEN + extra);
        let error = validate::client_name(&name).expect_err("too long");
        prop_assert_eq!(error.field.as_str(), "client_name");
        let length = name.len().to_string();
        prop_assert!(error.message.contains(&length), "{}", error.message);
        prop_assert!(error.message.contains("at most 100"), "{}", error.message);
    }

    #[test]
    fn name_prefix_never_panics(prefix in any_text()) {
        if let Err(error) = validate::name_prefix(&prefix) {
            check_error(&error, "name_prefix")?;
        }
    }

    #[test]
    fn client_id_never_panics(id in any_text()) {
        match validate::client_id(&id) {
            Ok(()) => {
                prop_assert!(!id.is_empty() && id.len() <= validate::MAX_CLIENT_ID_LEN);
                prop_assert!(id.bytes().all(|byte| byte.is_ascii_alphanumeric()));
            }
            Err(error) => check_error(&error, "client_id")?,
        }
    }

    #[test]
    fn client_id_accepts_okta_ids(id in "[a-zA-Z0-9]{1,100}") {
        prop_assert_eq!(validate::client_id(&id), Ok(()));
    }

    #[test]
    fn long_client_id_names_sizes(length in 101usize..3000) {
        let error = validate::client_id(&"a".repeat(length)).expect_err("too long");
        prop_assert_eq!(error.field.as_str(), "client_id");
        prop_assert!(error.message.contains(&format!("is {length} characters")), "{}", error.message);
        prop_assert!(error.message.contains("at most 100"), "{}", error.message);
    }

    #[test]
    fn scope_ids_never_panic(
        ids in prop::collection::vec(prop_oneof![scope_id(), ".{0,30}", "[a-z.]{95,110}"], 0..60),
    ) {
        match validate::scope_ids(&ids) {
            Ok(unique) => {
                prop_assert!(!unique.is_empty() && unique.len() <= validate::MAX_SCOPES);
                prop_assert!(unique.iter().all(|id| ids.contains(id)));
            }
            Err(error) => check_error(&error, "scope_ids")?,
        }
    }

    #[test]
    fn scope_ids_accept_okta_ids(ids in prop::collection::vec(scope_id(), 1..=50)) {
        let unique = validate::scope_ids(&ids).expect("well-formed scope ids");
        // Duplicates go, and the first occurrence keeps its place.
        let mut expected: Vec<String> = Vec::new();
        for id in &ids {
            if !expected.contains(id) {
                expected.push(id.clone());
            }
        }
        prop_assert_eq!(unique, expected);
    }

    #[test]
    fn too_many_scopes_names_sizes(count in 51usize..200) {
        let ids = vec!["okta.users.read".to_string(); count];
        let error = validate::scope_ids(&ids).expect_err("too many");
        prop_assert_eq!(error.field.as_str(), "scope_ids");
        prop_assert!(error.message.contains(&format!("has {count} entries")), "{}", error.message);
        prop_assert!(error.message.contains("at most 50"), "{}", error.message);
    }

    #[test]
    fn long_scope_id_names_sizes(length in 101usize..1000) {
        let id = format!("okta.{}", "a".repeat(length - 5));
        let error = validate::scope_ids(&[id]).expect_err("too long");
        prop_assert_eq!(error.field.as_str(), "scope_ids[0]");
        prop_assert!(error.message.contains(&format!("is {length} characters")), "{}", error.message);
        prop_assert!(error.message.contains("at most 100"), "{}", error.message);
    }

    #[test]
    fn kid_never_panics(kid in any_text()) {
        match validate::kid("kid", &kid) {
            Ok(()) => prop_assert!(kid.chars().count() <= validate::MAX_KID_LEN),
            Err(error) => check_error(&error, "kid")?,
        }
    }

    #[test]
    fn http_method_never_panics(method in any_text()) {
        if let Err(error) = validate::http_method(&method) {
            check_error(&error, "http_method")?;
        }
    }

    #[test]
    fn http_method_accepts_tokens(method in "[A-Z][A-Z0-9_-]{0,31}") {
        prop_assert_eq!(validate::http_method(&method), Ok(method.as_str()));
    }

    #[test]
    fn proof_url_never_panics(url in any_text()) {
        match validate::proof_url(&url) {
            Ok(htu) => {
                prop_assert!(htu.starts_with("http://") || htu.starts_with("https://"), "{htu}");
                prop_assert!(!htu.contains('?') && !htu.contains('#'), "{htu}");
            }
            Err(error) => check_error(&error, "http_url")?,
        }
    }

    #[test]
    fn proof_url_drops_query_and_fragment(
        host in "[a-z]{1,10}\\.example",
        path in "(/[a-z0-9]{1,8}){0,4}",
        query in "[a-z0-9=&]{0,20}",
        fragment in "[a-z0-9]{0,10}",
    ) {
        let input = format!("https://{host}{path}?{query}#{fragment}");
        let expected = if path.is_empty() { format!("https://{host}/") } else { format!("https://{host}{path}") };
        prop_assert_eq!(validate::proof_url(&input), Ok(expected));
    }

    #[test]
    fn long_proof_url_names_sizes(extra in 1usize..5000) {
        let url = format!("https://api.example/{}", "a".repeat(validate::MAX_PROOF_URL_LEN + extra));
        let error = validate::proof_url(&url).expect_err("too long");
        prop_assert_eq!(error.field.as_str(), "http_url");
        prop_assert!(error.message.contains(&url.len().to_string()), "{}", error.message);
        prop_assert!(error.message.contains("8192"), "{}", error.message);
    }

    #[test]
    fn truncate_keeps_a_prefix(value in any_text(), max in 0usize..100) {
        let short = validate::truncate(&value, max);
        let kept = short.strip_suffix('…').unwrap_or(&short);
        prop_assert!(value.starts_with(kept));
        prop_assert!(kept.chars().count() <= max);
    }
}
