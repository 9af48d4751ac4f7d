//! The host side of the control interface: a thin NATS adapter. Each request is
//! decoded from JSON, handed to a [`ControlApi`] method, and its result sent
//! back as a [`CtlReply`] (`{"ok": ...}` or `{"error": "..."}`, the error being
//! the [`ControlError`]'s message).
//!
//! This module knows NATS, subjects and the control messages; it knows nothing
//! of how a host runs actors: the host implements [`ControlApi`].

use std::{future::Future, sync::Arc};

use async_nats::Client;
use futures::StreamExt;
use lattice::{
    ctl::{
        ActorScaled, ActorStarted, ActorStopped, ActorUpdated, AuctionRequest, Bid, CtlReply,
        HostInfo, HostInventory, InventoryRequest, ProviderAck, ScaleActor, StartActor,
        StartProvider, StopActor, StopProvider, UpdateActor,
    },
    id::{HostId, LatticeId},
    subject,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::{sync::Semaphore, task::JoinHandle};
use tracing::Instrument;

use crate::error::ControlError;

/// What the control interface asks of a host. Each method owns its locks; the
/// adapter only decodes, calls and encodes.
pub(crate) trait ControlApi: Send + Sync + 'static {
    /// The answer to a ping.
    fn info(&self) -> HostInfo;
    /// Everything the host runs.
    fn inventory(&self) -> HostInventory;
    /// A bid for the auction, or `None` when the host's labels do not satisfy the
    /// constraints (it then answers `{"ok": null}`, so the gather knows it spoke).
    fn bid(&self, req: &AuctionRequest) -> Option<Bid>;
    /// Starts (or adds) replicas of an actor.
    fn start_actor(
        self: &Arc<Self>,
        cmd: StartActor,
    ) -> impl Future<Output = Result<ActorStarted, ControlError>> + Send;
    /// Stops an actor.
    fn stop_actor(
        self: &Arc<Self>,
        cmd: StopActor,
    ) -> impl Future<Output = Result<ActorStopped, ControlError>> + Send;
    /// Sets an actor's replicas.
    fn scale_actor(
        self: &Arc<Self>,
        cmd: ScaleActor,
    ) -> impl Future<Output = Result<ActorScaled, ControlError>> + Send;
    /// Replaces an actor's module, keeping it serving.
    fn update_actor(
        self: &Arc<Self>,
        cmd: UpdateActor,
    ) -> impl Future<Output = Result<ActorUpdated, ControlError>> + Send;
    /// Starts a built-in provider.
    fn start_provider(
        self: &Arc<Self>,
        cmd: StartProvider,
    ) -> impl Future<Output = Result<ProviderAck, ControlError>> + Send;
    /// Stops a provider.
    fn stop_provider(
        self: &Arc<Self>,
        cmd: StopProvider,
    ) -> impl Future<Output = Result<ProviderAck, ControlError>> + Send;
    /// Asks the host's owner to stop it.
    fn request_stop(&self, reason: &str);
}

/// Subscribes host `id` to its own control subjects and the lattice-wide ones;
/// returns the tasks reading them, which end when `api` is dropped.
///
/// # Errors
/// [`lattice::Error::Nats`] when a subscription fails.
pub(crate) async fn subscribe<A: ControlApi>(
    api: &Arc<A>,
    nats: &Client,
    lattice: &LatticeId,
    id: &HostId,
) -> Result<Vec<JoinHandle<()>>, lattice::Error> {
    let host_prefix = subject::host_ctl(lattice, id, "")
        .trim_end_matches('.')
        .to_string();
    let subjects = [
        subject::host_ctl_all(lattice, id),
        subject::ctl(lattice, subject::OP_PING_HOSTS),
        subject::ctl(lattice, subject::OP_AUCTION_ACTOR),
    ];
    let mut tasks = Vec::new();
    for s in subjects {
        let mut sub = nats
            .subscribe(s.clone())
            .await
            .map_err(|e| lattice::Error::nats(format!("subscribe {s}"), e))?;
        let weak = Arc::downgrade(api);
        let (nats, host_prefix, id) = (nats.clone(), host_prefix.clone(), id.clone());
        let permits = Arc::new(Semaphore::new(MAX_CONTROL_TASKS));
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(api) = weak.upgrade() else { break };
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let op = operation(&msg.subject, &host_prefix);
                let span = tracing::info_span!("ctl", host_id = %id, op = %op);
                if is_quick(&op) {
                    // Answered from memory, here: nothing waits, so pings and
                    // inventories are answered whatever else the host does.
                    let body = handle(
                        &api,
                        &op,
                        &msg.payload,
                        lattice::rpc::remote::payload_limit(&nats),
                    )
                    .instrument(span)
                    .await;
                    if let Some(body) = body {
                        send(&nats, &id, reply, body).await;
                    }
                    continue;
                }
                // Starts and stops each on their own task (a slow start must
                // not hold up the next request), at most MAX_CONTROL_TASKS.
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    let busy = ControlError::Busy {
                        host: api.info().name,
                        limit: MAX_CONTROL_TASKS,
                    };
                    send(&nats, &id, reply, json(&CtlReply::<()>::from(Err(busy)))).await;
                    continue;
                };
                let (nats, id) = (nats.clone(), id.clone());
                tokio::spawn(async move {
                    // Progress lets the caller tell a slow start (a large
                    // module compiling) from a host that died mid-request.
                    let work = handle(
                        &api,
                        &op,
                        &msg.payload,
                        lattice::rpc::remote::payload_limit(&nats),
                    )
                    .instrument(span);
                    let body = lattice::rpc::serve::with_progress_if_asked(&nats, &msg, work).await;
                    if let Some(body) = body {
                        send(&nats, &id, reply, body).await;
                    }
                    drop(permit);
                });
            }
        }));
    }
    Ok(tasks)
}

