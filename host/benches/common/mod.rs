//! What the benchmarks share: an actor started in-process, on the wasm side
//! alone, with no host calls behind it.

use std::sync::Arc;

use lattice::{digest::Digest, id::ActorId};
use lattice_host::runtime::{Runtime, abi::NoHostCalls, actor::Actor};

/// Starts a compiled module as actor `id` with one replica, no configuration
/// and [`NoHostCalls`]: one eager instance, as a host's start does.
pub async fn start_actor(
    runtime: &Runtime,
    id: &str,
    digest: Digest,
    module: &wasmtime::Module,
) -> anyhow::Result<Arc<Actor>> {
    let actor = Actor::start(
        runtime,
        ActorId::new(id)?,
        digest,
        module,
        1,
        Default::default(),
        Arc::new(NoHostCalls),
    )
    .await?;
    Ok(actor)
}
