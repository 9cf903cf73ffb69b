//! Key objects as Okta returns them (JSON), read into public keys, and the
//! round trip of a valid key through Okta's JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar_fuzz::{check_error, private_members};
use registrar_server::jwk;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let keys = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(object) => match object.get("keys") {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![value.clone()],
        },
        _ => vec![value.clone()],
    };
    for key in &keys {
        let public = jwk::from_okta_json(key);
        let read = public.jwk.expect("from_okta_json always sets the JWK");
        assert!(
            private_members(&read).is_empty(),
            "a private member was kept"
        );
        assert_eq!(public.kid, read.kid);
        assert_eq!(
            public.thumbprint,
            jwk::thumbprint(&read).unwrap_or_default()
        );

        match jwk::validate_jwk("key", &read) {
            Ok(()) => {
                assert!(
                    !public.thumbprint.is_empty(),
                    "a valid key has a thumbprint"
                );
                let again = jwk::from_okta_json(&jwk::to_okta_json(&read));
                assert_eq!(again.jwk.as_ref(), Some(&read), "Okta JSON round trip");
                assert_eq!(again.thumbprint, public.thumbprint);
            }
            Err(error) => check_error(&error, "key."),
        }
    }
});
