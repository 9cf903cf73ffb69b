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
