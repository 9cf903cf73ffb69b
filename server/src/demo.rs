//! `registrar demo`: starts an Okta emulator and a registrar on free loopback
//! ports and runs the main job through the gRPC API with Okta's sample
//! service-app request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GetAccessTokenRequest, GrantScopesRequest, Jwk, Jwks,
    ListGrantsRequest, RotateKeyRequest, RotationPhase, ScopeOutcome, WatchRotationsRequest,
    WatchRotationsResponse, create_service_app_request::KeySource,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{DemoArgs, ServerConfig, default_database_url};
use crate::org::OrgUrl;
use crate::secret::Secret;

/// The registration request of Okta's service-app guide: client name and
/// JWKS as the guide shows them.
const SAMPLE_REQUEST: &str = include_str!("../../fixtures/okta-dcr-service-app-request.json");
/// The client assertion lifetime of the demo's registrar.
const DEMO_ASSERTION_LIFETIME: Duration = Duration::from_secs(5);
/// The scopes the demo grants.
const DEMO_SCOPES: [&str; 2] = ["okta.users.read", "okta.apps.read"];

/// Runs the demo and prints each step with the grpcurl command that repeats
/// it.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };

    // The emulator accepts a random token that lives only in this process.
    let api_token = format!("demo-{}", uuid_like());
    let emulator = okta_emulator::Emulator::new(okta_emulator::Config::new(api_token.clone()));
    let emulator_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the emulator")?;
    let org_url = format!("http://{}", emulator_listener.local_addr()?);
    let emulator_task = tokio::spawn({
        let emulator = emulator.clone();
        let stopped = stopped();
        async move { emulator.serve(emulator_listener, stopped).await }
    });

    let data_dir = std::env::temp_dir().join(format!("registrar-demo-{}", uuid_like()));
    let config = ServerConfig {
        okta_org: OrgUrl::parse(&org_url).map_err(anyhow::Error::msg)?,
        okta_credential_source: None,
        okta_credential: crate::okta::OktaCredential::ApiToken(Secret::new(api_token)),
        database_url: default_database_url(&data_dir)?,
        okta_timeout: std::time::Duration::from_secs(10),
        okta_pacing: crate::okta::PacingSettings::default(),
        master_key: crate::keys::master::MasterKey::random(),
        // Short timings, so that the demo shows a whole key rotation. The
        // grace period covers the assertion lifetime but no clock skew,
        // which is safe only because the emulator shares this machine's
        // clock.
        assertion_lifetime: DEMO_ASSERTION_LIFETIME,
        shutdown_grace: crate::config::DEFAULT_SHUTDOWN_GRACE,
        rotation: crate::rotation::RotationSettings {
            propagation_delay: Duration::from_secs(1),
            grace_period: DEMO_ASSERTION_LIFETIME + Duration::from_secs(2),
            key_lifetime: None,
        },
        deliver_private_keys: false,
        policies: crate::policy::Policies::allow_all(),
        // The demo's registrar listens on loopback only, for grpcurl
        // without credentials.
        auth: crate::auth::AuthConfig::insecure_loopback(),
        metrics_listen: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the registrar")?;
    let address = listener.local_addr()?;
    let server_task = tokio::spawn(crate::run(listener, config, stopped()));

    println!("Okta emulator: {org_url}");
    println!(
        "registrar:     {address} (plaintext gRPC, SQLite in {})",
        data_dir.display()
    );
    let outcome = run_steps(&address.to_string()).await;

    if outcome.is_ok() && args.keep_running {
        println!("\nBoth servers keep running; press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    } else if outcome.is_ok() {
        println!(
            "\nThe demo servers stop now; run `registrar demo --keep-running` to try these commands."
        );
    }
    let _ = stop_tx.send(true);
    server_task.await.context("joining the registrar")??;
    emulator_task.await.context("joining the emulator")??;
    let _ = std::fs::remove_dir_all(&data_dir);
    outcome
}

async fn run_steps(address: &str) -> anyhow::Result<()> {
    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .context("connecting to the registrar")?;

    let request = sample_request()?;
    println!("\n1. CreateServiceApp {:?}", request.client_name);
    let app = client
        .create_service_app(request)
        .await
        .context("CreateServiceApp failed")?
        .into_inner()
        .app
        .context("CreateServiceApp returned no app")?;
    println!("   client_id: {}", app.client_id);
    for key in &app.keys {
        println!(
            "   key:       kid {:?}, thumbprint {}",
            key.kid, key.thumbprint
        );
    }

    println!("\n2. GrantScopes {}", DEMO_SCOPES.join(", "));
    let results = client
        .grant_scopes(GrantScopesRequest {
            client_id: app.client_id.clone(),
            scope_ids: DEMO_SCOPES.iter().map(ToString::to_string).collect(),
            issuer: String::new(),
        })
        .await
        .context("GrantScopes failed")?
        .into_inner()
        .results;
    for result in &results {
        let outcome = ScopeOutcome::try_from(result.outcome).unwrap_or(ScopeOutcome::Unspecified);
        println!(
            "   {:<16} {:<16} {}{}",
            result.scope_id,
            outcome.as_str_name().trim_start_matches("SCOPE_OUTCOME_"),
            result.grant_id,
            result.error
        );
    }

    println!("\n3. ListGrants");
    let grants = client
        .list_grants(ListGrantsRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .context("ListGrants failed")?
        .into_inner()
        .grants;
    for grant in &grants {
        println!("   {:<16} {}", grant.scope_id, grant.grant_id);
    }

    println!(
        "\n4. CreateServiceApp \"demo-generated-service\" with a server-generated RSA key, GrantScopes okta.users.read, GetAccessToken"
    );
    let generated = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "demo-generated-service".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey::default())),
            dpop_bound: false,
        })
        .await
        .context("CreateServiceApp with generate_key failed")?
        .into_inner()
        .app
        .context("CreateServiceApp returned no app")?;
    println!("   client_id: {}", generated.client_id);
    for key in &generated.keys {
        println!("   key:       kid {} (the RFC 7638 thumbprint)", key.kid);
    }
    client
        .grant_scopes(GrantScopesRequest {
            client_id: generated.client_id.clone(),
            scope_ids: vec!["okta.users.read".into()],
            issuer: String::new(),
        })
        .await
        .context("GrantScopes failed")?;
    let token = client
        .get_access_token(GetAccessTokenRequest {
            client_id: generated.client_id.clone(),
            scopes: vec!["okta.users.read".into()],
            force_refresh: false,
        })
        .await
        .context("GetAccessToken failed")?
        .into_inner();
    let lifetime = token
        .expires_at
        .map(|at| at.seconds - i64::try_from(unix_now()).unwrap_or_default())
        .unwrap_or_default();
    // The demo token comes from the local emulator; only its start is shown.
    let shown: String = token.access_token.chars().take(24).collect();
    println!(
        "   token:     {shown}… ({}, scopes {}, expires in {lifetime} s)",
        token.token_type,
        token.scopes.join(" ")
    );

    println!("\n5. WatchRotations and RotateKey for \"demo-generated-service\"");
    let mut watch = client
        .watch_rotations(WatchRotationsRequest {
            client_ids: vec![generated.client_id.clone()],
            include_private_keys: false,
        })
        .await
        .context("WatchRotations failed")?
        .into_inner();
    let first = next_watch_message(&mut watch).await?;
    print_key_state(&first);
    client
        .rotate_key(RotateKeyRequest {
            client_id: generated.client_id.clone(),
        })
        .await
        .context("RotateKey failed")?;
    loop {
        let message = next_watch_message(&mut watch).await?;
        print_key_state(&message);
        if message
            .apps
            .first()
            .is_some_and(|app| app.phase == RotationPhase::Unspecified as i32)
        {
            break;
        }
    }

    let id = &app.client_id;
    println!("\nRepeat each step with grpcurl (from the repository root):");
    println!("   grpcurl -plaintext {address} list");
    println!("   grpcurl -plaintext {address} grpc.health.v1.Health/Check");
    println!(
        "   grpcurl -plaintext -d @ {address} registrar.v1.Registrar/CreateServiceApp < fixtures/create-service-app.json"
    );
    println!(
        "   grpcurl -plaintext -d '{{\"client_id\":\"{id}\",\"scope_ids\":[\"okta.users.read\",\"okta.apps.read\"]}}' {address} registrar.v1.Registrar/GrantScopes"
    );
    println!(
        "   grpcurl -plaintext -d '{{\"client_id\":\"{id}\"}}' {address} registrar.v1.Registrar/ListGrants"
    );
    println!(
        "   grpcurl -plaintext -d '{{\"client_id\":\"{id}\"}}' {address} registrar.v1.Registrar/GetServiceApp"
    );
    println!("   grpcurl -plaintext -d '{{}}' {address} registrar.v1.Registrar/ListServiceApps");
    println!(
        "   grpcurl -plaintext -d '{{\"client_id\":\"{}\",\"scopes\":[\"okta.users.read\"]}}' {address} registrar.v1.Registrar/GetAccessToken",
        generated.client_id
    );
    Ok(())
}

