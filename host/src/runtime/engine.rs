//! The one wasmtime [`Engine`] of a host and its epoch ticker.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::{config::RuntimeConfig, error::RuntimeError};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: pooling allocator with copy-on-write memory images when the
/// address space allows it, on-demand allocation otherwise.
///
/// Returns the engine and whether pooling is in use.
///
/// # Errors
/// [`RuntimeError::Engine`] when even the on-demand engine cannot be created.
pub fn build(cfg: &RuntimeConfig) -> Result<(Engine, bool), RuntimeError> {
    let mut base = Config::new();
    base.epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .memory_init_cow(true);
    if cfg.pooling {
        let mut pooled = base.clone();
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(cfg.max_instances)
            .total_memories(cfg.max_instances)
            .total_tables(cfg.max_instances)
            .total_stacks(cfg.max_instances)
            .max_memory_size(cfg.max_memory_bytes())
            // Standard Go modules have tables of tens of thousands of functions.
            .table_elements(super::validate::MAX_TABLE_ELEMENTS)
            .max_core_instance_size(4 << 20)
            // Components (wasi:http) count here as well as in the core
            // slots: one per component instance, holding several core ones.
            .total_component_instances(cfg.max_instances)
            .max_component_instance_size(4 << 20)
            // One component instance holds several core instances, memories
            // and tables, all from the slots above: cap what one may take
            // (Python and JavaScript components need about a dozen), so a
            // component is refused at start rather than starving the host.
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(64)
            // An instance per request (components, cold calls) frees and
            // takes a slot each time: reset small memories and tables with
            // memset rather than madvise (no page faults on the next use of
            // the slot), and give pages back in batches of syscalls. At most
            // `max_unused_warm_slots` (100) slots stay resident this way.
            .linear_memory_keep_resident(128 << 10)
            .table_keep_resident(16 << 10)
            .decommit_batch_size(16);
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                error = %e,
                "pooling allocator unavailable (address space too small?); using on-demand allocation"
            ),
        }
    }
    let engine = Engine::new(&base).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    Ok((engine, false))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread, for as
/// long as the engine lives.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("lattice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Epoch ticks until `deadline`, at least one.
pub fn ticks_until(deadline: tokio::time::Instant) -> u64 {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    (left.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}
