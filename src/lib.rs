//! Generated types, client and server traits for the `registrar.v1` gRPC API.
//!
//! The proto source is `proto/registrar/v1/registrar.proto`. This crate
//! re-exports the `tonic` and `prost` versions it was generated with, so that
//! dependents use matching versions.

pub use prost;
pub use prost_types;
pub use tonic;

/// The `registrar.v1` package: messages, the `Registrar` client and server.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("registrar.v1");
}

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/registrar_descriptor.bin"));

impl std::fmt::Debug for v1::PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("pkcs8_pem", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{AppKeyState, PrivateKey};

    #[test]
    fn debug_output_redacts_private_keys() {
        let state = AppKeyState {
            client_id: "0oa1".into(),
            signing_key: Some(PrivateKey {
                kid: "kid-1".into(),
                alg: "RS256".into(),
                pkcs8_pem: "-----BEGIN PRIVATE KEY-----\nsecret\n".into(),
            }),
            ..AppKeyState::default()
        };
        let debug = format!("{state:?} {state:#?}");
        assert!(debug.contains("kid-1"));
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("BEGIN"), "{debug}");
    }
}
