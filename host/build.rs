//! Embeds the actor SDKs in the `lattice` binary, for `lattice new`: a new
//! project gets its language's SDK (and, for Rust, the plain-types part of the
//! `lattice` crate; for Python and JavaScript components, the WIT they are
//! built against) written beside it, so it builds outside this repository.
//!
//! Writes `$OUT_DIR/sdk_files.rs`: one `&[(path, bytes)]` table per SDK, paths
//! relative to the SDK's directory. Tests, READMEs and build output stay out.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// (table name, directory under the workspace root, file extensions kept)
const SDKS: &[(&str, &str, &[&str])] = &[
    ("RUST_SDK", "actors/rust", &["rs", "toml"]),
    ("LATTICE_CRATE", "lattice", &["rs", "toml"]),
    ("GO_SDK", "actors/go", &["go", "mod"]),
    ("C_SDK", "actors/c", &["h", "c"]),
    // WIT for Python components (WASI 0.2.12, wasmtime's) and JavaScript
    // ones (WASI 0.2.10, the version componentize-js's engine is built for).
    ("WIT", "wit", &["wit"]),
    ("JS_WIT", "examples/components/js/wit", &["wit"]),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("..")
        .canonicalize()
        .expect("the workspace root exists");
    let mut out = String::new();
    for (name, dir, extensions) in SDKS {
        let base = root.join(dir);
        println!("cargo:rerun-if-changed={}", base.display());
        let mut files = Vec::new();
        collect(&base, &base, extensions, &mut files);
        files.sort();
        writeln!(out, "pub const {name}: &[(&str, &[u8])] = &[").unwrap();
        for (rel, abs) in files {
            writeln!(
                out,
                "    ({rel:?}, include_bytes!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    // The root manifest: workspace-inherited keys of the crates above resolve against it.
    let manifest = root.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    writeln!(
        out,
        "pub const WORKSPACE_MANIFEST: &str = include_str!({:?});",
        manifest.display().to_string()
    )
    .unwrap();
    // Its lock file: a new Rust project starts from the versions this
    // workspace is built and tested with (cargo drops what it does not use).
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    writeln!(
        out,
        "pub const WORKSPACE_LOCK: &str = include_str!({:?});",
        lock.display().to_string()
    )
    .unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("sdk_files.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(base: &Path, dir: &Path, extensions: &[&str], files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "tests" | "test" | "benches" | "build"
            ) {
                collect(base, &path, extensions, files);
            }
            continue;
        }
        let keep = path
            .extension()
            .is_some_and(|x| extensions.iter().any(|e| x == *e))
            && !name.ends_with("_test.go");
        if keep {
            let rel = path
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, path));
        }
    }
}
