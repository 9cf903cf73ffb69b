//! The caller policy, app ownership and the audit log, over bearer-token
//! authentication on 127.0.0.1. Three callers: `billing` may grant only
//! `okta.users.read` to apps named `billing-…`; `reports` may grant
//! `okta.users.*` and receive private keys; `ops` is an admin. Every denied
//! call is checked to have sent nothing to the emulator.

use std::path::PathBuf;
use std::time::Duration;

use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    AddKeyRequest, CreateServiceAppRequest, DeleteServiceAppRequest, GenerateKey,
    GetAccessTokenRequest, GrantScopesRequest, ListAuditEventsRequest, RegisterServiceRequest,
    RetireKeyRequest, RevokeScopesRequest, RotateKeyRequest, WatchRotationsRequest,
    create_service_app_request::KeySource,
};
use registrar_server::auth::{AuthConfig, BearerTokens};
use registrar_server::policy::Policies;
use registrar_tests::{Options, TestEnv, create_request, sample_jwks};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const BILLING: &str = "billing-token-0123456789abcdef0123456789abcdef";
const REPORTS: &str = "reports-token-0123456789abcdef0123456789abcdef";
const OPS: &str = "ops-token-0123456789abcdef0123456789abcdef01";

const POLICY: &str = r#"
[[caller]]
id = "billing"
operations = ["create", "register", "grant", "revoke", "rotate", "delete", "read", "token", "watch"]
scopes = ["okta.users.read"]
client_name_prefixes = ["billing-"]

[[caller]]
id = "reports"
operations = ["*"]
scopes = ["okta.users.*", "okta.apps.read"]
client_name_prefixes = ["reports-"]
deliver_private_keys = true

[[caller]]
id = "ops"
operations = ["*"]
scopes = ["*"]
client_name_prefixes = [""]
admin = true
"#;

/// A registrar with bearer tokens for the three callers and a policy file
/// in a temporary directory.
struct PolicyEnv {
    env: TestEnv,
    policies: Policies,
    policy_path: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(policy: &str, deliver_private_keys: bool) -> PolicyEnv {
    let dir = tempfile::tempdir().expect("temporary directory");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy).expect("write policy");
    let policies = Policies::load(&policy_path).expect("valid policy");
    let tokens: Vec<String> = [("billing", BILLING), ("reports", REPORTS), ("ops", OPS)]
        .iter()
        .map(|(name, token)| {
            registrar_server::auth::token_file_entry(name, token).expect("valid entry")
        })
        .collect();
    let bearer = BearerTokens::parse(&tokens.join("\n")).expect("valid token file");
    let env = TestEnv::start_with(Options {
        auth: AuthConfig {
            bearer_tokens: Some(bearer),
            insecure_no_auth: false,
            ..AuthConfig::insecure_loopback()
        },
        policies: policies.clone(),
        deliver_private_keys,
        ..Options::default()
    })
    .await;
    PolicyEnv {
        env,
        policies,
        policy_path,
        _dir: dir,
    }
}

impl PolicyEnv {
    fn client(&self) -> RegistrarClient<Channel> {
        self.env.client.clone()
    }

    fn okta_request_count(&self) -> usize {
        self.env.okta_requests().len()
    }

    async fn create(&self, token: &str, name: &str) -> String {
        self.client()
            .create_service_app(as_caller(token, create_request(name)))
            .await
            .expect("create")
            .into_inner()
            .app
            .expect("app")
            .client_id
    }

    async fn create_generated(&self, token: &str, name: &str) -> String {
        let request = CreateServiceAppRequest {
            client_name: name.to_string(),
            key_source: Some(KeySource::GenerateKey(GenerateKey::default())),
            dpop_bound: false,
        };
        self.client()
            .create_service_app(as_caller(token, request))
            .await
            .expect("create with a generated key")
            .into_inner()
            .app
            .expect("app")
            .client_id
    }
}

fn as_caller<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII header"),
    );
    request
}

fn grant(client_id: &str, scopes: &[&str]) -> GrantScopesRequest {
    GrantScopesRequest {
        client_id: client_id.to_string(),
        scope_ids: scopes.iter().map(|scope| scope.to_string()).collect(),
        issuer: String::new(),
    }
}

fn revoke(client_id: &str, scopes: &[&str]) -> RevokeScopesRequest {
    RevokeScopesRequest {
        client_id: client_id.to_string(),
        scope_ids: scopes.iter().map(|scope| scope.to_string()).collect(),
    }
}

