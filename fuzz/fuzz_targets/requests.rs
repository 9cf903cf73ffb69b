//! gRPC requests as protobuf bytes, through the checks each handler runs
//! before it calls Okta. The first byte picks the request type.
//!
//! NOTE: the handlers in `server/src/service/` inline their checks; this
//! target repeats their order, so a new check there needs a line here.

#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use registrar_api::prost::Message;
use registrar_api::v1::{
    AddKeyRequest, CreateServiceAppRequest, GetAccessTokenRequest, GrantScopesRequest,
    KeyAlgorithm, ListServiceAppsRequest, RegisterServiceRequest, RetireKeyRequest,
    RevokeScopesRequest, SignDpopProofRequest, create_service_app_request::KeySource,
};
use registrar_fuzz::{check_error, check_jwks_error, check_private_not_echoed};
use registrar_server::org::OrgUrl;
use registrar_server::validate::{self, InvalidArgument};
use registrar_server::{fuzzing, jwk};

fn org() -> &'static OrgUrl {
    static ORG: OnceLock<OrgUrl> = OnceLock::new();
    ORG.get_or_init(|| OrgUrl::parse("https://example.okta.com").expect("valid org URL"))
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    match selector % 9 {
        0 => decoded(body, create),
        1 => decoded(body, list),
        2 => decoded(body, grant),
        3 => decoded(body, |request: RevokeScopesRequest| {
            client_id(&request.client_id)?;
            scope_list("scope_ids", &request.scope_ids)
        }),
        4 => decoded(body, |request: GetAccessTokenRequest| {
            client_id(&request.client_id)?;
            scope_list("scopes", &request.scopes)
        }),
        5 => decoded(body, sign_proof),
        6 => decoded(body, register),
        7 => decoded(body, add_key),
        _ => decoded(body, |request: RetireKeyRequest| {
            client_id(&request.client_id)?;
            if request.kid.is_empty() {
                return Err(InvalidArgument::new("kid", "is empty"));
            }
            expect_field(validate::kid("kid", &request.kid), "kid")
        }),
    }
});

/// Decodes a request and runs its checks. An error must name a field.
fn decoded<R: Message + Default>(
    body: &[u8],
    check: impl FnOnce(R) -> Result<(), InvalidArgument>,
) {
    if let Ok(request) = R::decode(body) {
        if let Err(error) = check(request) {
            check_error(&error, "");
        }
    }
}

/// Asserts that an error names the expected field.
fn expect_field<T>(result: Result<T, InvalidArgument>, prefix: &str) -> Result<T, InvalidArgument> {
    if let Err(error) = &result {
        check_error(error, prefix);
    }
    result
}

fn client_id(id: &str) -> Result<(), InvalidArgument> {
    expect_field(validate::client_id(id), "client_id")?;
    assert!(id.len() <= validate::MAX_CLIENT_ID_LEN);
    assert!(!id.is_empty() && id.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    Ok(())
}

fn scope_list(field: &str, ids: &[String]) -> Result<(), InvalidArgument> {
    let unique = expect_field(validate::scope_list(field, ids), field)?;
    assert!(!unique.is_empty());
    assert!(unique.len() <= validate::MAX_SCOPES);
    let distinct: HashSet<&String> = unique.iter().collect();
    assert_eq!(distinct.len(), unique.len(), "duplicates kept");
    assert!(
        unique
            .iter()
            .all(|id| id.len() <= validate::MAX_SCOPE_ID_LEN && id.contains('.'))
    );
    Ok(())
}

fn create(request: CreateServiceAppRequest) -> Result<(), InvalidArgument> {
    expect_field(validate::client_name(&request.client_name), "client_name")?;
    assert!(request.client_name.chars().count() <= validate::MAX_CLIENT_NAME_LEN);
    match &request.key_source {
        Some(KeySource::Jwks(jwks)) => {
            if let Err(error) = jwk::validate_jwks("jwks", jwks) {
                check_jwks_error(&error, jwks);
                return Err(error);
            }
        }
        Some(KeySource::GenerateKey(options)) => {
            if KeyAlgorithm::try_from(options.algorithm).is_err() {
                return Err(InvalidArgument::new("generate_key.algorithm", "unknown"));
            }
        }
        None => return Err(InvalidArgument::new("key_source", "is not set")),
    }
    Ok(())
}

fn list(request: ListServiceAppsRequest) -> Result<(), InvalidArgument> {
    expect_field(validate::name_prefix(&request.name_prefix), "name_prefix")?;
    if !request.page_token.is_empty() {
        expect_field(
            fuzzing::decode_page_token(&request.page_token),
            "page_token",
        )?;
    }
    Ok(())
}

fn grant(request: GrantScopesRequest) -> Result<(), InvalidArgument> {
    client_id(&request.client_id)?;
    scope_list("scope_ids", &request.scope_ids)?;
    // Must not panic on any issuer.
    org().is_issuer(&request.issuer);
    Ok(())
}

fn sign_proof(request: SignDpopProofRequest) -> Result<(), InvalidArgument> {
    client_id(&request.client_id)?;
    let method = expect_field(validate::http_method(&request.http_method), "http_method")?;
    assert!(!method.is_empty());
    let htu = expect_field(validate::proof_url(&request.http_url), "http_url")?;
    assert!(request.http_url.len() <= validate::MAX_PROOF_URL_LEN);
    assert!(
        htu.starts_with("http://") || htu.starts_with("https://"),
        "{htu}"
    );
    assert!(
        !htu.contains('?') && !htu.contains('#'),
        "htu {htu} keeps a query or fragment"
    );
    Ok(())
}

fn register(request: RegisterServiceRequest) -> Result<(), InvalidArgument> {
    expect_field(
        validate::app_name("service_name", &request.service_name),
        "service_name",
    )?;
    scope_list("scope_ids", &request.scope_ids)?;
    let key = request.key.unwrap_or_default();
    if KeyAlgorithm::try_from(key.algorithm).is_err() {
        return Err(InvalidArgument::new("key.algorithm", "unknown"));
    }
    Ok(())
}

fn add_key(request: AddKeyRequest) -> Result<(), InvalidArgument> {
    client_id(&request.client_id)?;
    let Some(key) = request.key else {
        return Err(InvalidArgument::new("key", "is missing"));
    };
    if let Err(error) = jwk::validate_jwk("key", &key) {
        check_error(&error, "key.");
        check_private_not_echoed(&error, &key);
        return Err(error);
    }
    assert!(
        jwk::thumbprint(&key).is_some(),
        "a valid key has a thumbprint"
    );
    Ok(())
}
