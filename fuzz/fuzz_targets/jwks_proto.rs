//! A caller's JWKS as it arrives over gRPC (protobuf bytes), through the
//! validation that `CreateServiceApp` runs, then the conversion to Okta's
//! JSON and back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar_api::prost::Message;
use registrar_api::v1::Jwks;
use registrar_fuzz::check_jwks_error;
use registrar_server::jwk;

fuzz_target!(|data: &[u8]| {
    let Ok(jwks) = Jwks::decode(data) else {
        return;
    };
    match jwk::validate_jwks("jwks", &jwks) {
        Ok(()) => {
            assert!(!jwks.keys.is_empty());
            assert!(jwks.keys.len() <= jwk::MAX_KEYS);
            for key in &jwks.keys {
                let thumbprint = jwk::thumbprint(key).expect("a valid key has a thumbprint");
                let echoed = jwk::from_okta_json(&jwk::to_okta_json(key));
                assert_eq!(echoed.thumbprint, thumbprint);
                assert_eq!(echoed.kid, key.kid);
                assert_eq!(echoed.jwk.as_ref(), Some(key), "Okta JSON round trip");
            }
        }
        Err(error) => check_jwks_error(&error, &jwks),
    }
});
