//! What the benchmarks share: an actor started in-process, on the wasm side
//! alone, with no host calls behind it.

use std::sync::Arc;

use lattice::{digest::Digest, id::ActorId};
use lattice_host::runtime::{
    Runtime,
    abi::{BoxFuture, HostCall, HostCalls},
    actor::Actor,
};

/// The measured actors make no host calls; any that came would be refused.
pub struct NoHostCalls;

impl HostCalls for NoHostCalls {
    fn host_call(&self, call: HostCall) -> BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async move {
            Err(format!(
                "the benchmark serves no host calls ({} {})",
                call.namespace, call.operation
            ))
        })
    }
}

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
