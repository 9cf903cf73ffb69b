//! Okta response bodies decoded into the registrar's models, as the Okta
//! client does: whole objects for single resources, and lists item by item
//! so that one odd item never fails a page.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar_server::jwk;
use registrar_server::okta::model::{App, JwkSet, RegisteredClient, ScopeGrant, TokenResponse};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(client) = serde_json::from_slice::<RegisteredClient>(data) {
        for key in client.jwks.iter().flat_map(|jwks| &jwks.keys) {
            jwk::from_okta_json(key);
        }
    }
    if let Ok(app) = serde_json::from_slice::<App>(data) {
        read_app(&app);
    }
    if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
        for key in &set.keys {
            jwk::from_okta_json(key);
        }
    }
    if let Ok(token) = serde_json::from_slice::<TokenResponse>(data) {
        check_token_debug(&token);
    }
    if let Ok(items) = serde_json::from_slice::<Vec<Value>>(data) {
        for item in items {
            if let Ok(app) = serde_json::from_value::<App>(item.clone()) {
                read_app(&app);
            }
            let _ = serde_json::from_value::<ScopeGrant>(item);
        }
    }
});

fn read_app(app: &App) {
    app.is_service_app();
    for key in app.keys() {
        jwk::from_okta_json(key);
    }
}

/// Asserts that the access token never shows in `Debug` output. Tokens shorter than 12
/// characters are skipped, and so are tokens that occur in the output
/// without them (a token equal to a field name, say).
fn check_token_debug(token: &TokenResponse) {
    let secret = token.access_token.as_str();
    let without_token = TokenResponse {
        access_token: String::new(),
        ..token.clone()
    };
    if secret.chars().count() < 12 || format!("{without_token:?}").contains(secret) {
        return;
    }
    let debug = format!("{token:?}");
    assert!(
        !debug.contains(secret),
        "Debug output shows the access token"
    );
}
