//! The main job through the gRPC API against the Okta emulator: create a
//! service app, grant scopes, list, revoke and delete.

use registrar_api::v1::{
    AppStatus, DeleteServiceAppRequest, GetServiceAppRequest, GrantScopesRequest, KeyStatus,
    ListGrantsRequest, ListServiceAppsRequest, RevokeScopesRequest, ScopeOutcome, ScopeResult,
};
use registrar_tests::{TestEnv, create_request};
use tonic::Code;

fn outcomes(results: &[ScopeResult]) -> Vec<(String, ScopeOutcome)> {
    results
        .iter()
        .map(|result| {
            let outcome = ScopeOutcome::try_from(result.outcome).expect("known outcome");
            (result.scope_id.clone(), outcome)
        })
        .collect()
}

fn grant_request(client_id: &str, scopes: &[&str]) -> GrantScopesRequest {
    GrantScopesRequest {
        client_id: client_id.to_string(),
        scope_ids: scopes.iter().map(ToString::to_string).collect(),
        issuer: String::new(),
    }
}

#[tokio::test]
async fn main_job_end_to_end() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();

    // Create with the JWKS of Okta's sample request.
    let app = client
        .create_service_app(create_request("Service Client Name"))
        .await
        .expect("create succeeds")
        .into_inner()
        .app
        .expect("app returned");
    assert!(app.client_id.starts_with("0oa"), "{}", app.client_id);
    assert_eq!(app.client_name, "Service Client Name");
    assert_eq!(app.status, AppStatus::Active as i32);
    assert!(app.client_id_issued_at.is_some());
    assert_eq!(app.keys.len(), 1);
    assert_eq!(app.keys[0].kid, "O4O");
    assert_eq!(app.keys[0].thumbprint.len(), 43);
    let okta_app = env.okta_app(&app.client_id).expect("app exists in Okta");
    assert_eq!(okta_app.application_type, "service");
    assert_eq!(okta_app.kids, vec!["O4O"]);

    // Grant two scopes.
    let scopes = ["okta.users.read", "okta.apps.read"];
    let results = client
        .grant_scopes(grant_request(&app.client_id, &scopes))
        .await
        .expect("grant succeeds")
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&results),
        vec![
            ("okta.users.read".to_string(), ScopeOutcome::Granted),
            ("okta.apps.read".to_string(), ScopeOutcome::Granted),
        ]
    );
    assert!(
        results
            .iter()
            .all(|result| result.grant_id.starts_with("oag"))
    );
    let mut granted = env.okta_app(&app.client_id).expect("app").granted_scopes;
    granted.sort();
    assert_eq!(granted, vec!["okta.apps.read", "okta.users.read"]);

    // The same request again: nothing new is posted to Okta.
    let grant_posts = env.count_requests("POST", "/grants");
    assert_eq!(grant_posts, 2);
    let again = client
        .grant_scopes(grant_request(&app.client_id, &scopes))
        .await
        .expect("repeated grant succeeds")
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&again),
        vec![
            ("okta.users.read".to_string(), ScopeOutcome::AlreadyGranted),
            ("okta.apps.read".to_string(), ScopeOutcome::AlreadyGranted),
        ]
    );
    assert_eq!(again[0].grant_id, results[0].grant_id);
    assert_eq!(env.count_requests("POST", "/grants"), grant_posts);

    // List grants.
    let grants = client
        .list_grants(ListGrantsRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("list grants")
        .into_inner()
        .grants;
    let mut listed: Vec<_> = grants.iter().map(|grant| grant.scope_id.as_str()).collect();
    listed.sort();
    assert_eq!(listed, vec!["okta.apps.read", "okta.users.read"]);
    assert!(grants.iter().all(|grant| grant.issuer == env.org_url));

    // Revoke one; revoking it again reports NOT_GRANTED.
    let revoke = RevokeScopesRequest {
        client_id: app.client_id.clone(),
        scope_ids: vec!["okta.apps.read".into()],
    };
    let revoked = client
        .revoke_scopes(revoke.clone())
        .await
        .expect("revoke")
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&revoked),
        vec![("okta.apps.read".to_string(), ScopeOutcome::Revoked)]
    );
    assert_eq!(revoked[0].grant_id, results[1].grant_id);
    let revoked_again = client
        .revoke_scopes(revoke)
        .await
        .expect("revoke again")
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&revoked_again),
        vec![("okta.apps.read".to_string(), ScopeOutcome::NotGranted)]
    );
    assert_eq!(
        env.okta_app(&app.client_id).expect("app").granted_scopes,
        vec!["okta.users.read"]
    );

    // Get and list.
    let fetched = client
        .get_service_app(GetServiceAppRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(fetched.client_name, "Service Client Name");
    assert_eq!(fetched.keys[0].kid, "O4O");
    assert_eq!(fetched.keys[0].thumbprint, app.keys[0].thumbprint);
    assert_eq!(fetched.keys[0].status, KeyStatus::Active as i32);
    assert!(fetched.keys[0].okta_key_id.starts_with("pks"));
    let listed = client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.apps.len(), 1);
    assert_eq!(listed.apps[0].client_id, app.client_id);
    assert!(listed.next_page_token.is_empty());

    // Delete: deactivate, then delete.
    client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("delete");
    assert!(env.okta_app(&app.client_id).is_none());
    assert_eq!(env.count_requests("POST", "/lifecycle/deactivate"), 1);
    let gone = client
        .get_service_app(GetServiceAppRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect_err("deleted app is not found");
    assert_eq!(gone.code(), Code::NotFound);
    assert!(
        gone.message().contains(&app.client_id),
        "{}",
        gone.message()
    );
    let again = client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect_err("second delete");
    assert_eq!(again.code(), Code::NotFound);

    // Every mutating call left an audit event, newest first, with the
    // caller and the request ids of the Okta calls it made.
    let events = client
        .list_audit_events(registrar_api::v1::ListAuditEventsRequest {
            page_size: 200,
            page_token: String::new(),
            client_id: app.client_id.clone(),
        })
        .await
        .expect("audit events")
        .into_inner()
        .events;
    let calls: Vec<(&str, &str)> = events
        .iter()
        .rev()
        .map(|event| (event.operation.as_str(), event.status_code.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("CreateServiceApp", "OK"),
            ("GrantScopes", "OK"),
            ("GrantScopes", "OK"),
            ("RevokeScopes", "OK"),
            ("RevokeScopes", "OK"),
            ("DeleteServiceApp", "OK"),
            ("DeleteServiceApp", "NOT_FOUND"),
        ]
    );
    for event in &events {
        assert_eq!(event.caller_id, "unauthenticated", "{event:?}");
        assert_eq!(event.client_id, app.client_id, "{event:?}");
    }
    let oldest = events.iter().rev();
    for event in oldest.take(2) {
        assert!(
            !event.okta_request_ids.is_empty(),
            "{} sent requests to Okta: {event:?}",
            event.operation
        );
    }
    let deleted = &events[1];
    assert!(!deleted.okta_request_ids.is_empty(), "{deleted:?}");

    env.stop().await;
}

