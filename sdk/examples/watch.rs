//! Registers a service with a running registrar and prints its app's key
//! state each time it changes, until Ctrl-C.
//!
//! Start a registrar first, for example `registrar demo --keep-running`,
//! then run:
//!
//! ```sh
//! cargo run -p registrar-sdk --example watch -- http://127.0.0.1:50051 billing-worker okta.users.read
//! ```
//!
//! Rotating the app's key then prints one line per rotation phase:
//!
//! ```sh
//! grpcurl -plaintext -d '{"client_id": "CLIENT_ID"}' 127.0.0.1:50051 registrar.v1.Registrar/RotateKey
//! ```

use registrar_sdk::Client;
use registrar_sdk::v1::AppKeyState;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: watch ENDPOINT SERVICE_NAME SCOPE...";
    let endpoint = args.next().ok_or(usage)?;
    let service_name = args.next().ok_or(usage)?;
    let scopes: Vec<String> = args.collect();
    if scopes.is_empty() {
        return Err(usage.into());
    }
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();

    let identity = Client::connect(endpoint)
        .await?
        .register(&service_name, &scopes)
        .await?;
    println!("{} is client_id {}", service_name, identity.client_id());
    print_state(&identity.key_state());

    let mut changes = identity.changes();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    let status = identity.watch_error();
                    return Err(format!("the key state watch ended: {status:?}").into());
                }
                let state = changes.borrow_and_update().clone();
                print_state(&state);
            }
            interrupted = &mut ctrl_c => {
                interrupted?;
                break;
            }
        }
    }
    identity.close().await;
    Ok(())
}

fn print_state(state: &AppKeyState) {
    let kids: Vec<&str> = state.keys.iter().map(|key| key.kid.as_str()).collect();
    println!(
        "revision {}: phase {}, signing with {}, keys in Okta [{}]",
        state.revision,
        state.phase().as_str_name(),
        state.signing_kid,
        kids.join(", ")
    );
}
