//! Actor projects: `lattice new` writes one, `lattice build` builds it.
//!
//! A project is a directory with a `lattice.toml` ([`ProjectFile`]) naming the
//! actor, its language and its claims, beside the sources of that language and
//! the SDK, which `lattice new` copies in from the binary (see `build.rs` of
//! this crate), so a project builds with nothing but the `lattice` binary, the
//! language's toolchain and its package registry.
//!
//! - [`new`]: `lattice new rust|go|c|rust-component|python|js NAME`, the templates and the
//!   vendored SDKs (the WIT, for the component languages).
//! - [`build`]: `lattice build`, per language, then claims (and a signature).
//! - [`dev`]: `lattice dev`, build, run and replace on every save.

pub mod build;
pub mod dev;
pub mod new;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The file that makes a directory an actor project.
pub const PROJECT_FILE: &str = "lattice.toml";

/// The languages `lattice new` and `lattice build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, `wasm32-wasip1`, with the `lattice-actor` crate
    Rust,
    /// Go 1.24+ (`GOOS=wasip1 -buildmode=c-shared`), with the `lattice.dev/actor` module
    Go,
    /// C with clang and wasi-libc, with `lattice.h`
    C,
    /// Rust, a wasi:http component (`wasm32-wasip2`, `wit-bindgen`)
    #[serde(rename = "rust-component")]
    #[value(name = "rust-component")]
    RustComponent,
    /// Python, a wasi:http component built with componentize-py
    Python,
    /// JavaScript, a wasi:http component built with componentize-js
    Js,
}

impl Language {
    /// Whether projects of this language build WASI 0.2 components (served
    /// over wasi:http) rather than waPC modules.
    pub fn is_component(self) -> bool {
        matches!(
            self,
            Language::RustComponent | Language::Python | Language::Js
        )
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::Go => "go",
            Language::C => "c",
            Language::RustComponent => "rust-component",
            Language::Python => "python",
            Language::Js => "js",
        })
    }
}

/// `lattice.toml`: what the project builds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// The actor and its claims.
    pub actor: ActorSection,
    /// How to build it.
    #[serde(default)]
    pub build: BuildSection,
    /// What `lattice dev` sets up beside it.
    #[serde(default)]
    pub dev: DevSection,
}

/// `[dev]` of `lattice.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSection {
    /// Links `lattice dev` puts, starting their built-in providers when none runs.
    #[serde(default)]
    pub links: Vec<DevLink>,
}

/// One `[[dev.links]]`: a contract served by a built-in provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevLink {
    /// The contract, e.g. `lattice:httpserver`.
    pub contract: String,
    /// The provider, e.g. `builtin:httpserver` (its id is the name after `builtin:`).
    pub provider: String,
    /// The link's config, e.g. `{ address = "127.0.0.1:8080" }`.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

/// `[actor]` of `lattice.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSection {
    /// The claims' name, the module's file name (`build/NAME.wasm`) and the
    /// default actor id.
    pub name: String,
    /// The language of the sources.
    pub language: Language,
    /// The claims' version.
    #[serde(default = "default_version")]
    pub version: String,
    /// Contracts the actor may call, e.g. `lattice:keyvalue`.
    #[serde(default)]
    pub contracts: Vec<String>,
    /// Actor ids it may call (`*` for any).
    #[serde(default)]
    pub actors: Vec<String>,
}

/// `[build]` of `lattice.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// An issuer seed file (`lattice keys gen`) to sign the claims with,
    /// relative to the project; `--issuer` and `LATTICE_ISSUER` win over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<PathBuf>,
}

fn default_version() -> String {
    "0.1.0".to_string()
}

impl ProjectFile {
    /// Reads `dir/lattice.toml`.
    ///
    /// # Errors
    /// When there is none (saying how to make one), or it is not valid
    /// (naming the key or value).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(PROJECT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not an actor project: it has no {PROJECT_FILE}; make one with `lattice new rust|go|c|rust-component|python|js NAME`",
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        };
        let project: ProjectFile =
            toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        lattice::id::ActorId::new(&project.actor.name)
            .with_context(|| format!("invalid [actor] name in {}", path.display()))?;
        Ok(project)
    }
}
