//! Server-generated keys, client assertions and access tokens against the
//! emulator's token endpoint, checked by calling the emulator's resource
//! endpoint with the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GetAccessTokenRequest, GrantScopesRequest, KeyAlgorithm,
    ServiceApp, SignClientAssertionRequest, SignDpopProofRequest,
    create_service_app_request::KeySource,
};
use registrar_tests::{TestEnv, create_request};
use tonic::Code;

async fn create_generated(
    env: &TestEnv,
    name: &str,
    algorithm: KeyAlgorithm,
    dpop_bound: bool,
) -> ServiceApp {
    let mut client = env.client.clone();
    client
        .create_service_app(CreateServiceAppRequest {
            client_name: name.into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey {
                algorithm: algorithm as i32,
            })),
            dpop_bound,
        })
        .await
        .expect("create with a generated key")
        .into_inner()
        .app
        .expect("app")
}

async fn grant(env: &TestEnv, client_id: &str, scopes: &[&str]) {
    let mut client = env.client.clone();
    client
        .grant_scopes(GrantScopesRequest {
            client_id: client_id.into(),
            scope_ids: scopes.iter().map(ToString::to_string).collect(),
            issuer: String::new(),
        })
        .await
        .expect("grant");
}

fn token_request(client_id: &str, scopes: &[&str], force_refresh: bool) -> GetAccessTokenRequest {
    GetAccessTokenRequest {
        client_id: client_id.into(),
        scopes: scopes.iter().map(ToString::to_string).collect(),
        force_refresh,
    }
}

fn jwt_part(jwt: &str, index: usize) -> serde_json::Value {
    let part = jwt.split('.').nth(index).expect("JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

async fn list_users(
    env: &TestEnv,
    authorization: &str,
    proof: Option<&str>,
) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new()
        .get(format!("{}/api/v1/users", env.org_url))
        .header("Authorization", authorization);
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    request.send().await.expect("resource request").status()
}

#[tokio::test]
async fn generated_key_token_works_and_is_cached() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = create_generated(&env, "token-service", KeyAlgorithm::Unspecified, false).await;
    assert_eq!(app.keys.len(), 1);
    assert_eq!(
        app.keys[0].kid, app.keys[0].thumbprint,
        "the kid is the RFC 7638 thumbprint"
    );
    assert_eq!(app.keys[0].jwk.as_ref().expect("jwk").kty, "RSA");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(&app.keys[0].jwk.as_ref().expect("jwk").n)
            .expect("modulus")
            .len(),
        256,
        "RSA 2048 is the default"
    );
    grant(&env, &app.client_id, &["okta.users.read"]).await;

    let token = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], false))
        .await
        .expect("token")
        .into_inner();
    assert_eq!(token.token_type, "Bearer");
    assert!(!token.cached);
    assert_eq!(token.scopes, vec!["okta.users.read"]);
    assert_eq!(
        list_users(&env, &format!("Bearer {}", token.access_token), None).await,
        200
    );

    let again = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], false))
        .await
        .expect("cached token")
        .into_inner();
    assert!(again.cached);
    assert_eq!(again.access_token, token.access_token);
    assert_eq!(env.count_requests("POST", "/oauth2/v1/token"), 1);

    // A forced refresh gets a new token.
    let refreshed = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], true))
        .await
        .expect("refreshed token")
        .into_inner();
    assert!(!refreshed.cached);
    assert_ne!(refreshed.access_token, token.access_token);
    assert_eq!(env.count_requests("POST", "/oauth2/v1/token"), 2);
    env.stop().await;
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let env = TestEnv::start().await;
    let app = create_generated(&env, "busy-service", KeyAlgorithm::Es256, false).await;
    grant(&env, &app.client_id, &["okta.users.read", "okta.apps.read"]).await;

    let mut tasks = Vec::new();
    for index in 0..100 {
        let mut client = env.client.clone();
        // Scope order and duplicates do not change the cache entry.
        let scopes: &[&str] = if index % 2 == 0 {
            &["okta.users.read", "okta.apps.read"]
        } else {
            &["okta.apps.read", "okta.users.read", "okta.apps.read"]
        };
        let request = token_request(&app.client_id, scopes, false);
        tasks.push(tokio::spawn(async move {
            client.get_access_token(request).await
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(
            task.await
                .expect("task")
                .expect("token")
                .into_inner()
                .access_token,
        );
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(env.count_requests("POST", "/oauth2/v1/token"), 1);
    env.stop().await;
}

#[tokio::test]
async fn tokens_survive_clock_skew() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = create_generated(&env, "skewed-service", KeyAlgorithm::Es256, false).await;
    grant(&env, &app.client_id, &["okta.users.read"]).await;

    for offset in [30, -30] {
        env.emulator.set_clock_offset(offset);
        let token = client
            .get_access_token(token_request(&app.client_id, &["okta.users.read"], true))
            .await
            .unwrap_or_else(|status| panic!("token with the emulator clock {offset:+} s: {status}"))
            .into_inner();
        assert_eq!(
            list_users(&env, &format!("Bearer {}", token.access_token), None).await,
            200
        );
    }
    env.stop().await;
}

#[tokio::test]
async fn assertion_claims_follow_rfc7523() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = create_generated(&env, "assertion-service", KeyAlgorithm::Rs2563072, false).await;

    let first = client
        .sign_client_assertion(SignClientAssertionRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("assertion")
        .into_inner();
    let second = client
        .sign_client_assertion(SignClientAssertionRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("assertion")
        .into_inner();
    assert_ne!(first.jti, second.jti);

    let token_url = format!("{}/oauth2/v1/token", env.org_url);
    assert_eq!(first.audience, token_url);
    assert_eq!(first.kid, app.keys[0].kid);
    let header = jwt_part(&first.assertion, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], app.keys[0].kid.as_str());
    let claims = jwt_part(&first.assertion, 1);
    assert_eq!(claims["iss"], app.client_id.as_str());
    assert_eq!(claims["sub"], app.client_id.as_str());
    assert_eq!(claims["aud"], token_url.as_str());
    assert_eq!(claims["jti"], first.jti.as_str());
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    // iat is set back 60 s to absorb a token endpoint clock that runs behind.
    assert_eq!(exp - iat, 360);
    assert_eq!(first.expires_at.expect("expires_at").seconds, exp);

    // Okta's token endpoint accepts the assertion once; a replay is refused.
    grant(&env, &app.client_id, &["okta.users.read"]).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "okta.users.read"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", first.assertion.as_str()),
    ];
    let http = reqwest::Client::new();
    let accepted = http
        .post(&token_url)
        .form(&form)
        .send()
        .await
        .expect("token request");
    assert_eq!(accepted.status(), 200);
    let replayed = http
        .post(&token_url)
        .form(&form)
        .send()
        .await
        .expect("token request");
    assert_eq!(replayed.status(), 401);
    let body: serde_json::Value = replayed.json().await.expect("JSON error");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        body["error_description"],
        "The client_assertion token has already been used."
    );
    env.stop().await;
}

