//! A host: one process in a lattice that runs actors and answers the control
//! interface.
//!
//! [`Host::start`] subscribes to the host's control subjects, publishes
//! `host_started` and a heartbeat every interval; [`Host::shutdown`] drains
//! in-flight calls, stops actors and publishes `host_stopped`.

mod actors;
pub use actors::MAX_REPLICAS_PER_HOST;
mod control;
mod http_stream;
mod invoke;
pub mod providers;
mod router;
mod serve;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::Client;
use lattice::{
    artifact::ArtifactStore,
    ctl::{
        ActorScaled, ActorStarted, ActorStopped, ActorUpdated, AuctionRequest, Bid, HostInfo,
        HostInventory, ProviderAck, ScaleActor, StartActor, StartProvider, StopActor, StopProvider,
        UpdateActor,
    },
    event::EventData,
    id::{HostId, LatticeId},
    link_store::{LinkCache, LinkStore},
};
use tokio::{sync::watch, task::JoinHandle};

use self::{actors::ActorTable, control::ControlApi, providers::ProviderTable};
use crate::{
    config::{HostConfig, RuntimeConfig},
    error::{ControlError, HostCallError, RuntimeError},
    runtime::Runtime,
};

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The wasm runtime could not be created.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Subscribing or publishing failed.
    #[error(transparent)]
    Lattice(#[from] lattice::Error),
    /// A label or the name is unusable.
    #[error("invalid host configuration: {0}")]
    Config(String),
}

