//! Compiles the echo service of the gRPC baseline with protox, a pure-Rust
//! protobuf compiler, as the root crate does, so no system `protoc` is
//! needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/bench/v1/echo.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
