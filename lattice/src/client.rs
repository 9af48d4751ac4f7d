//! A typed client for the control interface of one lattice, and calls of actors
//! from outside it.
//!
//! Used by the `lattice` CLI and by tests. Sending invocations lives in
//! [`crate::rpc::remote`].

use std::{collections::BTreeSet, time::Duration};

use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use crate::{
    Error,
    artifact::ArtifactStore,
    ctl::{
        ActorScaled, ActorStarted, ActorStopped, ActorUpdated, AuctionRequest, Bid, CtlReply,
        HostInfo, HostInventory, InventoryRequest, ProviderAck, ProviderDescription, ScaleActor,
        StartActor, StartProvider, StopActor, StopProvider, UpdateActor,
    },
    host_registry,
    id::{ActorId, HostId, LatticeId, ProviderId},
    link_store::LinkStore,
    rpc::{Invocation, Target, remote},
    subject,
    trace::{CallSpan, SpanKind, SpanStart},
};

/// Default timeout of control requests and calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long scatter-gather requests (ping, auction) collect answers at most.
/// They end sooner, as soon as every host the lattice's registry knows to be
/// alive has answered ([`crate::host_registry`]).
pub const DEFAULT_GATHER: Duration = Duration::from_millis(500);
/// Starting an actor includes downloading and compiling it: give it time.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Client for one lattice over one NATS connection. Cheap to clone.
#[derive(Clone)]
pub struct CtlClient {
    nats: Client,
    /// Sends actor calls (replies and progress on one subscription).
    caller: remote::Caller,
    lattice: LatticeId,
    timeout: Duration,
}