fn rotate(client_id: &str) -> RotateKeyRequest {
    RotateKeyRequest {
        client_id: client_id.to_string(),
    }
}

fn delete(client_id: &str) -> DeleteServiceAppRequest {
    DeleteServiceAppRequest {
        client_id: client_id.to_string(),
    }
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, Status>, naming: &str) {
    let status = result.expect_err("the call is denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(naming),
        "the message does not name {naming:?}: {}",
        status.message()
    );
}

#[tokio::test]
async fn scope_outside_policy_is_denied() {
    let policy_env = start(POLICY, false).await;
    let client_id = policy_env.create(BILLING, "billing-scopes").await;
    let before = policy_env.okta_request_count();

    let mut client = policy_env.client();
    for (scopes, denied) in [
        (&["okta.roles.manage"][..], "okta.roles.manage"),
        (
            &["okta.users.read", "okta.apps.manage"][..],
            "okta.apps.manage",
        ),
        (&["okta.users.manage"][..], "okta.users.manage"),
    ] {
        let result = client
            .grant_scopes(as_caller(BILLING, grant(&client_id, scopes)))
            .await;
        assert_denied(result, denied);
    }
    assert_eq!(
        policy_env.okta_request_count(),
        before,
        "a denied grant reached Okta"
    );
    let app = policy_env.env.okta_app(&client_id).expect("app in Okta");
    assert!(app.granted_scopes.is_empty(), "{:?}", app.granted_scopes);

    client
        .grant_scopes(as_caller(BILLING, grant(&client_id, &["okta.users.read"])))
        .await
        .expect("an allowed scope is granted");
    let app = policy_env.env.okta_app(&client_id).expect("app in Okta");
    assert_eq!(app.granted_scopes, vec!["okta.users.read"]);

    // A prefix pattern covers the scopes below it, and only those.
    let reports_app = policy_env.create(REPORTS, "reports-scopes").await;
    client
        .grant_scopes(as_caller(
            REPORTS,
            grant(&reports_app, &["okta.users.manage"]),
        ))
        .await
        .expect("okta.users.* covers okta.users.manage");
    let result = client
        .grant_scopes(as_caller(
            REPORTS,
            grant(&reports_app, &["okta.apps.manage"]),
        ))
        .await;
    assert_denied(result, "okta.apps.manage");
    policy_env.env.stop().await;
}

#[tokio::test]
async fn apps_of_others_are_denied() {
    let policy_env = start(POLICY, false).await;
    let client_id = policy_env.create_generated(BILLING, "billing-owned").await;
    let before = policy_env.okta_request_count();

    let mut client = policy_env.client();
    let granted = client
        .grant_scopes(as_caller(REPORTS, grant(&client_id, &["okta.users.read"])))
        .await;
    assert_denied(granted, &client_id);
    assert_denied(
        client
            .revoke_scopes(as_caller(REPORTS, revoke(&client_id, &["okta.users.read"])))
            .await,
        &client_id,
    );
    assert_denied(
        client
            .rotate_key(as_caller(REPORTS, rotate(&client_id)))
            .await,
        &client_id,
    );
    assert_denied(
        client
            .delete_service_app(as_caller(REPORTS, delete(&client_id)))
            .await,
        &client_id,
    );
    let token = GetAccessTokenRequest {
        client_id: client_id.clone(),
        scopes: vec!["okta.users.read".into()],
        force_refresh: false,
    };
    assert_denied(
        client.get_access_token(as_caller(REPORTS, token)).await,
        &client_id,
    );
    let watch = WatchRotationsRequest {
        client_ids: vec![client_id.clone()],
        include_private_keys: false,
    };
    assert_denied(
        client.watch_rotations(as_caller(REPORTS, watch)).await,
        &client_id,
    );
    assert_eq!(
        policy_env.okta_request_count(),
        before,
        "a denied call reached Okta"
    );

    // The admin manages every app.
    client
        .grant_scopes(as_caller(OPS, grant(&client_id, &["okta.users.read"])))
        .await
        .expect("admin grants");
    client
        .rotate_key(as_caller(OPS, rotate(&client_id)))
        .await
        .expect("admin rotates");
    client
        .revoke_scopes(as_caller(OPS, revoke(&client_id, &["okta.users.read"])))
        .await
        .expect("admin revokes");
    client
        .delete_service_app(as_caller(OPS, delete(&client_id)))
        .await
        .expect("admin deletes");
    assert_eq!(
        policy_env.env.okta_app(&client_id).map(|app| app.id),
        None,
        "the app is gone from Okta"
    );
    policy_env.env.stop().await;
}

