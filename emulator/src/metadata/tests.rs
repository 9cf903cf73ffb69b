use serde_json::json;

use super::*;

const N_2048: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

fn strings(values: &[&str]) -> Option<Vec<String>> {
    Some(values.iter().map(|value| (*value).to_owned()).collect())
}

fn service_settings() -> OAuthSettings {
    OAuthSettings {
        application_type: Some("service".into()),
        grant_types: strings(&["client_credentials"]),
        response_types: strings(&["token"]),
        token_endpoint_auth_method: Some("private_key_jwt".into()),
        jwks_keys: Some(vec![
            json!({ "kty": "RSA", "kid": "k1", "e": "AQAB", "n": N_2048 }),
        ]),
        ..OAuthSettings::default()
    }
}

fn messages(settings: OAuthSettings) -> Vec<String> {
    validate(settings, "REQUIRED")
        .expect_err("the settings are invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn service_client_is_valid() {
    let (client, keys) = validate(service_settings(), "REQUIRED").expect("valid settings");
    assert_eq!(client.application_type, "service");
    assert_eq!(client.consent_method, "REQUIRED");
    assert_eq!(client.client_secret, None);
    assert!(!client.dpop_bound_access_tokens);
    assert_eq!(keys.len(), 1);
}

#[test]
fn service_defaults_to_client_credentials() {
    let settings = OAuthSettings {
        grant_types: None,
        response_types: None,
        ..service_settings()
    };
    let (client, _) = validate(settings, "REQUIRED").expect("valid settings");
    assert_eq!(client.grant_types, ["client_credentials"]);
    assert_eq!(client.response_types, ["token"]);
}

#[test]
fn secret_methods_get_a_secret() {
    let settings = OAuthSettings {
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        jwks_keys: None,
        ..service_settings()
    };
    let (client, keys) = validate(settings, "REQUIRED").expect("valid settings");
    assert_eq!(client.client_secret.map(|secret| secret.len()), Some(40));
    assert!(keys.is_empty());
}

#[test]
fn service_without_client_credentials() {
    let settings = OAuthSettings {
        grant_types: strings(&["authorization_code"]),
        ..service_settings()
    };
    assert_eq!(
        messages(settings),
        [
            "'grant_types' must contain 'client_credentials' when 'application_type' is 'service'.",
            "'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'.",
        ]
    );
}

#[test]
fn service_with_extra_grant() {
    let settings = OAuthSettings {
        grant_types: strings(&["client_credentials", "refresh_token"]),
        ..service_settings()
    };
    assert_eq!(
        messages(settings),
        [
            "'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'."
        ]
    );
}

#[test]
fn web_token_without_implicit_matches_okta_text() {
    let settings = OAuthSettings {
        application_type: Some("web".into()),
        grant_types: strings(&["client_credentials"]),
        response_types: strings(&["token"]),
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        ..OAuthSettings::default()
    };
    assert_eq!(
        messages(settings),
        [
            "'grant_types' must contain 'implicit' when 'response_types' contains 'token'.",
            "'grant_types' must contain 'authorization_code' when 'application_type' is 'web'.",
        ]
    );
}

#[test]
fn browser_rejects_password_grant() {
    let settings = OAuthSettings {
        application_type: Some("browser".into()),
        grant_types: strings(&["authorization_code", "password"]),
        response_types: strings(&["code"]),
        token_endpoint_auth_method: Some("none".into()),
        ..OAuthSettings::default()
    };
    assert_eq!(
        messages(settings),
        ["'grant_types' can't contain 'password' when 'application_type' is 'browser'."]
    );
}

#[test]
fn unknown_values_are_named() {
    let settings = OAuthSettings {
        application_type: Some("daemon".into()),
        grant_types: strings(&["magic"]),
        response_types: strings(&["blob"]),
        token_endpoint_auth_method: Some("mtls".into()),
        jwks_keys: None,
        ..OAuthSettings::default()
    };
    assert_eq!(
        messages(settings),
        [
            "'application_type' must be 'browser', 'native', 'service' or 'web', not 'daemon'.",
            "'grant_types' contains the unknown grant type 'magic'.",
            "'response_types' contains the unknown response type 'blob'.",
            "'token_endpoint_auth_method' must be 'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'none' or 'private_key_jwt', not 'mtls'.",
        ]
    );
}

#[test]
fn private_key_jwt_needs_keys() {
    for keys in [None, Some(Vec::new())] {
        let settings = OAuthSettings {
            jwks_keys: keys,
            ..service_settings()
        };
        assert_eq!(
            messages(settings),
            [
                "'jwks' or 'jwks_uri' is required when 'token_endpoint_auth_method' is 'private_key_jwt'."
            ]
        );
    }
}

#[test]
fn jwks_uri_replaces_keys() {
    let settings = OAuthSettings {
        jwks_keys: None,
        jwks_uri: Some("https://keys.example.com/jwks.json".into()),
        ..service_settings()
    };
    let (client, keys) = validate(settings, "REQUIRED").expect("valid settings");
    assert_eq!(
        client.jwks_uri.as_deref(),
        Some("https://keys.example.com/jwks.json")
    );
    assert!(keys.is_empty());
}

#[test]
fn jwks_and_jwks_uri_together() {
    let settings = OAuthSettings {
        jwks_uri: Some("https://keys.example.com/jwks.json".into()),
        ..service_settings()
    };
    assert_eq!(
        messages(settings),
        ["'jwks' and 'jwks_uri' can't both be set. Send only one of them."]
    );
}

#[test]
fn relative_jwks_uri() {
    let settings = OAuthSettings {
        jwks_keys: None,
        jwks_uri: Some("/jwks.json".into()),
        ..service_settings()
    };
    assert_eq!(
        messages(settings),
        ["'jwks_uri' must be an absolute http or https URL, not '/jwks.json'."]
    );
}

#[test]
fn key_problem_follows_metadata_problems() {
    let settings = OAuthSettings {
        grant_types: strings(&["password", "client_credentials"]),
        jwks_keys: Some(vec![json!({ "kty": "RSA", "e": "AQAB", "n": "AQAB" })]),
        ..service_settings()
    };
    let violations = validate(settings, "REQUIRED").expect_err("invalid settings");
    assert_eq!(violations.len(), 2);
    assert_eq!(violations[1], Violation::Jwk(JwkError::RsaKeyTooShort));
}

#[test]
fn quoted_list_joins_with_or() {
    assert_eq!(quoted_list(&["a"]), "'a'");
    assert_eq!(quoted_list(&["a", "b", "c"]), "'a', 'b' or 'c'");
}
