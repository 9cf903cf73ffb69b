//! Bad input is rejected before anything reaches Okta, with a status code
//! and a message that names the field and the fix. Okta failures map to
//! codes that tell the caller what to do.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GetAccessTokenRequest, GetServiceAppRequest,
    GrantScopesRequest, Jwk, Jwks, ListServiceAppsRequest, RegisterServiceRequest,
    RetireKeyRequest, RevokeScopesRequest, SignDpopProofRequest,
    create_service_app_request::KeySource,
};
use registrar_tests::{Options, TestEnv, sample_jwks};
use tonic::Code;

fn with_keys(keys: Vec<Jwk>) -> CreateServiceAppRequest {
    CreateServiceAppRequest {
        client_name: "bad-input".into(),
        key_source: Some(KeySource::Jwks(Jwks { keys })),
        dpop_bound: false,
    }
}

fn sample_key() -> Jwk {
    sample_jwks().keys.remove(0)
}

/// A second valid RSA key, different from the sample key.
fn other_key(kid: &str) -> Jwk {
    let mut modulus = URL_SAFE_NO_PAD
        .decode(&sample_key().n)
        .expect("sample modulus decodes");
    let last = modulus.len() - 1;
    modulus[last] ^= 0x02;
    Jwk {
        kid: kid.into(),
        n: URL_SAFE_NO_PAD.encode(modulus),
        ..sample_key()
    }
}

#[tokio::test]
async fn create_rejects_bad_input_before_okta() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();

    let cases: Vec<(&str, CreateServiceAppRequest, &str, &str)> = vec![
        (
            "empty name",
            CreateServiceAppRequest {
                client_name: String::new(),
                ..with_keys(vec![sample_key()])
            },
            "client_name:",
            "is empty",
        ),
        (
            "overlong name",
            CreateServiceAppRequest {
                client_name: "x".repeat(101),
                ..with_keys(vec![sample_key()])
            },
            "client_name:",
            "at most 100",
        ),
        (
            "no key source",
            CreateServiceAppRequest {
                client_name: "bad-input".into(),
                key_source: None,
                dpop_bound: false,
            },
            "key_source:",
            "jwks",
        ),
        (
            "empty JWKS",
            with_keys(vec![]),
            "jwks.keys:",
            "at least one",
        ),
        (
            "bad base64url",
            with_keys(vec![Jwk {
                n: "not base64!".into(),
                ..sample_key()
            }]),
            "jwks.keys[0].n:",
            "base64url",
        ),
        (
            "short modulus",
            with_keys(vec![Jwk {
                n: URL_SAFE_NO_PAD.encode([0xC5u8; 128]),
                ..sample_key()
            }]),
            "jwks.keys[0].n:",
            "at least 2048 bits",
        ),
        (
            "unknown kty",
            with_keys(vec![Jwk {
                kty: "oct".into(),
                ..sample_key()
            }]),
            "jwks.keys[0].kty:",
            "\"RSA\" or \"EC\"",
        ),
        (
            "private member",
            with_keys(vec![Jwk {
                d: "cHJpdmF0ZQ".into(),
                ..sample_key()
            }]),
            "jwks.keys[0].d:",
            "only the public key",
        ),
        (
            "duplicate kids",
            with_keys(vec![sample_key(), other_key("O4O")]),
            "jwks.keys[1].kid:",
            "unique",
        ),
        (
            "missing kid among several keys",
            with_keys(vec![sample_key(), other_key("")]),
            "jwks.keys[1].kid:",
            "needs a kid",
        ),
        (
            "encryption key",
            with_keys(vec![Jwk {
                r#use: "enc".into(),
                ..sample_key()
            }]),
            "jwks.keys[0].use:",
            "\"sig\"",
        ),
    ];

    for (case, request, field, fix) in cases {
        let status = client.create_service_app(request).await.expect_err(case);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{case}: {}",
            status.message()
        );
        assert!(
            status.message().starts_with(field),
            "{case}: {}",
            status.message()
        );
        assert!(
            status.message().contains(fix),
            "{case}: {}",
            status.message()
        );
    }
    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());

    // The private value is never echoed.
    let status = client
        .create_service_app(with_keys(vec![Jwk {
            d: "c2VjcmV0LXByaXZhdGUtZXhwb25lbnQ".into(),
            ..sample_key()
        }]))
        .await
        .expect_err("private member");
    assert!(
        !status.message().contains("c2VjcmV0"),
        "{}",
        status.message()
    );
    env.stop().await;
}