#[tokio::test]
async fn owner_manages_its_app() {
    let policy_env = start(POLICY, false).await;
    let client_id = policy_env.create_generated(BILLING, "billing-self").await;
    let mut client = policy_env.client();
    client
        .grant_scopes(as_caller(BILLING, grant(&client_id, &["okta.users.read"])))
        .await
        .expect("owner grants");
    client
        .rotate_key(as_caller(BILLING, rotate(&client_id)))
        .await
        .expect("owner rotates");
    client
        .revoke_scopes(as_caller(BILLING, revoke(&client_id, &["okta.users.read"])))
        .await
        .expect("owner revokes");
    client
        .delete_service_app(as_caller(BILLING, delete(&client_id)))
        .await
        .expect("owner deletes");
    policy_env.env.stop().await;
}

#[tokio::test]
async fn name_outside_prefix_is_denied() {
    let policy_env = start(POLICY, false).await;
    let before = policy_env.okta_request_count();
    let mut client = policy_env.client();

    let created = client
        .create_service_app(as_caller(BILLING, create_request("reports-sneaky")))
        .await;
    assert_denied(created, "reports-sneaky");
    let register = RegisterServiceRequest {
        service_name: "payroll".into(),
        scope_ids: vec!["okta.users.read".into()],
        ..RegisterServiceRequest::default()
    };
    assert_denied(
        client
            .register_service(as_caller(BILLING, register.clone()))
            .await,
        "payroll",
    );
    let over_scoped = RegisterServiceRequest {
        service_name: "billing-worker".into(),
        scope_ids: vec!["okta.users.read".into(), "okta.roles.manage".into()],
        ..RegisterServiceRequest::default()
    };
    assert_denied(
        client
            .register_service(as_caller(BILLING, over_scoped))
            .await,
        "okta.roles.manage",
    );
    assert_eq!(
        policy_env.okta_request_count(),
        before,
        "a denied create reached Okta"
    );

    // Within the prefix, RegisterService works; another caller may not
    // take over the registered name even where its prefixes allow it.
    let allowed = RegisterServiceRequest {
        service_name: "billing-worker".into(),
        scope_ids: vec!["okta.users.read".into()],
        ..RegisterServiceRequest::default()
    };
    let registered = client
        .register_service(as_caller(BILLING, allowed.clone()))
        .await
        .expect("register within the prefix")
        .into_inner();
    assert!(registered.created);
    let before = policy_env.okta_request_count();
    let other = client
        .register_service(as_caller(OPS, allowed.clone()))
        .await;
    assert!(other.is_ok(), "the admin may use any app: {other:?}");
    assert_eq!(
        policy_env.okta_request_count(),
        before + 1,
        "the admin's register confirms the app in Okta only"
    );
    policy_env.env.stop().await;
}

#[tokio::test]
async fn key_delivery_follows_policy() {
    let policy_env = start(POLICY, true).await;
    let mut client = policy_env.client();

    let billing_app = policy_env.create_generated(BILLING, "billing-keys").await;
    let watch = WatchRotationsRequest {
        client_ids: vec![billing_app],
        include_private_keys: true,
    };
    assert_denied(
        client.watch_rotations(as_caller(BILLING, watch)).await,
        "deliver_private_keys",
    );

    let reports_app = policy_env.create_generated(REPORTS, "reports-keys").await;
    let watch = WatchRotationsRequest {
        client_ids: vec![reports_app],
        include_private_keys: true,
    };
    let mut stream = client
        .watch_rotations(as_caller(REPORTS, watch))
        .await
        .expect("reports may receive keys")
        .into_inner();
    let message = stream.message().await.expect("message").expect("first");
    let key = message.apps[0]
        .signing_key
        .as_ref()
        .expect("the private key is delivered");
    assert!(key.pkcs8_pem.contains("BEGIN PRIVATE KEY"));
    assert_eq!(key.kid, message.apps[0].signing_kid);
    policy_env.env.stop().await;
}

