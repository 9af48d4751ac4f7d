//! The WebAssembly side of a host: one engine, compiled modules, actors.
//!
//! * [`Runtime`] owns the wasmtime [`Engine`] (pooling allocator, epoch
//!   interruption), the [`Linker`] with WASI preview 1 and the waPC imports, and
//!   the compiled-module caches (memory and disk).
//! * [`actor::Actor`] is one actor on this host: an `InstancePre`, a pool of warm
//!   instances, and the concurrency limit of its replicas.
//! * [`component`]: WASI 0.2 components (wasi:http) run as actors too; [`Code`]
//!   is either kind, compiled.

pub mod abi;
pub mod actor;
pub mod cache;
pub mod component;
pub mod engine;
pub mod stdio;
pub mod validate;

use std::sync::{Arc, Mutex};

use lattice::digest::Digest;
use wasmtime::{Engine, Linker, Module, component::Component};

use crate::{config::RuntimeConfig, error::RuntimeError};
use abi::StoreData;
use cache::ModuleCache;

/// How a module was obtained by [`Runtime::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Already compiled in this process.
    Memory,
    /// Deserialized from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Compiled actor code: a waPC core module or a WASI 0.2 component. Cheap to
/// clone.
#[derive(Clone)]
pub enum Code {
    /// A core module speaking waPC.
    Module(Module),
    /// A component exporting `wasi:http/incoming-handler`.
    Component(Component),
}

impl Code {
    /// What the inventory calls this kind of code.
    pub fn kind(&self) -> lattice::ctl::ActorKind {
        match self {
            Code::Module(_) => lattice::ctl::ActorKind::Module,
            Code::Component(_) => lattice::ctl::ActorKind::Component,
        }
    }
}

/// The host's wasmtime engine and module caches. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreData>,
    components: wasmtime::component::Linker<component::ComponentData>,
    config: RuntimeConfig,
    pooling: bool,
    disk: ModuleCache,
    modules: Mutex<lru::LruCache<Digest, Code>>,
    /// Calls in flight and queued across all actors, against `max_calls_per_host`.
    load: Arc<actor::HostLoad>,
    /// Every actor started on this runtime, to take idle instances back from
    /// when the pooling allocator is full.
    actors: Mutex<Vec<std::sync::Weak<actor::Actor>>>,
    /// Where actors count their calls; `None` when metrics are off.
    metrics: Option<crate::metrics::Metrics>,
}

