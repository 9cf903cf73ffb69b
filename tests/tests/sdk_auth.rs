//! The SDK against a registrar that authenticates callers by bearer token:
//! registration, tokens and the background watch carry the token, and a
//! missing or wrong token fails with UNAUTHENTICATED before Okta is called.

use registrar_sdk::{Client, Error};
use registrar_server::auth::{AuthConfig, BearerTokens, token_file_entry};
use registrar_tests::{Options, TestEnv};
use tonic::Code;

const SCOPES: &[&str] = &["okta.users.read"];
const TOKEN: &str = "sdk-caller-token-6b1f0c2e9d8a7f6e5d4c3b2a";

async fn start() -> TestEnv {
    let entry = token_file_entry("sdk-caller", TOKEN).expect("valid entry");
    TestEnv::start_with(Options {
        auth: AuthConfig {
            bearer_tokens: Some(BearerTokens::parse(&entry).expect("valid token file")),
            insecure_no_auth: false,
            ..AuthConfig::insecure_loopback()
        },
        ..Options::default()
    })
    .await
}

async fn client(env: &TestEnv) -> Client {
    Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
}

#[tokio::test]
async fn sdk_sends_bearer_token() {
    let env = start().await;
    let identity = client(&env)
        .await
        .with_bearer_token(TOKEN)
        .expect("valid token")
        .register("bearer-sdk-service", SCOPES)
        .await
        .expect("register with a bearer token");
    // The first key state came over the authenticated watch stream.
    assert!(!identity.key_state().signing_kid.is_empty());
    let token = identity.access_token(SCOPES).await.expect("token");
    assert_eq!(token.token_type, "Bearer");
    assert!(!format!("{identity:?}").contains(TOKEN));
    identity.close().await;
    env.stop().await;
}

#[tokio::test]
async fn sdk_without_valid_token_is_unauthenticated() {
    let env = start().await;
    let cases = [
        ("missing", client(&env).await),
        (
            "wrong",
            client(&env)
                .await
                .with_bearer_token("not-the-right-token-0123456789abcdef")
                .expect("valid token syntax"),
        ),
    ];
    for (case, client) in cases {
        let error = client
            .register("unauthenticated-sdk-service", SCOPES)
            .await
            .expect_err("no valid token");
        let Error::Status(status) = &error else {
            panic!("{case}: expected a status, got {error}");
        };
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
    assert!(
        env.okta_requests().is_empty(),
        "a rejected call reached Okta"
    );

    let error = client(&env)
        .await
        .with_bearer_token("has space")
        .expect_err("invalid token syntax");
    assert!(matches!(error, Error::InvalidBearerToken), "{error}");
    env.stop().await;
}