#[tokio::test]
async fn token_errors_say_what_to_fix() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();

    // No scope granted: Okta's consent_required, with the missing scopes named.
    let app = create_generated(&env, "ungranted-service", KeyAlgorithm::Es256, false).await;
    let status = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], false))
        .await
        .expect_err("nothing granted");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("consent_required"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("okta.users.read"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("GrantScopes"),
        "{}",
        status.message()
    );

    // Caller-supplied keys: the registrar cannot sign for the app.
    let own_keys = client
        .create_service_app(create_request("own-keys-service"))
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");
    let status = client
        .get_access_token(token_request(
            &own_keys.client_id,
            &["okta.users.read"],
            false,
        ))
        .await
        .expect_err("no private key");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("no private key"),
        "{}",
        status.message()
    );
    let status = client
        .sign_client_assertion(SignClientAssertionRequest {
            client_id: own_keys.client_id.clone(),
        })
        .await
        .expect_err("no private key");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Unknown app and bad scopes.
    let status = client
        .get_access_token(token_request(
            "0oaUnknownApp0000000",
            &["okta.users.read"],
            false,
        ))
        .await
        .expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .get_access_token(token_request(&app.client_id, &[], false))
        .await
        .expect_err("no scopes");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("scopes:"),
        "{}",
        status.message()
    );

    // DPoP needs a generated key.
    let status = client
        .create_service_app(CreateServiceAppRequest {
            dpop_bound: true,
            ..create_request("dpop-own-keys")
        })
        .await
        .expect_err("dpop with own keys");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("dpop_bound:"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn dpop_bound_app_gets_usable_dpop_token() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = create_generated(&env, "dpop-service", KeyAlgorithm::Es256, true).await;
    assert!(env.okta_app(&app.client_id).expect("app").dpop_bound);
    grant(&env, &app.client_id, &["okta.users.read"]).await;

    let token = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], false))
        .await
        .expect("DPoP token")
        .into_inner();
    assert_eq!(token.token_type, "DPoP");

    // The first token request already carried a proof: the emulator asked
    // for a nonce (use_dpop_nonce) instead of reporting a missing proof.
    let token_statuses: Vec<u16> = env
        .okta_requests()
        .iter()
        .filter(|request| request.path == "/oauth2/v1/token")
        .map(|request| request.status)
        .collect();
    assert_eq!(token_statuses, vec![400, 200]);

    let url = format!("{}/api/v1/users", env.org_url);
    let proof = client
        .sign_dpop_proof(SignDpopProofRequest {
            client_id: app.client_id.clone(),
            http_method: "GET".into(),
            http_url: format!("{url}?limit=5"),
            access_token: token.access_token.clone(),
            nonce: String::new(),
        })
        .await
        .expect("proof")
        .into_inner()
        .proof;
    let header = jwt_part(&proof, 0);
    assert_eq!(header["typ"], "dpop+jwt");
    assert!(
        header["jwk"].get("d").is_none(),
        "the proof carries only the public key"
    );
    let claims = jwt_part(&proof, 1);
    assert_eq!(claims["htu"], url.as_str());
    assert!(claims["ath"].is_string());

    let authorization = format!("DPoP {}", token.access_token);
    assert_eq!(list_users(&env, &authorization, Some(&proof)).await, 200);
    let without_proof = list_users(&env, &authorization, None).await;
    assert!(without_proof.is_client_error(), "{without_proof}");

    // A second token call is served from the cache without a new request.
    let cached = client
        .get_access_token(token_request(&app.client_id, &["okta.users.read"], false))
        .await
        .expect("cached")
        .into_inner();
    assert!(cached.cached);

    // Non-DPoP apps get no proofs.
    let bearer = create_generated(&env, "bearer-service", KeyAlgorithm::Es256, false).await;
    let status = client
        .sign_dpop_proof(SignDpopProofRequest {
            client_id: bearer.client_id,
            http_method: "GET".into(),
            http_url: url,
            access_token: "x".into(),
            nonce: String::new(),
        })
        .await
        .expect_err("not DPoP-bound");
    assert_eq!(status.code(), Code::FailedPrecondition);
    env.stop().await;
}

