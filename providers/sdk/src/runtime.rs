//! Running a [`Provider`]: links, the rpc subscription, pings, events.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use futures::StreamExt;
use lattice::{
    client::CtlClient,
    ctl::{CtlReply, ProviderDescription},
    event::EventData,
    id::{ActorId, ContractId, LatticeId, LinkName, ProviderId},
    link::LinkDefinition,
    link_store::{LinkCache, LinkChange, LinkStore},
    rpc::{Invocation, Target, remote, serve::serve_invocation},
    subject,
    trace::TraceContext,
};
use tokio::task::JoinHandle;

use crate::{
    ActorCaller, BoxFuture, CallError, LinkStatus, Provider, ProviderCall, ProviderContext,
    ProviderError, RemoteCallError,
};

/// How long each step of stopping a provider (its shutdown, the final flush)
/// may take.
pub const STOP_STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a provider may take to answer one call from another host.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Calls from other hosts a provider instance serves at once. A call past it
/// is answered "busy" at once (no queue): the rpc loop never waits, so the
/// tasks and payloads it holds stay bounded, and callers hear why instead of
/// timing out.
pub const MAX_REMOTE_CALLS: usize = 256;

/// How long a starting provider listens for another provider with its id.
const DUPLICATE_CHECK: Duration = Duration::from_millis(300);

