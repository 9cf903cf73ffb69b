//! Error bodies as Okta returns them, in either of its formats or neither.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar_server::okta::ErrorBody;

fuzz_target!(|data: &[u8]| {
    let body = ErrorBody::parse(data);
    match &body {
        ErrorBody::Other(text) => {
            assert!(
                text.chars().count() <= 200,
                "Other keeps at most 200 characters"
            );
            assert_eq!(body.code(), None);
        }
        ErrorBody::Okta { code, .. } => assert_eq!(body.code(), Some(code.as_str())),
        ErrorBody::OAuth { error, .. } => assert_eq!(body.code(), Some(error.as_str())),
    }
    let _ = body.to_string();
});
