//! Compiled modules cached on disk, keyed by digest and engine compatibility.
//!
//! A second start of the same module — on this host or after a restart — loads
//! the machine code with `Module::deserialize_file` instead of compiling again.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

use lattice::digest::Digest;
use wasmtime::{Engine, Module};

/// On-disk cache of compiled modules for one engine configuration.
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
}

impl ModuleCache {
    /// A cache under `root/<engine hash>/`; `None` disables caching.
    pub fn new(root: Option<&Path>, engine: &Engine) -> Self {
        let dir = root.map(|root| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            root.join(format!("{:016x}", h.finish()))
        });
        ModuleCache { dir }
    }

    fn path(&self, digest: &Digest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", digest.hex())))
    }

    /// Loads a cached compilation of `digest`, if there is a usable one.
    pub fn load(&self, engine: &Engine, digest: &Digest) -> Option<Module> {
        let path = self.path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Module::serialize` of
        // the same engine configuration (the directory is keyed by the engine's
        // compatibility hash), and wasmtime checks the header again. A file
        // tampered with by someone who can write our cache dir could run code as
        // us — the same trust as our own binary.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached module");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes a compiled module to the cache (atomically: temp file + rename).
    /// Failures are logged, never fatal: the cache is an optimisation.
    pub fn store(&self, digest: &Digest, module: &Module) {
        let Some(path) = self.path(digest) else {
            return;
        };
        let result = (|| -> anyhow::Result<()> {
            let bytes = module.serialize().map_err(anyhow::Error::from)?;
            let dir = path.parent().expect("cache path has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.{}.tmp", digest.hex(), std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled module");
        }
    }
}
