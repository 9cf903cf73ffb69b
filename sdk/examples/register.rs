//! Registers a service with a running registrar and prints a token's type
//! and scopes.
//!
//! Start a registrar first, for example `registrar demo --keep-running`,
//! then run:
//!
//! ```sh
//! cargo run -p registrar-sdk --example register -- http://127.0.0.1:50051 billing-worker okta.users.read
//! ```

use registrar_sdk::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: register ENDPOINT SERVICE_NAME SCOPE...";
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
    println!(
        "{} is client_id {} ({})",
        service_name,
        identity.client_id(),
        if identity.created() {
            "created"
        } else {
            "already registered"
        }
    );
    let token = identity.access_token(&scopes).await?;
    println!(
        "got a {} token with scopes {}",
        token.token_type,
        token.scopes.join(" ")
    );
    Ok(())
}