/// Checks that a status is `INVALID_ARGUMENT` for `field` and that its
/// message contains every one of `parts`, such as the size and the limit.
fn assert_limit(case: &str, status: &tonic::Status, field: &str, parts: &[&str]) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{case}: {}",
        status.message()
    );
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{case}: {}",
        status.message()
    );
    for part in parts {
        assert!(
            status.message().contains(part),
            "{case}: {:?} lacks {part:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn limits_name_field_size_and_maximum() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let scopes = |count: usize| vec!["okta.users.read".to_string(); count];

    let status = client
        .create_service_app(with_keys(vec![sample_key(); 51]))
        .await
        .expect_err("51 keys");
    assert_limit(
        "51 keys",
        &status,
        "jwks.keys",
        &["has 51 keys", "at most 50"],
    );

    let status = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "n".repeat(101),
            ..with_keys(vec![sample_key()])
        })
        .await
        .expect_err("long name");
    let parts = ["is 101 characters long", "at most 100"];
    assert_limit("long name", &status, "client_name", &parts);

    let status = client
        .register_service(RegisterServiceRequest {
            service_name: "n".repeat(101),
            scope_ids: scopes(1),
            ..RegisterServiceRequest::default()
        })
        .await
        .expect_err("long service name");
    assert_limit("long service name", &status, "service_name", &parts);

    let status = client
        .grant_scopes(GrantScopesRequest {
            client_id: "0oa1".into(),
            scope_ids: scopes(51),
            issuer: String::new(),
        })
        .await
        .expect_err("51 scopes");
    let parts = ["has 51 entries", "at most 50"];
    assert_limit("51 scopes", &status, "scope_ids", &parts);

    let status = client
        .get_access_token(GetAccessTokenRequest {
            client_id: "0oa1".into(),
            scopes: scopes(51),
            force_refresh: false,
        })
        .await
        .expect_err("51 token scopes");
    assert_limit("51 token scopes", &status, "scopes", &parts);

    let status = client
        .register_service(RegisterServiceRequest {
            service_name: "limits".into(),
            scope_ids: scopes(51),
            ..RegisterServiceRequest::default()
        })
        .await
        .expect_err("51 register scopes");
    assert_limit("51 register scopes", &status, "scope_ids", &parts);

    let status = client
        .grant_scopes(GrantScopesRequest {
            client_id: "0oa1".into(),
            scope_ids: vec![format!("okta.{}", "s".repeat(96))],
            issuer: String::new(),
        })
        .await
        .expect_err("long scope id");
    let parts = ["is 101 characters long", "at most 100"];
    assert_limit("long scope id", &status, "scope_ids[0]", &parts);

    let status = client
        .get_service_app(GetServiceAppRequest {
            client_id: "0".repeat(101),
        })
        .await
        .expect_err("long client id");
    assert_limit("long client id", &status, "client_id", &parts);

    let status = client
        .list_service_apps(ListServiceAppsRequest {
            page_size: 201,
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("page size");
    assert_limit("page size", &status, "page_size", &["201", "1 to 200"]);

    let status = client
        .list_service_apps(ListServiceAppsRequest {
            page_token: "A".repeat(3000),
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("long page token");
    let parts = ["is 3000 bytes long", "2048 bytes"];
    assert_limit("long page token", &status, "page_token", &parts);

    let status = client
        .retire_key(RetireKeyRequest {
            client_id: "0oa1".into(),
            kid: "k".repeat(256),
        })
        .await
        .expect_err("long kid");
    let parts = ["is 256 characters long", "at most 255"];
    assert_limit("long kid", &status, "kid", &parts);

    let status = client
        .create_service_app(with_keys(vec![Jwk {
            kid: "k".repeat(256),
            ..sample_key()
        }]))
        .await
        .expect_err("long JWK kid");
    assert_limit("long JWK kid", &status, "jwks.keys[0].kid", &parts);

    let status = client
        .sign_dpop_proof(SignDpopProofRequest {
            client_id: "0oa1".into(),
            http_method: "GET".into(),
            http_url: format!("https://api.example/{}", "p".repeat(8200)),
            access_token: "token".into(),
            nonce: String::new(),
        })
        .await
        .expect_err("long URL");
    let parts = ["is 8220 bytes long", "at most 8192"];
    assert_limit("long URL", &status, "http_url", &parts);

    // A huge invalid value comes back shortened, not whole.
    let status = client
        .create_service_app(with_keys(vec![Jwk {
            kty: "K".repeat(100_000),
            ..sample_key()
        }]))
        .await
        .expect_err("huge kty");
    assert_limit(
        "huge kty",
        &status,
        "jwks.keys[0].kty",
        &["not a supported key type"],
    );
    assert!(
        status.message().len() < 300,
        "{} bytes of message",
        status.message().len()
    );

    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());
    env.stop().await;
}

#[tokio::test]
async fn unknown_key_algorithm_is_rejected() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let status = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "generated".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey { algorithm: 99 })),
            dpop_bound: false,
        })
        .await
        .expect_err("unknown algorithm");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("generate_key.algorithm:"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("KEY_ALGORITHM_ES256"),
        "{}",
        status.message()
    );
    assert!(env.okta_requests().is_empty());
    env.stop().await;
}