impl Runtime {
    /// Creates the engine, the linker and the caches, and starts the epoch ticker.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] when wasmtime cannot be set up.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Self::with_metrics(config, None)
    }

    /// [`Runtime::new`], with actors counting their calls in `metrics`.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] when wasmtime cannot be set up.
    pub fn with_metrics(
        config: RuntimeConfig,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Result<Self, RuntimeError> {
        let (engine, pooling) = engine::build(&config)?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let components =
            component::linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let disk = ModuleCache::new(
            config.cache_dir.as_deref(),
            &engine,
            config.cache_max_mib.saturating_mul(1 << 20),
        );
        let in_memory = std::num::NonZeroUsize::new(config.max_cached_modules)
            .unwrap_or(std::num::NonZeroUsize::MIN);
        tracing::debug!(pooling, cache = ?config.cache_dir, "wasm runtime ready");
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                components,
                pooling,
                disk,
                modules: Mutex::new(lru::LruCache::new(in_memory)),
                load: Arc::new(actor::HostLoad::new(config.max_calls_per_host)),
                actors: Mutex::new(Vec::new()),
                metrics,
                config,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker every actor is linked with.
    pub fn linker(&self) -> &Linker<StoreData> {
        &self.inner.linker
    }

    /// The linker every component actor is linked with.
    pub fn component_linker(&self) -> &wasmtime::component::Linker<component::ComponentData> {
        &self.inner.components
    }

    /// Calls in flight and queued across all actors of this runtime (the host).
    pub fn host_load(&self) -> &Arc<actor::HostLoad> {
        &self.inner.load
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The metrics actors count their calls in, when metrics are on.
    pub fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.inner.metrics.as_ref()
    }

    /// Instance slots of the pooling allocator holding an instance (0 without
    /// pooling).
    pub fn slots_in_use(&self) -> usize {
        self.inner
            .engine
            .pooling_allocator_metrics()
            .map_or(0, |m| m.core_instances() as usize)
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Compiles (or loads from cache) and validates a module or a component
    /// (told apart by the binary's header).
    ///
    /// `what` names the module in errors (e.g. `actor "hello" (hello.wasm)`).
    /// Compilation runs on a blocking thread so the host keeps serving meanwhile.
    ///
    /// # Errors
    /// [`RuntimeError::NotWasm`], [`RuntimeError::TooLarge`], [`RuntimeError::Compile`],
    /// [`RuntimeError::BadAbi`].
    pub async fn load(
        &self,
        what: &str,
        digest: &Digest,
        bytes: Arc<Vec<u8>>,
    ) -> Result<(Code, LoadedFrom), RuntimeError> {
        if let Some(m) = self.lock_modules().get(digest) {
            return Ok((m.clone(), LoadedFrom::Memory));
        }
        validate::check_magic(what, &bytes)?;
        let is_component = component::is_component(&bytes);
        if !is_component {
            validate::check_go_reactor(what, &bytes)?;
            validate::check_sizes(what, &bytes, self.inner.config.max_memory_mib)?;
        }
        let this = self.clone();
        let (what_owned, digest_owned) = (what.to_string(), digest.clone());
        let (code, from) = tokio::task::spawn_blocking(move || {
            let inner = &this.inner;
            if let Some(m) = inner.disk.load(&inner.engine, &digest_owned, is_component) {
                return Ok((m, LoadedFrom::Disk));
            }
            let compile_err = |e: wasmtime::Error| RuntimeError::Compile {
                what: what_owned.clone(),
                reason: format!("{e:#}"),
            };
            let code = if is_component {
                Code::Component(Component::new(&inner.engine, &*bytes).map_err(compile_err)?)
            } else {
                let m = Module::from_binary(&inner.engine, &bytes).map_err(compile_err)?;
                validate::check_abi(&what_owned, &m)?;
                Code::Module(m)
            };
            inner.disk.store(&digest_owned, &code);
            Ok::<_, RuntimeError>((code, LoadedFrom::Compiled))
        })
        .await
        .map_err(|e| RuntimeError::Compile {
            what: what.to_string(),
            reason: format!("compiler task failed: {e}"),
        })??;
        if let Code::Module(m) = &code {
            validate::check_abi(what, m)?;
        }
        self.lock_modules().put(digest.clone(), code.clone());
        Ok((code, from))
    }

    /// The compiled code of `digest` when it is in the in-memory cache.
    pub fn cached(&self, digest: &Digest) -> Option<Code> {
        self.lock_modules().get(digest).cloned()
    }

    /// Remembers `actor`, so its idle instances can be given back when the
    /// pooling allocator runs out of slots.
    pub(crate) fn register(&self, actor: &Arc<actor::Actor>) {
        let mut actors = self.inner.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors.retain(|a| a.strong_count() > 0);
        actors.push(Arc::downgrade(actor));
    }

    /// Drops one idle instance of the actor that used one least recently,
    /// other than `asking` (which has none idle, or it would not instantiate);
    /// `false` when no actor has an idle instance.
    pub(crate) fn give_back_idle_instance(&self, asking: &actor::Actor) -> bool {
        let candidates = self.live_actors();
        let mut by_age: Vec<&Arc<actor::Actor>> = candidates
            .iter()
            .filter(|a| !std::ptr::eq(Arc::as_ptr(a), asking) && a.warm_instances() > 0)
            .collect();
        by_age.sort_by_key(|a| a.last_used());
        by_age.into_iter().any(|a| {
            let given = a.give_back_instance();
            if given {
                tracing::debug!(from = %a.id(), to = %asking.id(), "instance slots full: gave back an idle instance");
            }
            given
        })
    }

    /// Drops the warm instances of every actor idle for
    /// `instance_idle_timeout`; returns how many were dropped.
    pub fn trim_idle_instances(&self) -> usize {
        let idle = self.inner.config.instance_idle_timeout;
        let dropped: usize = self
            .live_actors()
            .iter()
            .map(|a| a.trim_if_idle(idle))
            .sum();
        if dropped > 0 {
            tracing::debug!(dropped, ?idle, "dropped idle warm instances");
        }
        dropped
    }

    /// Runs [`Runtime::trim_idle_instances`] every quarter of the idle
    /// timeout (1 to 30 s) until the runtime is dropped.
    pub fn spawn_idle_trimmer(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let period = (self.inner.config.instance_idle_timeout / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Runtime { inner }.trim_idle_instances();
            }
        })
    }

    /// The actors started on this runtime that still run (forgetting the rest).
    fn live_actors(&self) -> Vec<Arc<actor::Actor>> {
        let mut actors = self.inner.actors.lock().unwrap_or_else(|p| p.into_inner());
        actors.retain(|a| a.strong_count() > 0);
        actors.iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, lru::LruCache<Digest, Code>> {
        self.inner.modules.lock().unwrap_or_else(|p| p.into_inner())
    }
}
