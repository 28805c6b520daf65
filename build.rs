//! Writes `include/batchput.h` from `src/ffi/` with cbindgen (settings in
//! `capi/cbindgen.toml`), adding version macros from Cargo.toml's version.
//! The header is committed; CI fails when a build changes it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=capi/cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let component = |name: &str| -> u32 {
        let v = std::env::var(name).expect("set by cargo");
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    };
    let (major, minor, patch) = (
        component("CARGO_PKG_VERSION_MAJOR"),
        component("CARGO_PKG_VERSION_MINOR"),
        component("CARGO_PKG_VERSION_PATCH"),
    );
    // The packed number has three decimal digits for minor and patch.
    assert!(
        minor < 1000 && patch < 1000,
        "version {major}.{minor}.{patch} does not pack"
    );
    let number = major * 1_000_000 + minor * 1_000 + patch;
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");

    let mut config =
        cbindgen::Config::from_file(dir.join("capi/cbindgen.toml")).expect("capi/cbindgen.toml");
    config.after_includes = Some(format!(
        "\n/* The version of this header; bp_version_number() is the library's. */\n\
         #define BATCHPUT_VERSION_MAJOR {major}\n\
         #define BATCHPUT_VERSION_MINOR {minor}\n\
         #define BATCHPUT_VERSION_PATCH {patch}\n\
         /* MAJOR * 1000000 + MINOR * 1000 + PATCH */\n\
         #define BATCHPUT_VERSION_NUMBER {number}\n\
         #define BATCHPUT_VERSION \"{version}\""
    ));
    // Parsing src/ffi/ alone (not the whole crate) keeps cbindgen from
    // running `cargo metadata` inside the build.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not read src/ffi/");
    bindings.write_to_file(dir.join("include/batchput.h"));
}