/// A reload that takes a right away ends the open streams that relied on
/// it, with PERMISSION_DENIED, and leaves the other streams open.
#[tokio::test]
async fn reload_ends_streams_of_revoked_rights() {
    let policy_env = start(POLICY, true).await;
    let mut client = policy_env.client();
    let reports_app = policy_env
        .create_generated(REPORTS, "reports-revoked")
        .await;
    let mut with_keys = client
        .watch_rotations(as_caller(
            REPORTS,
            WatchRotationsRequest {
                client_ids: vec![reports_app],
                include_private_keys: true,
            },
        ))
        .await
        .expect("reports may receive keys")
        .into_inner();
    with_keys.message().await.expect("message").expect("first");
    let billing_app = policy_env.create_generated(BILLING, "billing-kept").await;
    let mut plain = client
        .watch_rotations(as_caller(
            BILLING,
            WatchRotationsRequest {
                client_ids: vec![billing_app.clone()],
                include_private_keys: false,
            },
        ))
        .await
        .expect("billing may watch")
        .into_inner();
    let first = plain.message().await.expect("message").expect("first");

    std::fs::write(
        &policy_env.policy_path,
        POLICY.replace("deliver_private_keys = true\n", ""),
    )
    .expect("write policy");
    policy_env.policies.reload().expect("valid policy");

    let ended = tokio::time::timeout(Duration::from_secs(10), with_keys.message())
        .await
        .expect("the stream ends within 10 s");
    assert_denied(ended, "deliver_private_keys");

    client
        .rotate_key(as_caller(BILLING, rotate(&billing_app)))
        .await
        .expect("billing may rotate");
    let next = tokio::time::timeout(Duration::from_secs(10), plain.message())
        .await
        .expect("a message within 10 s")
        .expect("the stream stays open")
        .expect("a message");
    assert!(next.revision > first.revision, "{next:?}");
    policy_env.env.stop().await;
}

#[tokio::test]
async fn key_delivery_needs_server_switch() {
    let policy_env = start(POLICY, false).await;
    let reports_app = policy_env
        .create_generated(REPORTS, "reports-no-keys")
        .await;
    let watch = WatchRotationsRequest {
        client_ids: vec![reports_app],
        include_private_keys: true,
    };
    let result = policy_env
        .client()
        .watch_rotations(as_caller(REPORTS, watch))
        .await;
    assert_denied(result, "--deliver-private-keys");
    policy_env.env.stop().await;
}

const READ_ONLY: &str = r#"
[[caller]]
id = "billing"
operations = ["read"]
"#;

const CREATOR: &str = r#"
[[caller]]
id = "billing"
operations = ["read", "create"]
client_name_prefixes = ["billing-"]
"#;

#[tokio::test]
async fn reload_applies_valid_policy_only() {
    let policy_env = start(READ_ONLY, false).await;
    let mut client = policy_env.client();
    let created = client
        .create_service_app(as_caller(BILLING, create_request("billing-reload")))
        .await;
    assert_denied(created, "\"create\"");

    std::fs::write(&policy_env.policy_path, CREATOR).expect("write policy");
    policy_env
        .policies
        .reload()
        .expect("the new policy is valid");
    client
        .create_service_app(as_caller(BILLING, create_request("billing-reload")))
        .await
        .expect("create is allowed after the reload");

    std::fs::write(
        &policy_env.policy_path,
        "[[caller]]\nid = \"billing\"\noperations = [\"reed\"]\n",
    )
    .expect("write policy");
    let error = policy_env
        .policies
        .reload()
        .expect_err("the broken policy is rejected");
    assert!(format!("{error:#}").contains("\"reed\""), "{error:#}");
    client
        .create_service_app(as_caller(BILLING, create_request("billing-reload-2")))
        .await
        .expect("the previous policy stays in force");
    policy_env.env.stop().await;
}

#[tokio::test]
async fn sighup_reloads_policy() {
    let policy_env = start(READ_ONLY, false).await;
    let mut client = policy_env.client();
    // A served call proves that the server listens for SIGHUP, so the
    // signal below cannot end the test process.
    let created = client
        .create_service_app(as_caller(BILLING, create_request("billing-hangup")))
        .await;
    assert_denied(created, "\"create\"");

    std::fs::write(&policy_env.policy_path, CREATOR).expect("write policy");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let result = client
            .create_service_app(as_caller(BILLING, create_request("billing-hangup")))
            .await;
        match result {
            Ok(_) => break,
            Err(status) if status.code() == Code::PermissionDenied => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the policy was not reloaded within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("create failed: {status:?}"),
        }
    }
    policy_env.env.stop().await;
}

