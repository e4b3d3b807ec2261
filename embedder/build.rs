//! Binaries linking libtorch get no rpath from torch-sys; give them one, so
//! they run without LD_LIBRARY_PATH. `cargo:rustc-link-arg` reaches every
//! target of this package (binaries, tests, benches).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| lib.into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