impl CtlClient {
    /// A client for `lattice` with the [`DEFAULT_TIMEOUT`].
    pub fn new(nats: Client, lattice: LatticeId) -> Self {
        CtlClient {
            caller: remote::Caller::new(nats.clone()),
            nats,
            lattice,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the timeout of requests and calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The lattice this client talks to.
    pub fn lattice(&self) -> &LatticeId {
        &self.lattice
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &Client {
        &self.nats
    }

    /// Opens the lattice's artifact store.
    ///
    /// # Errors
    /// See [`ArtifactStore::open`].
    pub async fn artifacts(&self) -> Result<ArtifactStore, Error> {
        ArtifactStore::open(self.nats.clone(), &self.lattice).await
    }

    /// Asks every host for its [`HostInfo`], collecting answers for `window`.
    ///
    /// # Errors
    /// [`Error::Nats`] when the request cannot be sent.
    pub async fn ping_hosts(&self, window: Duration) -> Result<Vec<HostInfo>, Error> {
        let mut hosts: Vec<HostInfo> = self
            .gather(
                &subject::ctl(&self.lattice, subject::OP_PING_HOSTS),
                &(),
                window,
                Expect::LiveHosts,
            )
            .await?;
        hosts.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(hosts)
    }

    /// Asks every provider (built-in or standalone) to describe itself.
    ///
    /// # Errors
    /// [`Error::Nats`] when the request cannot be sent.
    pub async fn ping_providers(
        &self,
        window: Duration,
    ) -> Result<Vec<ProviderDescription>, Error> {
        // Providers are not in the host registry: always the whole window.
        let mut providers: Vec<ProviderDescription> = self
            .gather(
                &subject::ctl(&self.lattice, subject::OP_PING_PROVIDERS),
                &(),
                window,
                Expect::Unknown,
            )
            .await?;
        providers.sort_by(|a, b| a.id.cmp(&b.id).then(a.location.cmp(&b.location)));
        Ok(providers)
    }

    /// A running provider with id `id`, if one answers a ping within
    /// `window`. Ends at the first answer from it: only a lattice without
    /// that provider waits the whole window.
    ///
    /// # Errors
    /// [`Error::Nats`] when the ping cannot be sent.
    pub async fn find_provider(
        &self,
        id: &ProviderId,
        window: Duration,
    ) -> Result<Option<ProviderDescription>, Error> {
        let found: Vec<ProviderDescription> = self
            .gather_until(
                &subject::ctl(&self.lattice, subject::OP_PING_PROVIDERS),
                &(),
                window,
                Expect::Unknown,
                |p: &ProviderDescription| p.id == *id,
            )
            .await?;
        Ok(found.into_iter().find(|p| p.id == *id))
    }

    /// Starts a built-in provider on one host.
    ///
    /// # Errors
    /// [`Error::Remote`] with the host's reason (unknown name, duplicate id, ...).
    pub async fn start_provider(
        &self,
        host: &HostId,
        command: &StartProvider,
    ) -> Result<ProviderAck, Error> {
        self.host_request(
            host,
            subject::OP_PROVIDER_START,
            command,
            self.timeout.max(Duration::from_secs(10)),
        )
        .await
    }

    /// Stops a provider on one host.
    ///
    /// # Errors
    /// [`Error::Remote`] when the host does not run it.
    pub async fn stop_provider(
        &self,
        host: &HostId,
        provider_id: &ProviderId,
    ) -> Result<ProviderAck, Error> {
        let cmd = StopProvider {
            provider_id: provider_id.clone(),
        };
        self.host_request(host, subject::OP_PROVIDER_STOP, &cmd, self.timeout * 2)
            .await
    }

    /// The lattice's links.
    ///
    /// # Errors
    /// See [`LinkStore::open`].
    pub async fn links(&self) -> Result<LinkStore, Error> {
        LinkStore::open(self.nats.clone(), &self.lattice).await
    }

    /// Holds an auction: every host that can run the actor under the constraints bids.
    ///
    /// # Errors
    /// [`Error::Nats`] when the request cannot be sent.
    pub async fn auction_actor(
        &self,
        request: &AuctionRequest,
        window: Duration,
    ) -> Result<Vec<Bid>, Error> {
        // Hosts that cannot take the actor answer `{"ok": null}`, so the
        // auction, too, ends when every live host has spoken.
        let bids: Vec<Option<Bid>> = self
            .gather(
                &subject::ctl(&self.lattice, subject::OP_AUCTION_ACTOR),
                request,
                window,
                Expect::LiveHosts,
            )
            .await?;
        Ok(bids.into_iter().flatten().collect())
    }

    /// Finds a host by id or by name.
    ///
    /// # Errors
    /// [`Error::HostNotFound`] when no host matches, [`Error::AmbiguousHost`] when
    /// a name is ambiguous.
    pub async fn resolve_host(&self, id_or_name: &str) -> Result<HostId, Error> {
        let hosts = self.ping_hosts(DEFAULT_GATHER).await?;
        let matches: Vec<_> = hosts
            .iter()
            .filter(|h| h.id.as_str() == id_or_name || h.name == id_or_name)
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Error::HostNotFound {
                by: "id or name",
                host: id_or_name.to_string(),
                lattice: self.lattice.to_string(),
                answered: format!(" ({} hosts answered)", hosts.len()),
            }),
            many => Err(Error::AmbiguousHost {
                name: id_or_name.to_string(),
                count: many.len(),
            }),
        }
    }

    /// The inventory of one host, every page of it (a page is not a snapshot:
    /// an actor started or stopped meanwhile may be missed or listed).
    ///
    /// # Errors
    /// [`Error::HostNotFound`] when no such host is in the lattice,
    /// [`Error::Remote`] when a page does not advance past the one before.
    pub async fn inventory(&self, host: &HostId) -> Result<HostInventory, Error> {
        let mut inv: HostInventory = self
            .host_request(
                host,
                subject::OP_INVENTORY,
                &InventoryRequest::default(),
                self.timeout,
            )
            .await?;
        while let Some(after) = inv.next.take() {
            let page: HostInventory = self
                .host_request(
                    host,
                    subject::OP_INVENTORY,
                    &InventoryRequest {
                        after: Some(after.clone()),
                    },
                    self.timeout,
                )
                .await?;
            if page.actors.first().is_some_and(|a| a.id <= after) {
                return Err(Error::Remote(format!(
                    "host {host} answered an inventory page after actor {after} that starts at {}",
                    page.actors[0].id
                )));
            }
            inv.actors.extend(page.actors);
            inv.next = page.next;
        }
        Ok(inv)
    }

    /// The inventory of every host that answers a ping within `window`; hosts
    /// that stop answering in between are left out.
    ///
    /// # Errors
    /// [`Error::Nats`] when the ping cannot be sent.
    pub async fn inventories(&self, window: Duration) -> Result<Vec<HostInventory>, Error> {
        let hosts = self.ping_hosts(window).await?;
        let all = futures::future::join_all(hosts.iter().map(|h| self.inventory(&h.id))).await;
        Ok(all.into_iter().filter_map(Result::ok).collect())
    }

    /// Deletes the links of `app` and stops its actors and providers on the hosts
    /// of `inventories`: what undeploying an app removes. Best effort: every
    /// step is tried; the failures are returned, each naming what failed.
    pub async fn remove_app_resources(
        &self,
        app: &crate::app::DeployedApp,
        inventories: &[HostInventory],
    ) -> Vec<String> {
        let mut failures = Vec::new();
        match (self.links().await, app.manifest.link_definitions()) {
            (Ok(links), Ok(defs)) => {
                for l in defs {
                    if let Err(e) = links.delete(&l.actor_id, &l.contract, &l.link_name).await {
                        failures.push(format!("delete link {}: {e}", l.key()));
                    }
                }
            }
            (Err(e), _) | (_, Err(e)) => failures.push(format!("delete links: {e}")),
        }
        for inv in inventories {
            for a in inv
                .actors
                .iter()
                .filter(|x| app.manifest.actors.iter().any(|a| a.id == x.id.as_str()))
            {
                if let Err(e) = self.stop_actor(&inv.host.id, &a.id).await {
                    failures.push(format!("stop actor {} on {}: {e}", a.id, inv.host.name));
                }
            }
            for p in inv
                .providers
                .iter()
                .filter(|x| app.manifest.providers.iter().any(|p| p.id == x.id.as_str()))
            {
                if let Err(e) = self.stop_provider(&inv.host.id, &p.id).await {
                    failures.push(format!("stop provider {} on {}: {e}", p.id, inv.host.name));
                }
            }
        }
        failures
    }

    /// Starts replicas of an actor on one host and waits until it is ready.
    ///
    /// # Errors
    /// [`Error::Remote`] with the host's reason (bad module, fetch failure, ...).
    pub async fn start_actor(
        &self,
        host: &HostId,
        command: &StartActor,
    ) -> Result<ActorStarted, Error> {
        self.host_request(
            host,
            subject::OP_ACTOR_START,
            command,
            START_TIMEOUT.max(self.timeout),
        )
        .await
    }

    /// Replaces the module (and configuration) of an actor running on one
    /// host, keeping its replicas; the new module serves before the old one
    /// stops ([`UpdateActor`]).
    ///
    /// # Errors
    /// [`Error::Remote`] when the host does not run the actor, or the new
    /// module cannot be fetched, trusted, compiled or instantiated (the old
    /// one then keeps running).
    pub async fn update_actor(
        &self,
        host: &HostId,
        command: &UpdateActor,
    ) -> Result<ActorUpdated, Error> {
        // A start's work, then a stop's drain.
        self.host_request(
            host,
            subject::OP_ACTOR_UPDATE,
            command,
            START_TIMEOUT.max(self.timeout) + self.timeout * 4,
        )
        .await
    }

    /// Stops an actor on one host.
    ///
    /// # Errors
    /// [`Error::Remote`] when the host does not run it.
    pub async fn stop_actor(&self, host: &HostId, actor: &ActorId) -> Result<ActorStopped, Error> {
        let cmd = StopActor {
            actor_id: actor.clone(),
        };
        // Stopping waits for in-flight calls to drain.
        self.host_request(host, subject::OP_ACTOR_STOP, &cmd, self.timeout * 4)
            .await
    }

    /// Sets the replicas of an actor running on one host.
    ///
    /// # Errors
    /// [`Error::Remote`] when the host does not run it, or `replicas` is 0 or
    /// past the per-host limit (the message names the limit).
    pub async fn scale_actor(
        &self,
        host: &HostId,
        actor: &ActorId,
        replicas: u32,
    ) -> Result<ActorScaled, Error> {
        let cmd = ScaleActor {
            actor_id: actor.clone(),
            replicas,
        };
        self.host_request(host, subject::OP_ACTOR_SCALE, &cmd, self.timeout)
            .await
    }

    /// Asks a host to stop gracefully.
    ///
    /// # Errors
    /// [`Error::HostNotFound`] when no such host is in the lattice.
    pub async fn stop_host(&self, host: &HostId) -> Result<(), Error> {
        self.host_request(host, subject::OP_HOST_STOP, &(), self.timeout)
            .await
    }

    /// Calls an operation on an actor with a msgpack-encoded argument; returns the
    /// raw msgpack reply.
    ///
    /// # Errors
    /// [`Error::NoResponders`] when nobody runs the actor (fails fast), [`Error::Remote`]
    /// with the actor's or host's error, [`Error::Timeout`].
    pub async fn call<T: Serialize + ?Sized>(
        &self,
        actor: &str,
        operation: &str,
        argument: &T,
    ) -> Result<Vec<u8>, Error> {
        let payload = rmp_serde::to_vec_named(argument)?;
        self.call_raw(actor, operation, payload).await
    }

    /// Calls an operation with an already encoded payload.
    ///
    /// # Errors
    /// As [`CtlClient::call`].
    pub async fn call_raw(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let target = Target::Actor(ActorId::new(actor)?);
        let invocation = Invocation::new("cli", &target, operation, payload);
        // The root of the request's trace when this process exports spans.
        // DEBUG like every per-call span (see `serve_invocation`).
        let span = tracing::debug_span!("call", actor = %actor, operation = %operation);
        let exported = CallSpan::start(SpanStart {
            name: "call",
            kind: SpanKind::Client,
            parent: None,
            remote_parent: false,
            attributes: &[("actor", actor), ("operation", operation)],
        });
        let result = self
            .caller
            .invoke(
                &self.lattice,
                &target,
                invocation,
                &exported.context(),
                self.timeout,
            )
            .instrument(span)
            .await;
        exported.end_with(&result);
        result
    }

    /// Subscribes to every event of the lattice.
    ///
    /// # Errors
    /// [`Error::Nats`] when the subscription fails.
    pub async fn events(&self) -> Result<async_nats::Subscriber, Error> {
        self.nats
            .subscribe(subject::events_all(&self.lattice))
            .await
            .map_err(|e| Error::nats("subscribe to events", e))
    }

    async fn host_request<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        host: &HostId,
        op: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, Error> {
        let subject = subject::host_ctl(&self.lattice, host, op);
        let body = serde_json::to_vec(body).map_err(|e| json_err("encode", op, e))?;
        let what = format!("host {host:?} ({op})");
        let msg = self
            .caller
            .request(subject, HeaderMap::new(), body.into(), timeout, &what)
            .await
            .map_err(|e| match e {
                Error::NoResponders { .. } => Error::HostNotFound {
                    by: "id",
                    host: host.to_string(),
                    lattice: self.lattice.to_string(),
                    answered: String::new(),
                },
                other => other,
            })?;
        let reply: CtlReply<Resp> =
            serde_json::from_slice(&msg.payload).map_err(|e| json_err("decode", op, e))?;
        reply.into_result()
    }

    /// Publishes a request to everyone on `subject` and collects the answers
    /// for `window` at most. With [`Expect::LiveHosts`] the lattice's host
    /// registry is read while the hosts answer, and the gather ends as soon as
    /// every live host has answered (hosts name themselves in the
    /// [`crate::ctl::HOST_HEADER`]); when the registry cannot be read or lists
    /// no host, the whole window is waited out.
    async fn gather<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        subject: &str,
        body: &Req,
        window: Duration,
        expect: Expect,
    ) -> Result<Vec<Resp>, Error> {
        self.gather_until(subject, body, window, expect, |_| false)
            .await
    }

