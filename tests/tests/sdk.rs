//! The SDK's typed client against a running registrar and emulator.

use registrar_sdk::v1::ScopeOutcome;
use registrar_sdk::{Client, Error, failed_scopes};
use registrar_tests::{TestEnv, sample_jwks};

#[tokio::test]
async fn sdk_registers_grants_and_deletes() {
    let env = TestEnv::start().await;
    let mut registrar = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect");

    let app = registrar
        .create_service_app("sdk-service", sample_jwks())
        .await
        .expect("create");
    let results = registrar
        .grant_scopes(&app.client_id, &["okta.users.read", "okta.groups.read"])
        .await
        .expect("grant");
    assert!(failed_scopes(&results).is_empty(), "{results:?}");
    assert!(
        results
            .iter()
            .all(|result| result.outcome == ScopeOutcome::Granted as i32)
    );

    let grants = registrar
        .list_grants(&app.client_id)
        .await
        .expect("list grants");
    assert_eq!(grants.len(), 2);
    let apps = registrar
        .list_service_apps("sdk-")
        .await
        .expect("list apps");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].client_id, app.client_id);

    let revoked = registrar
        .revoke_scopes(&app.client_id, &["okta.groups.read"])
        .await
        .expect("revoke");
    assert_eq!(revoked[0].outcome, ScopeOutcome::Revoked as i32);
    registrar
        .delete_service_app(&app.client_id)
        .await
        .expect("delete");

    match registrar.get_service_app(&app.client_id).await {
        Err(Error::Status(status)) => assert_eq!(status.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    env.stop().await;
}

#[tokio::test]
async fn sdk_rejects_bad_endpoint() {
    let error = Client::connect("not a uri")
        .await
        .expect_err("invalid endpoint");
    assert!(matches!(error, Error::InvalidEndpoint { .. }), "{error}");
}
