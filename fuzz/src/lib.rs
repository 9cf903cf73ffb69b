//! Checks shared by the fuzz targets in `fuzz_targets/`.

use registrar_api::v1::{Jwk, Jwks};
use registrar_server::validate::InvalidArgument;

/// The maximum length of an error a request may get back, in bytes. Messages repeat at
/// most a shortened copy of the value at fault, so a huge value never makes
/// a huge `grpc-message` header.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Asserts that a validation error names a field under `field_prefix`,
/// has a message, and is short.
pub fn check_error(error: &InvalidArgument, field_prefix: &str) {
    assert!(
        error.field.starts_with(field_prefix),
        "field {:?} is not under {field_prefix:?}",
        error.field
    );
    assert!(
        !error.message.is_empty(),
        "empty message for {}",
        error.field
    );
    let text = error.to_string();
    assert!(
        text.len() <= MAX_MESSAGE_BYTES,
        "{} bytes of message for {}",
        text.len(),
        error.field
    );
}

/// Returns the non-empty private members of a JWK, by name.
pub fn private_members(key: &Jwk) -> Vec<(&'static str, &str)> {
    [
        ("d", &key.d),
        ("p", &key.p),
        ("q", &key.q),
        ("dp", &key.dp),
        ("dq", &key.dq),
        ("qi", &key.qi),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| (name, value.as_str()))
    .collect()
}

/// Asserts that an error about a key with private members names one of
/// them and repeats none. Values shorter than 8 characters or with a space
/// are skipped, because they can occur in the fixed message text.
pub fn check_private_not_echoed(error: &InvalidArgument, key: &Jwk) {
    let private = private_members(key);
    if private.is_empty() {
        return;
    }
    assert!(
        private
            .iter()
            .any(|(name, _)| error.field.ends_with(&format!(".{name}"))),
        "error {:?} does not name a private member",
        error.field
    );
    let text = error.to_string();
    for (name, value) in private {
        if value.chars().count() >= 8 && !value.contains(' ') {
            assert!(
                !text.contains(value),
                "the error repeats private member {name}"
            );
        }
    }
}

/// Checks an error of `validate_jwks("jwks", jwks)`: it names a field under
/// `jwks.keys`, and when it names a key (`jwks.keys[INDEX]…`) that key's
/// private members are not repeated.
pub fn check_jwks_error(error: &InvalidArgument, jwks: &Jwks) {
    check_error(error, "jwks.keys");
    let index = error
        .field
        .strip_prefix("jwks.keys[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, _)| index.parse::<usize>().ok());
    if let Some(key) = index.and_then(|index| jwks.keys.get(index)) {
        check_private_not_echoed(error, key);
    }
}
