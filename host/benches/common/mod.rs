//! What the benchmarks share: an actor started in-process, on the wasm side
//! alone, with no host calls behind it.

use std::sync::Arc;

use lattice::{digest::Digest, id::ActorId};
use lattice_host::runtime::{Code, Runtime, abi::NoHostCalls, actor::Actor};

/// Starts compiled code as actor `id` with one replica, no configuration
/// and [`NoHostCalls`]: one eager instance, as a host's start does.
pub async fn start_actor(
    runtime: &Runtime,
    id: &str,
    digest: Digest,
    code: &Code,
) -> anyhow::Result<Arc<Actor>> {
    let actor = Actor::start(
        runtime,
        ActorId::new(id)?,
        digest,
        code,
        1,
        Default::default(),
        Arc::new(NoHostCalls),
    )
    .await?;
    Ok(actor)
}
