//! Building C actors (the C SDK in `actors/c`) to `wasm32-wasip1` from source
//! with clang and wasi-libc.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::actor::workspace_root;
use crate::module::{finish_module, read_makefile_claims};
use crate::util::OncePerProcess;

/// The Debian packages of the C toolchain (`scripts/prereqs.sh` installs them).
pub const C_TOOLCHAIN_PACKAGES: &str = "clang lld wasi-libc libclang-rt-dev-wasm32";

/// Environment variable naming the clang binary to use (default: `clang` on `PATH`).
pub const CLANG_ENV: &str = "LATTICE_CLANG";

/// Environment variable naming a wasi-libc sysroot directory; without it,
/// `/usr/share/wasi-sysroot` is used when it exists, else clang's default
/// search path (where Debian 12's `wasi-libc` installs).
pub const WASI_SYSROOT_ENV: &str = "WASI_SYSROOT";

/// The clang flags C actors are compiled and linked with, before `-I`,
/// `--sysroot`, `-o` and the sources: `C_ACTOR_FLAGS` of `actors/c/lattice.mk`,
/// the build the C examples' Makefiles include.
pub const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-Os",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--strip-all",
];

/// The C SDK directory, `<workspace>/actors/c` (`lattice.h`, `lattice.c`).
pub fn c_sdk_dir() -> PathBuf {
    workspace_root().join("actors").join("c")
}

/// Where C actors are built: `<workspace>/target/actors/c`.
pub fn c_target_dir() -> PathBuf {
    workspace_root().join("target").join("actors").join("c")
}

/// Compiles the C actor in `dir` and returns the path of its module,
/// `<workspace>/target/actors/c/<dir name>.wasm`.
///
/// Every `*.c` file of `dir` is compiled together with the SDK's `lattice.c`
/// by one clang run ([`C_FLAGS`], `-I actors/c`). When `dir` has a `Makefile`
/// with `NAME := ...` (and optionally `VERSION := ...`, `ACTORS := a b` and
/// `CONTRACTS := a:b c:d`) lines, those claims are embedded in the module
/// (as `lattice claims put` would); without `NAME` the module has no claims.
///
/// Each directory is built at most once per process: concurrent callers wait
/// for the one build and share its result, including a failure. The module is
/// written to a temporary file and renamed into place, so another process
/// building the same actor never sees half a file.
///
/// # Errors
/// When clang or wasi-libc is missing (naming the Debian packages to
/// install), when the sources do not compile (with clang's output), or when
/// the claims in the Makefile are invalid.
pub fn build_c_actor(dir: &Path) -> Result<PathBuf> {
    static BUILDS: OncePerProcess<PathBuf> = OncePerProcess::new();
    let dir = dir
        .canonicalize()
        .with_context(|| format!("C actor directory {} does not exist", dir.display()))?;
    BUILDS.get(dir.clone(), || build_uncached(&dir))
}

fn build_uncached(dir: &Path) -> Result<PathBuf> {
    let clang = std::env::var_os(CLANG_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("clang"));
    compile(dir, &clang)
}

fn compile(dir: &Path, clang: &OsStr) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no directory name", dir.display()))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c") && p.is_file())
        .collect();
    if sources.is_empty() {
        bail!("{} has no .c files to build", dir.display());
    }
    sources.sort();
    let sdk = c_sdk_dir();
    sources.push(sdk.join("lattice.c"));

    let claims = read_makefile_claims(dir)?;

    let out_dir = c_target_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    let tmp = out_dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));

    let mut cmd = Command::new(clang);
    cmd.args(C_FLAGS).arg("-I").arg(&sdk);
    let sysroot = wasi_sysroot();
    if let Some(sysroot) = &sysroot {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    cmd.arg("-o").arg(&tmp).args(&sources).current_dir(dir);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot build C actor {name}: `{}` not found. Install the C toolchain for \
             wasm32-wasip1, the Debian packages {C_TOOLCHAIN_PACKAGES} \
             (`sudo apt-get install {C_TOOLCHAIN_PACKAGES}`, or run scripts/prereqs.sh), \
             or point ${CLANG_ENV} at a clang",
            clang.to_string_lossy()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("running {}", clang.to_string_lossy()));
        }
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "compiling C actor {name} with {} failed ({}){}; clang said:\n{stderr}",
            clang.to_string_lossy(),
            output.status,
            toolchain_hint(&stderr, clang, sysroot.as_deref())
        );
    }

    finish_module(&name, &tmp, out, claims.as_ref())
}

/// The wasi-libc sysroot to pass to clang, if any.
fn wasi_sysroot() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(WASI_SYSROOT_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new("/usr/share/wasi-sysroot");
    default.is_dir().then(|| default.to_path_buf())
}