#[tokio::test]
async fn cached_tokens_end_with_deletion_and_grant_changes() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = create_generated(&env, "cache-changes", KeyAlgorithm::Es256, false).await;
    grant(&env, &app.client_id, &["okta.users.read"]).await;
    let both = ["okta.users.read", "okta.apps.read"];

    // Only one of the two scopes is granted: the token carries that one.
    let partial = client
        .get_access_token(token_request(&app.client_id, &both, false))
        .await
        .expect("token")
        .into_inner();
    assert_eq!(partial.scopes, vec!["okta.users.read"]);

    // After the second grant, the same request gets a token with both.
    grant(&env, &app.client_id, &["okta.apps.read"]).await;
    let full = client
        .get_access_token(token_request(&app.client_id, &both, false))
        .await
        .expect("token")
        .into_inner();
    assert!(!full.cached, "a grant change must not serve the old token");
    assert_eq!(full.scopes.len(), 2, "{:?}", full.scopes);

    // Granting what is granted already changes nothing, so the cached
    // token stays in use and Okta gets no new token request.
    let token_requests = env.count_requests("POST", "/oauth2/v1/token");
    grant(&env, &app.client_id, &both).await;
    let again = client
        .get_access_token(token_request(&app.client_id, &both, false))
        .await
        .expect("token")
        .into_inner();
    assert!(
        again.cached,
        "a grant call that changed nothing kept the token"
    );
    assert_eq!(again.access_token, full.access_token);
    assert_eq!(
        env.count_requests("POST", "/oauth2/v1/token"),
        token_requests
    );

    // A deleted app gets no token, cached or not.
    client
        .delete_service_app(registrar_api::v1::DeleteServiceAppRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("delete");
    let status = client
        .get_access_token(token_request(&app.client_id, &both, false))
        .await
        .expect_err("deleted app");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