#[tokio::test]
async fn audit_records_each_mutating_call() {
    let policy_env = start(POLICY, false).await;
    let mut client = policy_env.client();
    let client_id = policy_env
        .create_generated(BILLING, "billing-audited")
        .await;
    client
        .grant_scopes(as_caller(BILLING, grant(&client_id, &["okta.users.read"])))
        .await
        .expect("grant");
    assert_denied(
        client
            .grant_scopes(as_caller(
                BILLING,
                grant(&client_id, &["okta.roles.manage"]),
            ))
            .await,
        "okta.roles.manage",
    );
    client
        .rotate_key(as_caller(BILLING, rotate(&client_id)))
        .await
        .expect("rotate");
    let mut added = sample_jwks().keys.remove(0);
    added.kid = "caller-held-1".into();
    let add = AddKeyRequest {
        client_id: client_id.clone(),
        key: Some(added),
    };
    client
        .add_key(as_caller(BILLING, add))
        .await
        .expect("add key");
    let retire = RetireKeyRequest {
        client_id: client_id.clone(),
        kid: "caller-held-1".into(),
    };
    client
        .retire_key(as_caller(BILLING, retire))
        .await
        .expect("retire key");
    client
        .revoke_scopes(as_caller(BILLING, revoke(&client_id, &["okta.users.read"])))
        .await
        .expect("revoke");
    client
        .delete_service_app(as_caller(BILLING, delete(&client_id)))
        .await
        .expect("delete");

    let list = |page_token: String, page_size: i32| ListAuditEventsRequest {
        page_size,
        page_token,
        client_id: client_id.clone(),
    };
    assert_denied(
        client
            .list_audit_events(as_caller(BILLING, list(String::new(), 0)))
            .await,
        "ListAuditEvents",
    );
    let events = client
        .list_audit_events(as_caller(OPS, list(String::new(), 0)))
        .await
        .expect("the admin lists the audit log")
        .into_inner()
        .events;

    let expected = [
        ("DeleteServiceApp", "OK"),
        ("RevokeScopes", "OK"),
        ("RetireKey", "OK"),
        ("AddKey", "OK"),
        ("RotateKey", "OK"),
        ("GrantScopes", "PERMISSION_DENIED"),
        ("GrantScopes", "OK"),
        ("CreateServiceApp", "OK"),
    ];
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.operation.as_str(), event.status_code.as_str()))
        .collect();
    assert_eq!(seen, expected, "one event per call, newest first");
    for event in &events {
        assert_eq!(event.caller_id, "billing", "{event:?}");
        assert_eq!(event.client_id, client_id, "{event:?}");
        assert!(event.time.is_some(), "{event:?}");
        if event.status_code == "OK" {
            assert!(
                !event.okta_request_ids.is_empty(),
                "no Okta request id: {event:?}"
            );
            assert!(event.message.is_empty(), "{event:?}");
        } else {
            assert!(
                event.okta_request_ids.is_empty(),
                "a denied call has Okta request ids: {event:?}"
            );
            assert!(event.message.contains("okta.roles.manage"), "{event:?}");
        }
    }
    let ids: Vec<i64> = events.iter().map(|event| event.event_id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
    assert_eq!(events[5].scope_ids, vec!["okta.roles.manage"]);
    assert_eq!(events[6].scope_ids, vec!["okta.users.read"]);
    assert_eq!(events[2].kids, vec!["caller-held-1"]);
    assert_eq!(events[3].kids, vec!["caller-held-1"]);
    assert_eq!(events[4].kids.len(), 1, "the rotation's new kid");
    assert_eq!(events[7].kids.len(), 1, "the generated key's kid");
    assert_ne!(events[4].kids, events[7].kids);

    // Pages of three give the same events.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_audit_events(as_caller(OPS, list(token, 3)))
            .await
            .expect("page")
            .into_inner();
        assert!(page.events.len() <= 3);
        paged.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, events);
    policy_env.env.stop().await;
}

#[tokio::test]
async fn emulator_sends_request_ids() {
    let policy_env = start(POLICY, false).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/apps", policy_env.env.org_url))
        .header(
            "authorization",
            format!("SSWS {}", registrar_tests::API_TOKEN),
        )
        .send()
        .await
        .expect("the emulator answers");
    let request_id = response
        .headers()
        .get("x-okta-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(!request_id.is_empty(), "no X-Okta-Request-Id");
    policy_env.env.stop().await;
}