/// Control requests (starts, stops, scales) one subscription runs at once; past
/// it a request is answered "busy" at once. Pings, auctions and inventories
/// are answered in the reading loop and never count.
pub const MAX_CONTROL_TASKS: usize = 32;

/// Whether `op` is answered from memory without waiting.
fn is_quick(op: &str) -> bool {
    !matches!(
        op,
        subject::OP_ACTOR_START
            | subject::OP_ACTOR_STOP
            | subject::OP_ACTOR_SCALE
            | subject::OP_ACTOR_UPDATE
            | subject::OP_PROVIDER_START
            | subject::OP_PROVIDER_STOP
    )
}

/// Sends a control reply, signed with this host's id so a scatter-gather knows
/// who has answered.
async fn send(nats: &Client, id: &HostId, reply: async_nats::Subject, mut body: Vec<u8>) {
    let max = lattice::rpc::remote::payload_limit(nats);
    if body.len() > max {
        // Dropped by NATS otherwise, and the caller would wait for nothing.
        body = json(&CtlReply::<()>::from(Err(ControlError::ReplyTooLarge {
            size: body.len(),
            max,
        })));
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(lattice::ctl::HOST_HEADER, id.as_str());
    if let Err(e) = nats.publish_with_headers(reply, headers, body.into()).await {
        tracing::warn!(error = %e, "could not send control reply");
    }
}

/// The operation a control subject names: what follows the host's own prefix,
/// or the lattice-wide `ctl.` prefix.
fn operation(subject: &str, host_prefix: &str) -> String {
    if let Some(op) = subject.strip_prefix(host_prefix) {
        op.trim_start_matches('.').to_string()
    } else {
        subject
            .rsplit_once(".ctl.")
            .map(|(_, op)| op.to_string())
            .unwrap_or_default()
    }
}

/// Answers one request; `None` when the host stays silent (an auction it does
/// not qualify for).
async fn handle<A: ControlApi>(
    api: &Arc<A>,
    op: &str,
    payload: &[u8],
    max_reply: usize,
) -> Option<Vec<u8>> {
    Some(match op {
        subject::OP_PING_HOSTS => json(&CtlReply::Ok(api.info())),
        subject::OP_AUCTION_ACTOR => match parse::<AuctionRequest>(payload) {
            Ok(req) => json(&CtlReply::Ok(api.bid(&req))),
            Err(e) => reply::<Bid>(Err(e)),
        },
        subject::OP_INVENTORY => match parse::<Option<InventoryRequest>>(payload) {
            Ok(req) => {
                let after = req.and_then(|r| r.after);
                json(&CtlReply::Ok(
                    api.inventory().page(after.as_ref(), max_reply / 2),
                ))
            }
            Err(e) => reply::<HostInventory>(Err(e)),
        },
        subject::OP_ACTOR_START => match parse(payload) {
            Ok(cmd) => reply(api.start_actor(cmd).await),
            Err(e) => reply::<ActorStarted>(Err(e)),
        },
        subject::OP_ACTOR_STOP => match parse(payload) {
            Ok(cmd) => reply(api.stop_actor(cmd).await),
            Err(e) => reply::<ActorStopped>(Err(e)),
        },
        subject::OP_ACTOR_SCALE => match parse(payload) {
            Ok(cmd) => reply(api.scale_actor(cmd).await),
            Err(e) => reply::<ActorScaled>(Err(e)),
        },
        subject::OP_ACTOR_UPDATE => match parse(payload) {
            Ok(cmd) => reply(api.update_actor(cmd).await),
            Err(e) => reply::<ActorUpdated>(Err(e)),
        },
        subject::OP_PROVIDER_START => match parse(payload) {
            Ok(cmd) => reply(api.start_provider(cmd).await),
            Err(e) => reply::<ProviderAck>(Err(e)),
        },
        subject::OP_PROVIDER_STOP => match parse(payload) {
            Ok(cmd) => reply(api.stop_provider(cmd).await),
            Err(e) => reply::<ProviderAck>(Err(e)),
        },
        subject::OP_HOST_STOP => {
            api.request_stop("stop requested through the control interface");
            json(&CtlReply::Ok(()))
        }
        other => reply::<()>(Err(ControlError::UnknownOperation(other.to_string()))),
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::Malformed {
        request: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("control"),
        reason: e.to_string(),
    })
}

fn reply<T: Serialize>(r: Result<T, ControlError>) -> Vec<u8> {
    json(&CtlReply::from(r))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v)
        .unwrap_or_else(|e| format!(r#"{{"error":"could not encode reply: {e}"}}"#).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_subjects() {
        let host = "lattice.default.ctl.host.HABC";
        assert_eq!(
            operation("lattice.default.ctl.host.HABC.actor.start", host),
            "actor.start"
        );
        assert_eq!(
            operation("lattice.default.ctl.ping.hosts", host),
            "ping.hosts"
        );
        assert_eq!(operation("elsewhere", host), "");
    }

    #[test]
    fn only_starts_stops_and_scales_leave_the_loop() {
        for op in [
            "ping.hosts",
            "auction.actor",
            "inventory",
            "stop",
            "nonsense",
        ] {
            assert!(is_quick(op), "{op}");
        }
        for op in [
            "actor.start",
            "actor.stop",
            "actor.scale",
            "provider.start",
            "provider.stop",
        ] {
            assert!(!is_quick(op), "{op}");
        }
    }

    #[test]
    fn malformed_requests_name_the_type() {
        let e = parse::<StartActor>(b"{").unwrap_err().to_string();
        assert!(e.starts_with("malformed StartActor request: "), "{e}");
    }
}
