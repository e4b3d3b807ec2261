//! Generates the imgsearch.v1 messages and services into OUT_DIR, a file
//! descriptor set that the servers publish through gRPC reflection, and the
//! messages' proto3 JSON (serde, by pbjson from the same descriptors) that
//! the HTTP API speaks.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from a crate, so nothing has to be installed by hand.
    if env::var_os("PROTOC").is_none() {
        env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos = ["imgsearch/v1/embedder.proto", "imgsearch/v1/gateway.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = out.join("imgsearch_descriptor.bin");
    tonic_build::configure()
        // Images are `Bytes`: decoded as slices of the received buffer, and a
        // call sent again (another replica, a busy retry) shares them.
        .bytes(["."])
        // Attributes come back in key order, the same every time.
        .btree_map(["."])
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["."])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .btree_map(["."])
        .build(&[".imgsearch.v1"])?;
    Ok(())
}
