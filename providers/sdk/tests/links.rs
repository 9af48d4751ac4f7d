//! The provider runtime follows the lattice's links through a KV watch; a
//! provider slower than the changes falls behind the watch's buffer and must
//! still end up with exactly the links that exist (deletes included).
//!
//! Real nats-server with JetStream, started by the harness.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use lattice::{
    id::{ActorId, LatticeId},
    link_store::LinkStore,
};
use lattice_harness::{NatsServer, wait_until};
use lattice_provider::{
    BoxFuture, LinkDefinition, NatsActorCaller, Provider, ProviderCall, ProviderContext,
    ProviderError, ProviderRuntime,
};

/// Holds the links it was given; each put takes a few milliseconds, so a burst
/// of changes outruns it.
#[derive(Default)]
struct SlowProvider {
    links: Mutex<BTreeSet<String>>,
}

impl Provider for SlowProvider {
    fn contract(&self) -> &'static str {
        "test:slow"
    }
    fn start(&self, _ctx: ProviderContext) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
    fn put_link(&self, link: LinkDefinition) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.links.lock().unwrap().insert(link.actor_id.to_string());
            Ok(())
        })
    }
    fn delete_link(&self, link: LinkDefinition) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.links.lock().unwrap().remove(link.actor_id.as_str());
        })
    }
    fn handle(&self, _call: ProviderCall) -> BoxFuture<'_, Result<Vec<u8>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

fn link(i: usize) -> LinkDefinition {
    LinkDefinition {
        actor_id: ActorId::new(format!("a{i}")).unwrap(),
        provider_id: "slow".parse().unwrap(),
        contract: "test:slow".parse().unwrap(),
        link_name: "default".parse().unwrap(),
        config: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_falls_behind_re_reads_the_links() -> Result<()> {
    let server = NatsServer::start()?;
    let nats = async_nats::connect(server.url()).await?;
    let lattice = LatticeId::new("lag")?;
    let provider = Arc::new(SlowProvider::default());
    let ctx = ProviderContext {
        lattice: lattice.clone(),
        provider_id: "slow".into(),
        nats: nats.clone(),
        actors: Arc::new(NatsActorCaller::new(
            nats.clone(),
            lattice.clone(),
            "slow",
            Duration::from_secs(1),
        )),
    };
    let rt = ProviderRuntime::start(provider.clone(), ctx, "test:slow", "test", "test")
        .await
        .context("starting the provider runtime")?;

    // Far more changes than the watch buffers (256) while the provider takes
    // 5 ms per link: it lags, and the early deletes are among what it misses.
    let store = LinkStore::open(nats.clone(), &lattice).await?;
    const N: usize = 600;
    for i in 0..N {
        store.put(&link(i)).await?;
    }
    for i in 0..N / 4 {
        let l = link(i);
        let gone = store.delete(&l.actor_id, &l.contract, &l.link_name).await?;
        ensure!(gone.is_some(), "link a{i} existed");
    }
    let want: BTreeSet<String> = (N / 4..N).map(|i| format!("a{i}")).collect();
    wait_until(
        "the provider to hold exactly the links in KV",
        Duration::from_secs(60),
        || async { Ok((*provider.links.lock().unwrap() == want).then_some(())) },
    )
    .await?;
    rt.stop("test done").await;
    Ok(())
}
