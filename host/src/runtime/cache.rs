//! Compiled modules cached on disk, keyed by digest and engine compatibility.
//!
//! A second start of the same module — on this host or after a restart — loads
//! the machine code with `Module::deserialize_file` instead of compiling again.
//! The directory is bounded: past its size limit the least recently used
//! modules (by file modification time, refreshed on every load) are removed.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

use lattice::digest::Digest;
use wasmtime::{Engine, Module, component::Component};

use super::Code;

/// On-disk cache of compiled modules for one engine configuration.
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
}

impl ModuleCache {
    /// A cache under `root/<engine hash>/` of at most `max_bytes`; `None`
    /// disables caching.
    pub fn new(root: Option<&Path>, engine: &Engine, max_bytes: u64) -> Self {
        let dir = root.map(|root| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            root.join(format!("{:016x}", h.finish()))
        });
        ModuleCache { dir, max_bytes }
    }

    fn path(&self, digest: &Digest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", digest.hex())))
    }

    /// Loads a cached compilation of `digest` (a component when `component`),
    /// if there is a usable one.
    pub fn load(&self, engine: &Engine, digest: &Digest, component: bool) -> Option<Code> {
        let path = self.path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Module::serialize` of
        // the same engine configuration (the directory is keyed by the engine's
        // compatibility hash), and wasmtime checks the header again. A file
        // tampered with by someone who can write our cache dir could run code as
        // us — the same trust as our own binary.
        let loaded = if component {
            unsafe { Component::deserialize_file(engine, &path) }.map(Code::Component)
        } else {
            unsafe { Module::deserialize_file(engine, &path) }.map(Code::Module)
        };
        match loaded {
            Ok(m) => {
                // Recently used: pruning removes others first.
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(m)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached module");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes a compiled module to the cache (atomically: temp file + rename).
    /// Failures are logged, never fatal: the cache is an optimisation.
    pub fn store(&self, digest: &Digest, code: &Code) {
        let Some(path) = self.path(digest) else {
            return;
        };
        let result = (|| -> anyhow::Result<()> {
            let bytes = match code {
                Code::Module(m) => m.serialize(),
                Code::Component(c) => c.serialize(),
            }
            .map_err(anyhow::Error::from)?;
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
        self.prune();
    }

    /// Removes the least recently used modules until the cache fits its limit.
    fn prune(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed a cached module (cache over its limit)");
                    total -= len;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not prune the module cache")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(engine: &Engine, n: u32) -> Module {
        // Distinct bodies, so each compiles to its own code.
        let text = format!("(module (func (export \"f\") (result i32) i32.const {n}))");
        Module::new(engine, wat::parse_str(text).unwrap()).unwrap()
    }

    #[test]
    fn the_least_recently_used_modules_go_first_past_the_limit() {
        let engine = Engine::default();
        let root = tempfile::tempdir().unwrap();
        let one = module(&engine, 1).serialize().unwrap().len() as u64;
        // Room for two modules (and a little slack), not three.
        let cache = ModuleCache::new(Some(root.path()), &engine, one * 2 + one / 2);
        let d = |n: u8| Digest::of(&[n]);
        cache.store(&d(1), &Code::Module(module(&engine, 1)));
        cache.store(&d(2), &Code::Module(module(&engine, 2)));
        // Make 1 the most recently used, with a clearly later timestamp.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        let p1 = cache.path(&d(1)).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&p1)
            .unwrap()
            .set_modified(later)
            .unwrap();
        cache.store(&d(3), &Code::Module(module(&engine, 3)));
        assert!(cache.path(&d(1)).unwrap().exists(), "recently used stays");
        assert!(
            !cache.path(&d(2)).unwrap().exists(),
            "least recently used goes"
        );
        assert!(cache.path(&d(3)).unwrap().exists(), "just stored stays");
        assert!(cache.load(&engine, &d(1), false).is_some());
    }
}