#[tokio::test]
async fn scope_requests_reject_bad_input_before_okta() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();

    let grant = |client_id: &str, scopes: &[&str], issuer: &str| GrantScopesRequest {
        client_id: client_id.into(),
        scope_ids: scopes.iter().map(ToString::to_string).collect(),
        issuer: issuer.into(),
    };
    let cases = vec![
        ("empty scope list", grant("0oa1", &[], ""), "scope_ids:"),
        (
            "malformed scope",
            grant("0oa1", &["okta users read"], ""),
            "scope_ids[0]:",
        ),
        (
            "second scope malformed",
            grant("0oa1", &["okta.users.read", "openid"], ""),
            "scope_ids[1]:",
        ),
        (
            "empty client id",
            grant("", &["okta.users.read"], ""),
            "client_id:",
        ),
        (
            "path in client id",
            grant("0oa1/../x", &["okta.users.read"], ""),
            "client_id:",
        ),
        (
            "other issuer",
            grant(
                "0oa1",
                &["okta.users.read"],
                "https://other.okta.com/oauth2/default",
            ),
            "issuer:",
        ),
    ];
    for (case, request, field) in cases {
        let status = client.grant_scopes(request).await.expect_err(case);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{case}: {}",
            status.message()
        );
        assert!(
            status.message().starts_with(field),
            "{case}: {}",
            status.message()
        );
    }

    let revoke = client
        .revoke_scopes(RevokeScopesRequest {
            client_id: "0oa1".into(),
            scope_ids: vec![],
        })
        .await
        .expect_err("empty revoke");
    assert_eq!(revoke.code(), Code::InvalidArgument);

    let page = client
        .list_service_apps(ListServiceAppsRequest {
            page_size: 201,
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("page size");
    assert_eq!(page.code(), Code::InvalidArgument);
    assert!(page.message().starts_with("page_size:"));
    let token = client
        .list_service_apps(ListServiceAppsRequest {
            page_token: "forged".into(),
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("page token");
    assert_eq!(token.code(), Code::InvalidArgument);
    assert!(token.message().starts_with("page_token:"));
    let prefix = client
        .list_service_apps(ListServiceAppsRequest {
            name_prefix: "a".repeat(101),
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("long prefix");
    assert_eq!(prefix.code(), Code::InvalidArgument);
    assert!(
        prefix.message().starts_with("name_prefix:"),
        "{}",
        prefix.message()
    );
    let lookalike = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "svc\u{200B}".into(),
            ..with_keys(vec![sample_key()])
        })
        .await
        .expect_err("invisible character");
    assert_eq!(lookalike.code(), Code::InvalidArgument);

    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());

    // A forged page token can carry only a cursor, which Okta rejects.
    let forged = URL_SAFE_NO_PAD.encode(r#"{"after":"x&filter=status eq \"ACTIVE\"","q":""}"#);
    let status = client
        .list_service_apps(ListServiceAppsRequest {
            page_token: forged,
            ..ListServiceAppsRequest::default()
        })
        .await
        .expect_err("forged cursor");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    let forged_requests = env.okta_requests();
    assert_eq!(forged_requests.len(), 1);
    assert!(
        !forged_requests[0]
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("filter="),
        "{:?}",
        forged_requests[0].query
    );

    // The issuer is accepted with a trailing slash.
    let status = client
        .grant_scopes(grant(
            "0oa1missing",
            &["okta.users.read"],
            &format!("{}/", env.org_url),
        ))
        .await
        .expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    env.stop().await;
}

#[tokio::test]
async fn unknown_client_id_is_not_found() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let status = client
        .get_service_app(GetServiceAppRequest {
            client_id: "0oaDoesNotExist00000".into(),
        })
        .await
        .expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("0oaDoesNotExist00000"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn okta_unreachable_is_unavailable() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let env = TestEnv::start_with(Options {
        org_url_override: Some(format!("http://{address}")),
        ..Options::default()
    })
    .await;
    let mut client = env.client.clone();
    let status = client
        .get_service_app(GetServiceAppRequest {
            client_id: "0oa1".into(),
        })
        .await
        .expect_err("Okta unreachable");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(
        status.message().contains("could not be reached"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn rejected_registrar_credential_blames_the_registrar() {
    let env = TestEnv::start_with(Options {
        registrar_token: "wrong-token".into(),
        ..Options::default()
    })
    .await;
    let mut client = env.client.clone();
    let status = client
        .create_service_app(with_keys(vec![sample_key()]))
        .await
        .expect_err("credential rejected");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("registrar's own credential"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("E0000011"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("wrong-token"),
        "{}",
        status.message()
    );
    env.stop().await;
}