async fn next_watch_message(
    stream: &mut tonic::Streaming<WatchRotationsResponse>,
) -> anyhow::Result<WatchRotationsResponse> {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .context("no watch message within 60 s")?
        .context("WatchRotations failed")?
        .context("the watch stream ended")
}

/// Prints one watch message as a line: revision, phase, signing kid and the
/// kids registered in Okta.
fn print_key_state(message: &WatchRotationsResponse) {
    for app in &message.apps {
        let phase = RotationPhase::try_from(app.phase).unwrap_or(RotationPhase::Unspecified);
        let phase = match phase {
            RotationPhase::Unspecified => "no rotation",
            RotationPhase::KeyGenerated => "new key generated",
            RotationPhase::NewKeyAdded => "new key added to Okta",
            RotationPhase::SigningSwitched => "signing switched",
        };
        let kids: Vec<String> = app.keys.iter().map(|key| short_kid(&key.kid)).collect();
        println!(
            "   revision {:>3}: {phase:<22} signing {}  keys in Okta [{}]",
            message.revision,
            short_kid(&app.signing_kid),
            kids.join(", ")
        );
    }
}

fn short_kid(kid: &str) -> String {
    kid.chars().take(10).collect()
}

/// Converts Okta's sample registration request into a `CreateServiceApp`
/// request.
fn sample_request() -> anyhow::Result<CreateServiceAppRequest> {
    let sample: Value =
        serde_json::from_str(SAMPLE_REQUEST).context("parsing the sample request")?;
    let text = |value: &Value, name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let keys = sample["jwks"]["keys"]
        .as_array()
        .context("the sample request has no jwks.keys")?
        .iter()
        .map(|key| Jwk {
            kty: text(key, "kty"),
            kid: text(key, "kid"),
            r#use: text(key, "use"),
            alg: text(key, "alg"),
            n: text(key, "n"),
            e: text(key, "e"),
            ..Jwk::default()
        })
        .collect();
    Ok(CreateServiceAppRequest {
        client_name: text(&sample, "client_name"),
        key_source: Some(KeySource::Jwks(Jwks { keys })),
        dpop_bound: false,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Returns a value unique enough for a temporary name.
fn uuid_like() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos:x}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_request_is_valid() {
        let request = sample_request().expect("sample parses");
        assert_eq!(request.client_name, "Service Client Name");
        crate::validate::client_name(&request.client_name).expect("valid name");
        let Some(KeySource::Jwks(jwks)) = &request.key_source else {
            panic!("sample has a JWKS");
        };
        crate::jwk::validate_jwks("jwks", jwks).expect("valid JWKS");
        assert_eq!(jwks.keys[0].kid, "O4O");
    }
}
