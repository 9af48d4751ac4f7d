//! Building actor crates of this workspace to `wasm32-wasip1` from source.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};

use crate::util::{OncePerProcess, clean_cargo_env};

/// The target triple actors are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// The cargo profile actors are built with (defined in the workspace `Cargo.toml`).
pub const WASM_PROFILE: &str = "wasm";

/// The root of this workspace (the directory of the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = harness.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The separate cargo target directory actors are built in,
/// `<workspace>/target/actors`.
///
/// It differs from the target directory of the outer `cargo test`, whose lock is
/// held while tests run, so a nested build never waits on it.
pub fn actor_target_dir() -> PathBuf {
    workspace_root().join("target").join("actors")
}

/// Builds workspace package `package` for `wasm32-wasip1` and returns the path
/// of its `.wasm` file.
///
/// Runs `cargo build --target wasm32-wasip1 --profile wasm -p <package>` in the
/// workspace root with `CARGO_TARGET_DIR=<workspace>/target/actors`, and returns
/// `<target>/wasm32-wasip1/wasm/<package, '-' → '_'>.wasm`. If the
/// `wasm32-wasip1` target is not installed, `rustup target add wasm32-wasip1`
/// runs first (once per process).
///
/// Each package is built at most once per process: concurrent callers for the
/// same package wait for the one build and share its result (including a
/// failure). Separate processes are serialized by cargo's own lock on the
/// target directory. Cargo's output is shown only on failure, in the error.
///
/// This blocks the calling thread for as long as cargo runs (seconds when the
/// build is fresh, minutes for a cold one); call it at the start of a test.
///
/// The nested cargo does not inherit `RUSTFLAGS`/`CARGO_ENCODED_RUSTFLAGS`,
/// `CARGO_BUILD_TARGET` or jobserver variables from the outer build: those are
/// meant for the host target (e.g. coverage instrumentation) and would break or
/// slow down the wasm build.
pub fn build_actor(package: &str) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<String> = OncePerProcess::new();
    BUILDS.get(package.to_owned(), || build_uncached(package))
}

fn build_uncached(package: &str) -> Result<PathBuf> {
    ensure_wasm_target()?;
    let root = workspace_root();
    let target_dir = actor_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", WASM_TARGET, "--profile", WASM_PROFILE])
        .args(["-p", package])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    clean_cargo_env(&mut cmd);
    let output = cmd.output().with_context(|| {
        format!(
            "running `{} build -p {package}` for {WASM_TARGET}",
            cargo.to_string_lossy()
        )
    })?;
    if !output.status.success() {
        bail!(
            "building actor package `{package}` for {WASM_TARGET} failed ({}); cargo said:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let out_dir = target_dir.join(WASM_TARGET).join(WASM_PROFILE);
    // A cdylib is named after the crate (hyphens become underscores); a binary
    // target keeps the package's hyphens.
    let candidates = [
        out_dir.join(format!("{}.wasm", package.replace('-', "_"))),
        out_dir.join(format!("{package}.wasm")),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "cargo built `{package}` but {} does not exist (is it a cdylib crate?)",
                candidates[0].display()
            )
        })
}

/// Makes sure the `wasm32-wasip1` standard library is installed (once per process).
fn ensure_wasm_target() -> Result<()> {
    ensure_rust_target(WASM_TARGET)
}

/// Makes sure the standard library of Rust target `target` is installed,
/// with `rustup target add` when rustup manages the toolchain (once per
/// process and target).
pub fn ensure_rust_target(target: &str) -> Result<()> {
    static READY: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let mut ready = READY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ready
        .entry(target.to_owned())
        .or_insert_with(|| install_rust_target(target).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn install_rust_target(target: &str) -> Result<()> {
    let installed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(out) if out.status.success() => out.stdout,
        // No rustup: the toolchain is managed some other way; let cargo report
        // a missing target itself.
        _ => return Ok(()),
    };
    if String::from_utf8_lossy(&installed)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    let out = Command::new("rustup")
        .args(["target", "add", target])
        .output()
        .with_context(|| format!("running `rustup target add {target}`"))?;
    if !out.status.success() {
        bail!(
            "`rustup target add {target}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