/// A started provider: watches links, serves `lattice.{lid}.rpc.{id}`, answers
/// `ping.providers`. Cheap to clone.
#[derive(Clone)]
pub struct ProviderRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<dyn Provider>,
    id: ProviderId,
    /// `provider.contract()`, parsed once at start.
    contract: ContractId,
    /// `provider {id}`, for replies and spans.
    what: String,
    name: String,
    location: String,
    source: String,
    lattice: LatticeId,
    nats: async_nats::Client,
    statuses: RwLock<BTreeMap<String, LinkStatus>>,
    /// The links handed to the provider, by key: what a resync compares with.
    applied: Mutex<BTreeMap<String, LinkDefinition>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ProviderRuntime {
    /// Starts `provider` under `ctx.provider_id`, as one instance among any
    /// number: one id may run once per location (per host), each instance in the
    /// queue group `{id}` so calls are spread over them, each applying every link
    /// of the id.
    ///
    /// * `name`: what it is (`builtin:keyvalue`), for listings;
    /// * `location`: where it runs (`host brave-otter`), for listings;
    /// * `source`: the id events are published from (the host id, or the process').
    ///
    /// # Errors
    /// [`ProviderError::Backend`] when an instance with the same id already
    /// answers at the same `location`, or one answers serving another contract
    /// (calls to the id would reach either); when `Provider::start` fails, or
    /// NATS fails.
    pub async fn start(
        provider: Arc<dyn Provider>,
        ctx: ProviderContext,
        name: &str,
        location: &str,
        source: &str,
    ) -> Result<Self, ProviderError> {
        Self::start_scoped(provider, ctx, name, location, source, false).await
    }

    /// Like [`ProviderRuntime::start`], but as the only instance of its id in
    /// the lattice: refused when any instance with the id answers anywhere.
    /// What a standalone provider process (`lattice provider run`) uses.
    ///
    /// # Errors
    /// As [`ProviderRuntime::start`], and when the id answers anywhere.
    pub async fn start_alone(
        provider: Arc<dyn Provider>,
        ctx: ProviderContext,
        name: &str,
        location: &str,
        source: &str,
    ) -> Result<Self, ProviderError> {
        Self::start_scoped(provider, ctx, name, location, source, true).await
    }

    async fn start_scoped(
        provider: Arc<dyn Provider>,
        ctx: ProviderContext,
        name: &str,
        location: &str,
        source: &str,
        alone: bool,
    ) -> Result<Self, ProviderError> {
        let nats_err = |what: &str, e: &dyn std::fmt::Display| {
            ProviderError::Backend(format!("provider {}: {what}: {e}", ctx.provider_id))
        };
        let provider_id = ProviderId::new(ctx.provider_id.as_str())
            .map_err(|e| ProviderError::Backend(e.to_string()))?;
        let contract = ContractId::new(provider.contract()).map_err(|e| {
            ProviderError::Backend(format!("provider {provider_id} serves a bad contract: {e}"))
        })?;
        let ctl = CtlClient::new(ctx.nats.clone(), ctx.lattice.clone());
        let existing = ctl
            .ping_providers(DUPLICATE_CHECK)
            .await
            .map_err(|e| nats_err("ping providers", &e))?;
        let same_id = existing.iter().filter(|p| p.id == provider_id);
        for other in same_id {
            if alone || other.location == location {
                return Err(ProviderError::Backend(format!(
                    "provider {} already runs in lattice {:?} ({}, {}); {}",
                    other.id,
                    ctx.lattice.as_str(),
                    other.name,
                    other.location,
                    if alone {
                        "a standalone provider runs once per lattice: stop it or pick another --id"
                    } else {
                        "one id runs once per host: stop it or pick another --id"
                    },
                )));
            }
            if other.contract != contract {
                return Err(ProviderError::Backend(format!(
                    "provider {} already runs in lattice {:?} serving {} ({}, {}), not {contract}: instances of one id share its calls, so they must serve one contract; pick another --id",
                    other.id,
                    ctx.lattice.as_str(),
                    other.contract,
                    other.name,
                    other.location
                )));
            }
        }

        provider.start(ctx.clone()).await?;
        let links = LinkStore::open(ctx.nats.clone(), &ctx.lattice)
            .await
            .map_err(|e| nats_err("open links", &e))?
            .cache()
            .await
            .map_err(|e| nats_err("watch links", &e))?;

        let rt = ProviderRuntime {
            inner: Arc::new(Inner {
                provider,
                what: format!("provider {provider_id}"),
                id: provider_id,
                contract,
                name: name.to_string(),
                location: location.to_string(),
                source: source.to_string(),
                lattice: ctx.lattice.clone(),
                nats: ctx.nats.clone(),
                statuses: RwLock::new(BTreeMap::new()),
                applied: Mutex::new(BTreeMap::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        rt.spawn_link_follower(links).await;
        rt.spawn_rpc()
            .await
            .map_err(|e| nats_err("subscribe", &e))?;
        rt.spawn_ping()
            .await
            .map_err(|e| nats_err("subscribe", &e))?;
        // Make sure the server has our subscriptions before we report started.
        let _ = tokio::time::timeout(Duration::from_secs(5), rt.inner.nats.flush()).await;
        rt.publish(EventData::ProviderStarted {
            host_id: source.to_string(),
            provider_id: rt.inner.id.to_string(),
            contract: rt.inner.contract.to_string(),
            name: name.to_string(),
        })
        .await;
        tracing::info!(provider = %rt.inner.id, contract = rt.inner.provider.contract(), "provider started");
        Ok(rt)
    }

    /// The provider id.
    pub fn id(&self) -> &ProviderId {
        &self.inner.id
    }

    /// The contract it serves.
    pub fn contract(&self) -> &ContractId {
        &self.inner.contract
    }

    /// Calls the provider directly: the in-process fast path a host uses for its
    /// own actors.
    ///
    /// # Errors
    /// Whatever the provider returns.
    pub async fn handle_local(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        self.inner.provider.handle(call).await
    }

    /// What `ctl get providers` and inventories show.
    pub fn description(&self) -> ProviderDescription {
        self.inner.description()
    }

    /// Stops serving, shuts the provider down, publishes `provider_stopped`.
    ///
    /// Bounded: the provider's own shutdown and the final flush each get
    /// [`STOP_STEP_TIMEOUT`], so a provider whose NATS server is gone still stops.
    pub async fn stop(&self, reason: &str) {
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        if tokio::time::timeout(STOP_STEP_TIMEOUT, self.inner.provider.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(provider = %self.inner.id, "provider shutdown did not finish in {STOP_STEP_TIMEOUT:?}");
        }
        self.publish(EventData::ProviderStopped {
            host_id: self.inner.source.clone(),
            provider_id: self.inner.id.to_string(),
            reason: reason.to_string(),
        })
        .await;
        if !matches!(
            tokio::time::timeout(STOP_STEP_TIMEOUT, self.inner.nats.flush()).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(provider = %self.inner.id, "could not flush the last events to NATS (is it reachable?)");
        }
    }

    async fn publish(&self, event: EventData) {
        self.inner.publish(event).await;
    }

    fn track(&self, t: JoinHandle<()>) {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t);
    }

    async fn spawn_link_follower(&self, links: LinkCache) {
        // Subscribe first, then apply what exists, so no change falls in between.
        let mut changes = links.subscribe();
        for link in links.for_provider(&self.inner.id) {
            self.inner.apply(link).await;
        }
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            // The cache (and its watch) lives as long as this task runs.
            loop {
                let change = match changes.recv().await {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Changes were dropped, deletes among them perhaps: the
                        // cache itself is current, so compare with it.
                        tracing::warn!(
                            missed = n,
                            "provider fell behind on link changes; re-reading all links"
                        );
                        let Some(inner) = weak.upgrade() else { break };
                        inner.resync(&links).await;
                        continue;
                    }
                    Err(_) => break,
                };
                let Some(inner) = weak.upgrade() else { break };
                match change {
                    LinkChange::Put(l) if l.provider_id == inner.id => inner.apply(l).await,
                    LinkChange::Deleted(l) if l.provider_id == inner.id => inner.remove(l).await,
                    // A link moved to another provider: release ours.
                    LinkChange::Put(l) => {
                        let key = l.key();
                        let had = inner
                            .statuses
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .contains_key(&key);
                        if had {
                            inner.remove(l).await;
                        }
                    }
                    LinkChange::Deleted(_) => {}
                }
            }
        });
        self.track(task);
    }

    async fn spawn_rpc(&self) -> Result<(), async_nats::SubscribeError> {
        let subject = subject::provider_rpc(&self.inner.lattice, &self.inner.id);
        let mut sub = self
            .inner
            .nats
            .queue_subscribe(subject, self.inner.id.to_string())
            .await?;
        let weak = Arc::downgrade(&self.inner);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_REMOTE_CALLS));
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(inner) = weak.upgrade() else { break };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(async move {
                            inner.serve(msg).await;
                            drop(permit);
                        });
                    }
                    Err(_) => inner.refuse_busy(msg).await,
                }
            }
        });
        self.track(task);
        Ok(())
    }

    async fn spawn_ping(&self) -> Result<(), async_nats::SubscribeError> {
        let subject = subject::ctl(&self.inner.lattice, subject::OP_PING_PROVIDERS);
        let mut sub = self.inner.nats.subscribe(subject).await?;
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(inner) = weak.upgrade() else { break };
                if let Some(reply) = msg.reply {
                    let body =
                        serde_json::to_vec(&CtlReply::Ok(inner.description())).unwrap_or_default();
                    let _ = inner.nats.publish(reply, body.into()).await;
                }
            }
        });
        self.track(task);
        Ok(())
    }
}

