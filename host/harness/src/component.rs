//! Building the standalone Rust component crates of this repository (each with
//! its own `Cargo.lock`, outside the workspace) to `wasm32-wasip2`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::actor::{ensure_rust_target, workspace_root};
use crate::util::{OncePerProcess, clean_cargo_env};

/// The target triple Rust components are built for.
pub const COMPONENT_TARGET: &str = "wasm32-wasip2";

/// The cargo target directory components are built in,
/// `<workspace>/target/components`.
pub fn component_target_dir() -> PathBuf {
    workspace_root().join("target").join("components")
}

/// Builds the component crate in `dir` (relative to the workspace root, e.g.
/// `bench/wasi-http-hello`) with `cargo build --release --locked --target
/// wasm32-wasip2` and returns the path of its `.wasm`, named after the
/// package (`-` → `_`). Once per process and crate; installs the target with
/// rustup first when it is missing. Cargo's output is shown only on failure.
pub fn build_component(dir: &str) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<String> = OncePerProcess::new();
    BUILDS.get(dir.to_owned(), || build_uncached(dir))
}

fn build_uncached(dir: &str) -> Result<PathBuf> {
    ensure_rust_target(COMPONENT_TARGET)?;
    let manifest = workspace_root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .with_context(|| format!("no package name in {}", manifest.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = component_target_dir();
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        COMPONENT_TARGET,
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .env("CARGO_TARGET_DIR", &target_dir);
    clean_cargo_env(&mut cmd);
    let output = cmd
        .output()
        .with_context(|| format!("running `cargo build` for {}", manifest.display()))?;
    if !output.status.success() {
        bail!(
            "building component {dir} for {COMPONENT_TARGET} failed ({}); cargo said:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = target_dir
        .join(COMPONENT_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!("cargo built {dir} but {} does not exist", wasm.display());
    }
    Ok(wasm)
}

/// The componentize-py release Python components are built with (PyPI).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Builds the Python component whose `app.py` is in `dir` (relative to the
/// workspace root) for WIT world `world` of the repository's `wit/` (e.g.
/// `lattice:actor/http`) with componentize-py, installing it from PyPI
/// (`pip install componentize-py==0.25.1`) when it is not on `PATH`. Returns
/// `<workspace>/target/components/python/<dir name>.wasm`; once per process
/// and directory. Takes some seconds: the component holds a whole Python
/// interpreter (about 18 MB).
pub fn build_python_component(dir: &str, world: &str) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<String> = OncePerProcess::new();
    BUILDS.get(format!("{dir} {world}"), || {
        build_python_uncached(dir, world)
    })
}

fn build_python_uncached(dir: &str, world: &str) -> Result<PathBuf> {
    let tool = componentize_py()?;
    let root = workspace_root();
    let name = std::path::Path::new(dir)
        .file_name()
        .with_context(|| format!("no directory name in {dir}"))?
        .to_string_lossy()
        .into_owned();
    let out_dir = component_target_dir().join("python");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    let output = Command::new(&tool)
        .current_dir(root.join(dir))
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", world, "componentize", "app", "-o"])
        .arg(&wasm)
        .output()
        .with_context(|| format!("running {} in {dir}", tool.display()))?;
    if !output.status.success() {
        bail!(
            "componentize-py failed on {dir} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(wasm)
}

/// `componentize-py` on `PATH` or in pip's scripts directory, installed with
/// pip when missing.
pub fn componentize_py() -> Result<PathBuf> {
    let works = |p: &std::path::Path| {
        Command::new(p).arg("--version").output().is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(COMPONENTIZE_PY_VERSION)
        })
    };
    let on_path = PathBuf::from("componentize-py");
    if works(&on_path) {
        return Ok(on_path);
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .context("running python3 to find pip's scripts directory")?;
    let in_scripts =
        PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join("componentize-py");
    if works(&in_scripts) {
        return Ok(in_scripts);
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .output()
        .context("running pip to install componentize-py")?;
    if !out.status.success() || !works(&in_scripts) {
        bail!(
            "could not install componentize-py {COMPONENTIZE_PY_VERSION} with pip ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(in_scripts)
}

/// The componentize-js release JavaScript components are built with (npm).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Builds the JavaScript component `source` (a file in `dir`, relative to the
/// workspace root) for world `world` of `dir/wit` with componentize-js,
/// installed with npm into `<workspace>/target/js-tools` when missing (npm
/// must be on `PATH`; `scripts/prereqs.sh` installs Node.js). Returns
/// `<workspace>/target/components/js/<source stem>.wasm`; once per process
/// and source. Takes tens of seconds: the component holds a JavaScript engine
/// (about 13 MB), initialised at build time.
pub fn build_js_component(dir: &str, source: &str, world: &str) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<String> = OncePerProcess::new();
    BUILDS.get(format!("{dir} {source}"), || {
        build_js_uncached(dir, source, world)
    })
}

fn build_js_uncached(dir: &str, source: &str, world: &str) -> Result<PathBuf> {
    let tool = componentize_js()?;
    let root = workspace_root();
    let stem = std::path::Path::new(source)
        .file_stem()
        .with_context(|| format!("no file name in {source}"))?
        .to_string_lossy()
        .into_owned();
    let out_dir = component_target_dir().join("js");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let wasm = out_dir.join(format!("{stem}.wasm"));
    let output = Command::new(&tool)
        .current_dir(root.join(dir))
        .arg(source)
        .args(["--wit", "wit", "-n", world, "-o"])
        .arg(&wasm)
        .output()
        .with_context(|| format!("running {} in {dir}", tool.display()))?;
    if !output.status.success() || !wasm.is_file() {
        bail!(
            "componentize-js failed on {dir}/{source} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(wasm)
}

/// `componentize-js` under `<workspace>/target/js-tools`, installed with npm
/// when missing or of another version.
pub fn componentize_js() -> Result<PathBuf> {
    static TOOL: OncePerProcess<()> = OncePerProcess::new();
    TOOL.get((), install_componentize_js)
}

fn install_componentize_js() -> Result<PathBuf> {
    let prefix = workspace_root().join("target").join("js-tools");
    let tool = prefix.join("node_modules/.bin/componentize-js");
    let manifest = prefix.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .is_ok_and(|m| m.contains(&format!("\"version\": \"{COMPONENTIZE_JS_VERSION}\"")));
    if installed && tool.is_file() {
        return Ok(tool);
    }
    std::fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}"))
        .output()
        .context("running npm to install componentize-js (is Node.js installed? scripts/prereqs.sh installs it)")?;
    if !out.status.success() || !tool.is_file() {
        bail!(
            "could not install componentize-js {COMPONENTIZE_JS_VERSION} with npm ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(tool)
}