/// How much longer than its drain timeout a host's shutdown may take before it
/// is cut short.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a stopping host waits to flush its last events to NATS.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A host running in this process. Cheap to clone; all clones are the same host.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    id: HostId,
    name: String,
    lattice: LatticeId,
    labels: BTreeMap<String, String>,
    started: Instant,
    nats: Client,
    /// Sends this host's remote invocations (replies and progress).
    caller: lattice::rpc::remote::Caller,
    runtime: Runtime,
    config: HostConfig,
    actors: ActorTable,
    providers: ProviderTable,
    links: LinkCache,
    artifacts: tokio::sync::OnceCell<ArtifactStore>,
    /// Where this host says it is alive, so gathers end when every live host
    /// has answered; `None` when the state bucket cannot be opened.
    registry: Option<lattice::host_registry::HostRegistry>,
    /// The issuer policy, checked when an actor starts.
    trust: crate::trust::Trust,
    /// Serialises actor starts and stops on this host so two requests for the
    /// same id cannot race; guards whether the host is closing (then nothing
    /// more is started).
    lifecycle: tokio::sync::Mutex<bool>,
    /// The host's metrics and where they are served, when metrics are on.
    metrics: Option<(crate::metrics::Metrics, std::net::SocketAddr)>,
    /// Set when someone asks the host to stop (ctl `stop`); carries the reason.
    stop_requested: watch::Sender<Option<String>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Tells the reconciler to give up its lease and stop.
    reconcile_stop: watch::Sender<bool>,
    reconciler: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Host {
    /// Starts a host on an open NATS connection.
    ///
    /// # Errors
    /// [`HostError`] when the runtime cannot be created or the subscriptions fail.
    pub async fn start(
        nats: Client,
        lattice: LatticeId,
        config: HostConfig,
        runtime: RuntimeConfig,
    ) -> Result<Self, HostError> {
        runtime.validate().map_err(HostError::Config)?;
        let metrics = config.metrics_addr.map(|_| crate::metrics::Metrics::new());
        let runtime = Runtime::with_metrics(runtime.resolve_cache_dir(), metrics.clone())?;
        let id = HostId::generate();
        let name = config
            .name
            .clone()
            .unwrap_or_else(lattice::id::generate_host_name);
        if name.trim().is_empty() {
            return Err(HostError::Config("the host name must not be empty".into()));
        }
        runtime.host_load().name_host(&name);
        let mut labels = BTreeMap::from([
            ("os".to_string(), std::env::consts::OS.to_string()),
            ("arch".to_string(), std::env::consts::ARCH.to_string()),
            ("hostname".to_string(), lattice::process::hostname()),
        ]);
        for (k, v) in &config.labels {
            if k.is_empty() {
                return Err(HostError::Config(format!(
                    "label with an empty key (value {v:?})"
                )));
            }
            labels.insert(k.clone(), v.clone());
        }
        let trust = crate::trust::Trust::new(&config.allowed_issuers)
            .map_err(|e| HostError::Config(format!("--allowed-issuer: {e}")))?;
        let registry = match lattice::host_registry::HostRegistry::open(nats.clone(), &lattice)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the host registry; CLI gathers will wait out their window");
                None
            }
        };
        let links = LinkStore::open(nats.clone(), &lattice)
            .await?
            .cache()
            .await?;
        let (stop_requested, _) = watch::channel(None);
        // Bound before the host exists, so a taken address fails the start.
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|e| HostError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let inner = Arc::new(HostInner {
            id,
            name,
            lattice,
            labels,
            started: Instant::now(),
            caller: lattice::rpc::remote::Caller::new(nats.clone()),
            nats,
            runtime,
            config,
            actors: ActorTable::default(),
            providers: ProviderTable::default(),
            links,
            artifacts: tokio::sync::OnceCell::new(),
            trust,
            registry,
            metrics: metrics.zip(metrics_listener.as_ref().map(|(_, addr)| *addr)),
            lifecycle: tokio::sync::Mutex::new(false),
            stop_requested,
            tasks: std::sync::Mutex::new(Vec::new()),
            reconcile_stop: watch::channel(false).0,
            reconciler: std::sync::Mutex::new(None),
        });
        for task in control::subscribe(&inner, &inner.nats, &inner.lattice, &inner.id).await? {
            inner.track(task);
        }
        if let Some((listener, _)) = metrics_listener {
            let host = Arc::downgrade(&inner);
            inner.track(crate::metrics::serve(listener, move || {
                host.upgrade().map(|h| h.scrape()).unwrap_or_default()
            }));
        }
        inner.beat().await;
        inner.spawn_heartbeat();
        inner.track(inner.runtime.spawn_idle_trimmer());
        if inner.config.reconcile {
            let task = tokio::spawn(crate::reconcile::run(
                inner.nats.clone(),
                inner.lattice.clone(),
                inner.id.clone(),
                crate::reconcile::ReconcileConfig {
                    interval: inner.config.reconcile_interval,
                    heartbeat_interval: inner.config.heartbeat_interval,
                    metrics: inner.metrics.as_ref().map(|(m, _)| m.clone()),
                },
                inner.reconcile_stop.subscribe(),
            ));
            *inner.reconciler.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        inner
            .publish(EventData::HostStarted {
                host_id: inner.id.clone(),
                name: inner.name.clone(),
                labels: inner.labels.clone(),
                version: lattice::VERSION.to_string(),
            })
            .await;
        tracing::info!(
            host_id = %inner.id,
            name = %inner.name,
            lattice = %inner.lattice,
            pooling = inner.runtime.pooling(),
            issuer_policy = inner.trust.is_enforced(),
            "host started"
        );
        Ok(Host { inner })
    }

    /// This host's id.
    pub fn id(&self) -> &HostId {
        &self.inner.id
    }

    /// This host's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where this host serves `/metrics` (the bound address, so port 0 in the
    /// configuration gives the port chosen), when metrics are on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The host's inventory, as `ctl get inventory` shows it.
    pub fn inventory(&self) -> HostInventory {
        self.inner.inventory()
    }

    /// Calls an actor running on this host directly, without NATS (used by
    /// benchmarks and tests): the in-process leg of [`HostInner::invoke`] alone.
    ///
    /// # Errors
    /// [`HostCallError::NotHere`] when the actor does not run on this host, else
    /// the actor's own error.
    pub async fn call_local(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostCallError> {
        let (local, admitted) =
            self.inner
                .actors
                .admit(actor)
                .ok_or_else(|| HostCallError::NotHere {
                    actor: actor.to_string(),
                })?;
        let deadline = tokio::time::Instant::now() + self.inner.call_timeout();
        Ok(local
            .invoke_admitted(
                admitted?,
                operation,
                payload,
                lattice::trace::TraceContext::new_root(),
                deadline,
            )
            .await?)
    }

    /// Resolves when someone asks this host to stop through the control
    /// interface; returns the reason.
    pub async fn stop_requested(&self) -> String {
        let mut rx = self.inner.stop_requested.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return "host dropped".into();
            }
        }
    }

    /// Stops gracefully: stops answering control requests, drains in-flight calls
    /// (bounded by the drain timeout), stops every actor and provider and
    /// publishes `host_stopped`.
    ///
    /// Always ends: every step that talks to NATS is bounded, and the whole
    /// shutdown is cut short [`SHUTDOWN_GRACE`] after the drain timeout, so a
    /// host whose NATS server is gone still exits.
    pub async fn shutdown(&self, reason: &str) {
        let inner = &self.inner;
        tracing::info!(host_id = %inner.id, reason, "host stopping");
        let limit = inner.config.drain_timeout + SHUTDOWN_GRACE;
        if tokio::time::timeout(limit, self.shutdown_steps(reason))
            .await
            .is_err()
        {
            tracing::warn!(
                host_id = %inner.id,
                "shutdown took longer than {limit:?} (is NATS reachable?); stopping anyway"
            );
        }
        tracing::info!(host_id = %inner.id, "host stopped");
    }

    async fn shutdown_steps(&self, reason: &str) {
        let inner = &self.inner;
        // First hand the reconciler lease over, so another host takes over at once.
        let _ = inner.reconcile_stop.send(true);
        let reconciler = inner
            .reconciler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = reconciler {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        }
        for t in inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        // Closed under the lock: a start or update finishing now either put its
        // actor in the table already (stopped here) or is refused.
        let drained = {
            let mut closed = inner.lifecycle.lock().await;
            *closed = true;
            inner.actors.drain()
        };
        let stops = drained.into_iter().map(|(id, running)| {
            let inner = inner.clone();
            async move {
                inner.stop_running(&id, running, "host stopping").await;
            }
        });
        futures::future::join_all(stops).await;
        let providers = inner.providers.drain();
        futures::future::join_all(providers.iter().map(|p| p.stop("host stopping"))).await;
        if let Some(registry) = &inner.registry {
            let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, registry.leave(&inner.id)).await;
        }
        inner
            .publish(EventData::HostStopped {
                host_id: inner.id.clone(),
                reason: reason.to_string(),
            })
            .await;
        // Bounded: while NATS is unreachable a flush would wait for the reconnect
        // forever, and a stopping host must still exit.
        let flush = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, inner.nats.flush()).await;
        if !matches!(flush, Ok(Ok(()))) {
            tracing::warn!("could not flush the last events to NATS (is it reachable?)");
        }
    }
}