impl Inner {
    fn description(&self) -> ProviderDescription {
        ProviderDescription {
            id: self.id.clone(),
            name: self.name.clone(),
            contract: self.contract.clone(),
            location: self.location.clone(),
            health: self.provider.health(),
            links: self
                .statuses
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect(),
        }
    }

    async fn publish(&self, event: EventData) {
        lattice::event::publish(&self.nats, &self.lattice, &self.source, event).await;
    }

    async fn apply(&self, link: LinkDefinition) {
        let key = link.key();
        let (actor_id, link_name) = (link.actor_id.clone(), link.link_name.clone());
        self.lock_applied().insert(key.clone(), link.clone());
        let result = self.provider.put_link(link).await;
        let error = result.err().map(|e| e.to_string());
        if let Some(error) = &error {
            tracing::warn!(provider = %self.id, actor = %actor_id, link = %link_name, %error, "link failed");
            self.publish(EventData::LinkFailed {
                provider_id: self.id.to_string(),
                actor_id: actor_id.clone(),
                link_name: link_name.to_string(),
                error: error.clone(),
            })
            .await;
        }
        self.statuses
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                LinkStatus {
                    actor_id,
                    link_name,
                    error,
                },
            );
    }

    async fn remove(&self, link: LinkDefinition) {
        let key = link.key();
        self.statuses
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.lock_applied().remove(&key);
        self.provider.delete_link(link).await;
    }

    fn lock_applied(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LinkDefinition>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the provider in line with the links in `cache`: removes what is
    /// gone, applies what is new or changed.
    async fn resync(&self, cache: &LinkCache) {
        let current: BTreeMap<String, LinkDefinition> = cache
            .for_provider(&self.id)
            .into_iter()
            .map(|l| (l.key(), l))
            .collect();
        let (stale, changed): (Vec<_>, Vec<_>) = {
            let applied = self.lock_applied();
            (
                applied
                    .iter()
                    .filter(|(k, _)| !current.contains_key(*k))
                    .map(|(_, l)| l.clone())
                    .collect(),
                current
                    .iter()
                    .filter(|(k, l)| applied.get(*k) != Some(l))
                    .map(|(_, l)| l.clone())
                    .collect(),
            )
        };
        for l in stale {
            self.remove(l).await;
        }
        for l in changed {
            self.apply(l).await;
        }
    }

    /// Answers a call past [`MAX_REMOTE_CALLS`] with a "busy" error, at once.
    async fn refuse_busy(&self, msg: async_nats::Message) {
        let Some(reply) = msg.reply else { return };
        let message = format!(
            "{} is busy: {MAX_REMOTE_CALLS} calls in flight on {}; retry later",
            self.what, self.location
        );
        let body = lattice::rpc::InvocationResponse::err(message)
            .encode()
            .unwrap_or_default();
        if let Err(e) = self.nats.publish(reply, body.into()).await {
            tracing::warn!(provider = %self.id, error = %e, "could not send reply");
        }
    }

    async fn serve(self: Arc<Self>, msg: async_nats::Message) {
        serve_invocation(
            &self.nats,
            msg,
            &self.what,
            CALL_DEADLINE,
            |inv, _trace, _until| self.handle_remote(inv),
        )
        .await;
    }

    /// A call from an actor on another host. The caller's host checked its claims
    /// and links; the provider checks again that it holds a link for
    /// (origin, contract, link name), so a raw publish naming any origin cannot
    /// reach data the provider keeps for an actor without a link.
    async fn handle_remote(&self, inv: Invocation) -> Result<Vec<u8>, RemoteCallError> {
        let actor_id =
            ActorId::new(inv.origin.as_str()).map_err(|e| RemoteCallError::NotAnActor {
                provider: self.id.clone(),
                reason: e.to_string(),
            })?;
        let not_linked = |actor: &ActorId, link: &str| RemoteCallError::NotLinked {
            provider: self.id.clone(),
            actor: actor.clone(),
            link: link.to_string(),
            contract: self.contract.clone(),
        };
        let link_name = match inv.link_name {
            None => LinkName::default_name(),
            // A name that is no link name names no link.
            Some(l) => LinkName::new(l.as_str()).map_err(|_| not_linked(&actor_id, &l))?,
        };
        let key = lattice::link::key(&actor_id, &self.contract, &link_name);
        let linked = self
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key);
        if !linked {
            return Err(not_linked(&actor_id, link_name.as_str()));
        }
        let call = ProviderCall {
            actor_id,
            link_name: link_name.to_string(),
            operation: inv.operation,
            payload: inv.payload,
        };
        self.provider
            .handle(call)
            .await
            .map_err(|source| RemoteCallError::Failed {
                provider: self.id.clone(),
                source,
            })
    }
}