/// After a failed build: a sentence naming the Debian packages of the
/// toolchain that are missing, judged from clang's complaint and by looking
/// for wasi-libc's `libc.a` and compiler-rt's wasm32 builtins; else "".
fn toolchain_hint(stderr: &str, clang: &OsStr, sysroot: Option<&Path>) -> String {
    let mut packages = missing_from_stderr(stderr);
    if !wasi_libc_present(sysroot) {
        packages.push("wasi-libc");
    }
    if builtins_present(clang, sysroot) == Some(false) {
        packages.push("libclang-rt-dev-wasm32");
    }
    hint_sentence(packages)
}

fn hint_sentence(mut packages: Vec<&str>) -> String {
    packages.sort_unstable();
    packages.dedup();
    if packages.is_empty() {
        return String::new();
    }
    format!(
        ". The wasm32 C toolchain looks incomplete (missing: {}): install the Debian \
         packages {C_TOOLCHAIN_PACKAGES} (scripts/prereqs.sh does), or set \
         ${WASI_SYSROOT_ENV} to a wasi-libc sysroot",
        packages.join(", ")
    )
}

/// Packages whose absence clang's output shows.
fn missing_from_stderr(stderr: &str) -> Vec<&'static str> {
    // Without wasi-libc, clang falls back to the build machine's glibc headers
    // (`bits/libc-header-start.h` not found) or finds no libc header at all.
    const LIBC_HEADERS: &[&str] = &[
        "stdlib.h", "string.h", "stdio.h", "stdint.h", "stddef.h", "stdarg.h", "unistd.h",
        "errno.h", "math.h", "bits/",
    ];
    const NEEDLES: &[(&str, &str)] = &[
        ("wasi-libc", "crt1-reactor.o"),
        ("wasi-libc", "unable to find library -lc"),
        ("lld", "wasm-ld"),
        ("libclang-rt-dev-wasm32", "libclang_rt.builtins-wasm32"),
        ("clang", "unknown target triple"),
    ];
    let libc_header_missing = stderr.lines().any(|line| {
        line.contains("file not found") && LIBC_HEADERS.iter().any(|h| line.contains(h))
    });
    libc_header_missing
        .then_some("wasi-libc")
        .into_iter()
        .chain(
            NEEDLES
                .iter()
                .filter(|(_, needle)| stderr.contains(needle))
                .map(|(package, _)| *package),
        )
        .collect()
}

/// Whether wasi-libc's `libc.a` is in the sysroot or where Debian puts it.
fn wasi_libc_present(sysroot: Option<&Path>) -> bool {
    let roots: Vec<PathBuf> = sysroot
        .map(|s| s.join("lib"))
        .into_iter()
        .chain([PathBuf::from("/usr/lib")])
        .collect();
    roots.iter().any(|root| {
        ["wasm32-wasi", "wasm32-wasip1"]
            .iter()
            .any(|triple| root.join(triple).join("libc.a").is_file())
    })
}

/// Whether the compiler-rt builtins clang links wasm32 modules with exist;
/// `None` when clang cannot say.
fn builtins_present(clang: &OsStr, sysroot: Option<&Path>) -> Option<bool> {
    let mut cmd = Command::new(clang);
    cmd.args(["--target=wasm32-wasi", "-print-libgcc-file-name"]);
    if let Some(sysroot) = sysroot {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!path.is_empty()).then(|| Path::new(&path).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::makefile_var;

    #[test]
    fn flags_are_those_of_the_makefile_fragment() {
        let mk = c_sdk_dir().join("lattice.mk");
        let text = std::fs::read_to_string(&mk).unwrap();
        let flags = makefile_var(&text, "C_ACTOR_FLAGS").expect("C_ACTOR_FLAGS in lattice.mk");
        assert_eq!(
            flags.split_whitespace().collect::<Vec<_>>(),
            C_FLAGS,
            "{}",
            mk.display()
        );
    }

    #[test]
    fn missing_toolchain_parts_are_named() {
        let found = missing_from_stderr("fatal error: 'stdlib.h' file not found");
        assert_eq!(found, ["wasi-libc"]);
        let found = missing_from_stderr(
            "/usr/include/stdint.h:26:10: fatal error: 'bits/libc-header-start.h' file not found",
        );
        assert_eq!(found, ["wasi-libc"]);
        let found = missing_from_stderr(
            "wasm-ld: error: cannot open /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a",
        );
        assert!(found.contains(&"libclang-rt-dev-wasm32"), "{found:?}");
        assert!(missing_from_stderr("echo.c:3: error: expected ';'").is_empty());
        assert!(
            missing_from_stderr("echo.c:1:10: fatal error: 'mine.h' file not found").is_empty()
        );
        let hint = hint_sentence(vec!["wasi-libc", "lld", "wasi-libc"]);
        assert!(hint.contains("missing: lld, wasi-libc)"), "{hint}");
        assert!(hint.contains(C_TOOLCHAIN_PACKAGES), "{hint}");
        assert_eq!(hint_sentence(Vec::new()), "");
    }

    #[test]
    fn missing_clang_names_the_packages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.c"), "int x;\n").unwrap();
        let err = compile(dir.path(), OsStr::new("/nonexistent/clang")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(C_TOOLCHAIN_PACKAGES), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
    }
}