impl HostInner {
    fn info(&self) -> HostInfo {
        let (actors, replicas) = self.actors.counts();
        HostInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            lattice: self.lattice.clone(),
            labels: self.labels.clone(),
            version: lattice::VERSION.to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            actors,
            replicas: replicas + self.providers.len() as u64,
        }
    }

    fn inventory(&self) -> HostInventory {
        HostInventory {
            host: self.info(),
            actors: self.actors.descriptions(),
            providers: self.providers.descriptions(),
            next: None,
        }
    }

    /// This host's bid for an auction; `None` when its labels do not satisfy
    /// the constraints.
    fn bid(&self, req: &AuctionRequest) -> Option<Bid> {
        if !lattice::placement::labels_match(&self.labels, &req.constraints) {
            return None;
        }
        let links = self.links.for_actor(&req.actor_id);
        Some(Bid {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            load: self.info().replicas,
            running: self.actors.replicas_of(req.actor_id.as_str()),
            local_contracts: req
                .contracts
                .iter()
                .filter(|c| {
                    links.iter().any(|l| {
                        l.contract.as_str() == c.as_str() && self.providers.contains(&l.provider_id)
                    })
                })
                .count() as u32,
        })
    }

    /// How long one call may take.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.runtime.config().call_timeout
    }

    async fn artifacts(&self) -> Result<&ArtifactStore, lattice::Error> {
        self.artifacts
            .get_or_try_init(|| ArtifactStore::open(self.nats.clone(), &self.lattice))
            .await
    }

    /// Publishes an event; failures are logged, never fatal (NATS may be
    /// reconnecting).
    pub(crate) async fn publish(&self, event: EventData) {
        lattice::event::publish(&self.nats, &self.lattice, self.id.as_str(), event).await;
    }

    /// Marks this host alive in the registry; bounded, and only logged when it
    /// fails (the host works on, gathers just wait longer for it).
    async fn beat(&self) {
        let Some(registry) = &self.registry else {
            return;
        };
        let period = self.config.heartbeat_interval;
        match tokio::time::timeout(period, registry.beat(&self.id, period)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record this host in the registry"),
            Err(_) => tracing::warn!("recording this host in the registry took over {period:?}"),
        }
    }

    fn spawn_heartbeat(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = self.config.heartbeat_interval;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.beat().await;
                // The first page of the inventory: a host with thousands of
                // actors would not fit in one message, and a heartbeat that is
                // not sent makes the lattice take this host for dead.
                let max = lattice::rpc::remote::payload_limit(&inner.nats);
                let beat = inner.inventory().page(None, max / 2);
                inner.publish(EventData::HostHeartbeat(beat)).await;
            }
        });
        self.track(task);
    }

    /// The metrics in the text format, the state gauges read now; empty when
    /// metrics are off.
    fn scrape(&self) -> String {
        let Some((metrics, _)) = &self.metrics else {
            return String::new();
        };
        metrics.refresh(&crate::metrics::HostState {
            actors: self.actors.metrics_state(),
            calls_in_flight: self.runtime.host_load().used(),
            slots_in_use: self.runtime.slots_in_use(),
            slots: self.runtime.config().max_instances,
            nats_connects: self
                .nats
                .statistics()
                .connects
                .load(std::sync::atomic::Ordering::Relaxed),
        });
        metrics.encode()
    }

    pub(crate) fn track(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }
}

