//! JSON renderings of an app: the Apps API application object and the
//! Dynamic Client Registration client object.
//!
//! The application object follows responses Okta's Terraform provider
//! recorded against a real org in 2026, trimmed to the fields a client of
//! OIDC service apps reads.

use serde_json::{Map, Value, json};

use crate::state::App;
use crate::timestamps::iso_millis;

/// Renders an app as `GET /api/v1/apps/{id}` returns it.
pub(crate) fn application(app: &App, org_url: &str) -> Value {
    let client = &app.client;
    let app_url = format!("{org_url}/api/v1/apps/{}", app.id);

    let mut oauth_settings = json!({
        "client_uri": client.client_uri,
        "logo_uri": client.logo_uri,
        "redirect_uris": client.redirect_uris,
        "response_types": client.response_types,
        "grant_types": client.grant_types,
        "application_type": client.application_type,
        "consent_method": client.consent_method,
        "issuer_mode": "ORG_URL",
        "idp_initiated_login": { "mode": "DISABLED", "default_scope": [] },
        "wildcard_redirect": "DISABLED",
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        "participate_slo": false,
    });
    if let Some(jwks_uri) = &client.jwks_uri {
        oauth_settings["jwks_uri"] = json!(jwks_uri);
    } else {
        oauth_settings["jwks"] = json!({ "keys": application_keys(app) });
    }

    let lifecycle = if app.status == crate::state::AppStatus::Active {
        "deactivate"
    } else {
        "activate"
    };

    json!({
        "id": app.id,
        "name": "oidc_client",
        "label": app.label,
        "status": app.status.as_str(),
        "created": iso_millis(app.created),
        "lastUpdated": iso_millis(app.last_updated),
        "signOnMode": "OPENID_CONNECT",
        "features": [],
        "accessibility": { "selfService": false, "errorRedirectUrl": null, "loginRedirectUrl": null },
        "visibility": {
            "autoLaunch": false,
            "autoSubmitToolbar": false,
            "hide": { "iOS": true, "web": true },
            "appLinks": { "oidc_client_link": true },
        },
        "credentials": {
            "userNameTemplate": { "template": "${source.login}", "type": "BUILT_IN" },
            "oauthClient": {
                "autoKeyRotation": client.auto_key_rotation,
                "client_id": app.id,
                "token_endpoint_auth_method": client.token_endpoint_auth_method,
                "pkce_required": false,
            },
        },
        "settings": { "app": {}, "oauthClient": oauth_settings },
        "_links": {
            "clientCredentials": [ { "name": "jwks", "href": format!("{app_url}/credentials/jwks") } ],
            "users": { "href": format!("{app_url}/users") },
            "groups": { "href": format!("{app_url}/groups") },
            lifecycle: { "href": format!("{app_url}/lifecycle/{lifecycle}") },
        },
    })
}

/// Renders the keys of an app as `settings.oauthClient.jwks.keys` shows
/// them: the echoed JWK plus Okta's key `id` and `status`.
fn application_keys(app: &App) -> Vec<Value> {
    app.keys
        .iter()
        .map(|key| {
            let mut members = key.jwk.echo_json();
            members.insert("id".into(), json!(key.id));
            members.insert("status".into(), json!(key.status.as_str()));
            Value::Object(members)
        })
        .collect()
}

/// Renders an app as a DCR client object. The secret is included only
/// when `with_secret` is set, which Okta does in create responses.
pub(crate) fn client(app: &App, with_secret: bool) -> Value {
    let client = &app.client;
    let mut object = Map::new();
    object.insert("client_id".into(), json!(app.id));
    object.insert(
        "client_id_issued_at".into(),
        json!(app.created.unix_timestamp()),
    );
    object.insert("client_name".into(), json!(app.label));
    object.insert("client_uri".into(), json!(client.client_uri));
    object.insert("logo_uri".into(), json!(client.logo_uri));
    object.insert("redirect_uris".into(), json!(client.redirect_uris));
    object.insert("response_types".into(), json!(client.response_types));
    object.insert("grant_types".into(), json!(client.grant_types));
    object.insert(
        "token_endpoint_auth_method".into(),
        json!(client.token_endpoint_auth_method),
    );
    object.insert("application_type".into(), json!(client.application_type));

    if let Some(jwks_uri) = &client.jwks_uri {
        object.insert("jwks_uri".into(), json!(jwks_uri));
    } else if !app.keys.is_empty() {
        let keys: Vec<Value> = app
            .keys
            .iter()
            .map(|key| Value::Object(key.jwk.echo_json()))
            .collect();
        object.insert("jwks".into(), json!({ "keys": keys }));
    }

    if with_secret && let Some(secret) = &client.client_secret {
        object.insert("client_secret".into(), json!(secret));
        object.insert("client_secret_expires_at".into(), json!(0));
    }
    Value::Object(object)
}