/// Calls actors over NATS: what a provider running as its own process uses.
pub struct NatsActorCaller {
    caller: remote::Caller,
    lattice: LatticeId,
    origin: String,
    timeout: Duration,
}

impl NatsActorCaller {
    /// Calls from provider `origin` with a per-call `timeout`.
    pub fn new(
        nats: async_nats::Client,
        lattice: LatticeId,
        origin: &str,
        timeout: Duration,
    ) -> Self {
        NatsActorCaller {
            caller: remote::Caller::new(nats),
            lattice,
            origin: origin.to_string(),
            timeout,
        }
    }
}

/// Maps a data-plane error to a [`CallError`].
pub fn call_error(actor: &str, e: lattice::Error) -> CallError {
    match e {
        lattice::Error::NoResponders { .. } => CallError::NotRunning(actor.to_string()),
        lattice::Error::Timeout { .. } => CallError::Timeout(actor.to_string()),
        lattice::Error::ServerLost { .. } => CallError::Lost(e.to_string()),
        lattice::Error::Remote(m) if CallError::is_busy_message(&m) => CallError::Busy(m),
        lattice::Error::Remote(m) if CallError::is_deadline_message(&m) => {
            CallError::Timeout(actor.to_string())
        }
        other => CallError::Failed(other.to_string()),
    }
}

