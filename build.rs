//! Compiles `proto/registrar/v1/*.proto` with protox, a pure-Rust protobuf
//! compiler, so that a fresh clone builds without a system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(proto_dir.join("registrar/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();

    let descriptors = protox::compile(&files, [&proto_dir])?;

    // Server reflection needs the encoded descriptor set at run time.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("registrar_descriptor.bin"), encoded)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Implemented by hand in src/lib.rs, without the key material.
        .skip_debug([".registrar.v1.PrivateKey"])
        .compile_fds(descriptors)?;
    Ok(())
}