#[tokio::test]
async fn list_pages_through_all_apps() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let mut created = Vec::new();
    for index in 0..5 {
        let app = client
            .create_service_app(create_request(&format!("pager-{index}")))
            .await
            .expect("create")
            .into_inner()
            .app
            .expect("app");
        created.push(app.client_id);
    }
    client
        .create_service_app(create_request("other-app"))
        .await
        .expect("create");

    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_service_apps(ListServiceAppsRequest {
                page_size: 2,
                page_token: page_token.clone(),
                name_prefix: "pager-".into(),
            })
            .await
            .expect("list page")
            .into_inner();
        pages += 1;
        assert!(page.apps.len() <= 2);
        seen.extend(page.apps.into_iter().map(|app| app.client_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);

    // A token is bound to its name prefix.
    let first = client
        .list_service_apps(ListServiceAppsRequest {
            page_size: 2,
            page_token: String::new(),
            name_prefix: "pager-".into(),
        })
        .await
        .expect("list")
        .into_inner();
    let mismatch = client
        .list_service_apps(ListServiceAppsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            name_prefix: "other".into(),
        })
        .await
        .expect_err("prefix mismatch");
    assert_eq!(mismatch.code(), Code::InvalidArgument);
    assert!(
        mismatch.message().starts_with("page_token:"),
        "{}",
        mismatch.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn duplicate_name_is_already_exists() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let first = client
        .create_service_app(create_request("billing-worker"))
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");
    let creates = env.count_requests("POST", "/oauth2/v1/clients");

    let second = client
        .create_service_app(create_request("billing-worker"))
        .await
        .expect_err("same name");
    assert_eq!(second.code(), Code::AlreadyExists);
    assert!(
        second.message().contains(&first.client_id),
        "{}",
        second.message()
    );
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), creates);

    // A name that only starts like an existing one is not taken.
    client
        .create_service_app(create_request("billing"))
        .await
        .expect("prefix of an existing name is free");
    env.stop().await;
}

#[tokio::test]
async fn grant_reports_rejected_scope_and_grants_the_rest() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = client
        .create_service_app(create_request("partial-grant"))
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");

    let results = client
        .grant_scopes(grant_request(
            &app.client_id,
            &["okta.unknownThing.read", "okta.users.read"],
        ))
        .await
        .expect("partial failure is not an RPC error")
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&results),
        vec![
            ("okta.unknownThing.read".to_string(), ScopeOutcome::Failed),
            ("okta.users.read".to_string(), ScopeOutcome::Granted),
        ]
    );
    assert!(
        results[0].error.contains("E0000001"),
        "{}",
        results[0].error
    );
    assert!(results[0].grant_id.is_empty());
    assert_eq!(
        env.okta_app(&app.client_id).expect("app").granted_scopes,
        vec!["okta.users.read"]
    );
    env.stop().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_name_make_one_app() {
    let env = TestEnv::start().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut client = env.new_client().await;
        tasks.push(tokio::spawn(async move {
            client
                .create_service_app(create_request("raced-name"))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{}", status.message()),
        }
    }
    assert_eq!(created, 1);
    let named = env
        .emulator
        .apps()
        .into_iter()
        .filter(|app| app.label == "raced-name")
        .count();
    assert_eq!(named, 1);
    env.stop().await;
}