impl ActorCaller for NatsActorCaller {
    fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        let target = ActorId::new(actor).map(Target::Actor);
        let (caller, lattice, timeout) = (self.caller.clone(), self.lattice.clone(), self.timeout);
        let (origin, actor, operation) = (
            self.origin.clone(),
            actor.to_string(),
            operation.to_string(),
        );
        Box::pin(async move {
            let target = target.map_err(|e| CallError::Failed(e.to_string()))?;
            let inv = Invocation::new(origin, &target, operation, payload);
            caller
                .invoke(&lattice, &target, inv, &TraceContext::new_root(), timeout)
                .await
                .map_err(|e| call_error(&actor, e))
        })
    }

    fn remote(&self, actor: &str) -> Option<crate::RemoteActor> {
        let actor = ActorId::new(actor).ok()?;
        Some(crate::RemoteActor {
            caller: self.caller.clone(),
            subject: lattice::subject::actor_rpc(&self.lattice, &actor),
            origin: self.origin.clone(),
            timeout: self.timeout,
        })
    }
}

/// Runs `provider` as its own process joined to `lattice` over `nats`, until
/// SIGINT/SIGTERM, as the only instance of its id ([`ProviderRuntime::start_alone`]).
///
/// # Errors
/// [`ProviderError`] when it cannot start, e.g. when the id already answers.
pub async fn run_standalone(
    provider: Arc<dyn Provider>,
    nats: async_nats::Client,
    lattice: LatticeId,
    provider_id: &str,
    name: &str,
) -> Result<(), ProviderError> {
    let source = format!("P{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let ctx = ProviderContext {
        lattice: lattice.clone(),
        provider_id: provider_id.to_string(),
        nats: nats.clone(),
        actors: Arc::new(NatsActorCaller::new(
            nats.clone(),
            lattice,
            provider_id,
            Duration::from_secs(30),
        )),
    };
    let location = format!(
        "process {}@{}",
        std::process::id(),
        lattice::process::hostname()
    );
    let rt = ProviderRuntime::start_alone(provider, ctx, name, &location, &source).await?;
    let reason = lattice::process::shutdown_signal().await;
    rt.stop(&reason).await;
    Ok(())
}