    /// [`CtlClient::gather`], ending too as soon as an answer satisfies `enough`.
    async fn gather_until<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        subject: &str,
        body: &Req,
        window: Duration,
        expect: Expect,
        enough: impl Fn(&Resp) -> bool,
    ) -> Result<Vec<Resp>, Error> {
        let inbox = self.nats.new_inbox();
        let mut sub = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::nats(format!("subscribe {inbox}"), e))?;
        let body = serde_json::to_vec(body).map_err(|e| json_err("encode", subject, e))?;
        self.nats
            .publish_with_reply(subject.to_string(), inbox, body.into())
            .await
            .map_err(|e| Error::nats(format!("publish {subject}"), e))?;
        let deadline = tokio::time::Instant::now() + window;
        // Read after publishing, so the hosts answer while it is read.
        let registry = host_registry::live(&self.nats, &self.lattice);
        tokio::pin!(registry);
        let mut reading_registry = expect == Expect::LiveHosts;
        // `None` until the registry has been read: hosts not yet answered.
        let mut waiting_for: Option<BTreeSet<HostId>> = None;
        let mut answered = BTreeSet::new();
        let mut out = Vec::new();
        loop {
            tokio::select! {
                live = &mut registry, if reading_registry => {
                    reading_registry = false;
                    if let Ok(live) = live
                        && !live.is_empty()
                    {
                        waiting_for = Some(live.into_iter().filter(|h| !answered.contains(h.as_str())).collect());
                    }
                }
                msg = tokio::time::timeout_at(deadline, sub.next()) => {
                    let Ok(Some(msg)) = msg else { break };
                    if let Some(host) = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(crate::ctl::HOST_HEADER))
                    {
                        if let Some(w) = waiting_for.as_mut() {
                            w.retain(|h| h.as_str() != host.as_str());
                        }
                        answered.insert(host.as_str().to_string());
                    }
                    // A host that cannot bid answers with an error; skip it, and skip
                    // replies from versions we cannot read rather than failing the whole gather.
                    if let Ok(CtlReply::Ok(v)) = serde_json::from_slice::<CtlReply<Resp>>(&msg.payload) {
                        let done = enough(&v);
                        out.push(v);
                        if done {
                            break;
                        }
                    }
                }
            }
            if waiting_for.as_ref().is_some_and(BTreeSet::is_empty) {
                break;
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(out)
    }
}

/// Whom a [`CtlClient::gather`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The hosts the registry lists as alive.
    LiveHosts,
    /// Nobody known in advance (providers): the whole window.
    Unknown,
}

fn json_err(action: &'static str, what: &str, e: serde_json::Error) -> Error {
    Error::Codec {
        action,
        what: format!("control message {what}"),
        reason: e.to_string(),
    }
}