impl ControlApi for HostInner {
    fn info(&self) -> HostInfo {
        HostInner::info(self)
    }

    fn inventory(&self) -> HostInventory {
        HostInner::inventory(self)
    }

    fn bid(&self, req: &AuctionRequest) -> Option<Bid> {
        HostInner::bid(self, req)
    }

    async fn start_actor(self: &Arc<Self>, cmd: StartActor) -> Result<ActorStarted, ControlError> {
        HostInner::start_actor(self, cmd).await
    }

    async fn stop_actor(self: &Arc<Self>, cmd: StopActor) -> Result<ActorStopped, ControlError> {
        HostInner::stop_actor(self, cmd).await
    }

    async fn scale_actor(self: &Arc<Self>, cmd: ScaleActor) -> Result<ActorScaled, ControlError> {
        HostInner::scale_actor(self, cmd).await
    }

    async fn update_actor(
        self: &Arc<Self>,
        cmd: UpdateActor,
    ) -> Result<ActorUpdated, ControlError> {
        HostInner::update_actor(self, cmd).await
    }

    async fn start_provider(
        self: &Arc<Self>,
        cmd: StartProvider,
    ) -> Result<ProviderAck, ControlError> {
        HostInner::start_provider(self, cmd).await
    }

    async fn stop_provider(
        self: &Arc<Self>,
        cmd: StopProvider,
    ) -> Result<ProviderAck, ControlError> {
        HostInner::stop_provider(self, cmd).await
    }

    fn request_stop(&self, reason: &str) {
        let _ = self.stop_requested.send(Some(reason.to_string()));
    }
}
