//! The host side of the control interface (JSON requests, [`CtlReply`] answers).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use lattice::{
    ctl::{ActorStarted, ActorStopped, AuctionRequest, Bid, CtlReply, StartActor, StopActor},
    event::EventData,
    subject,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::watch;

use super::{HostError, HostInner, RunningActor, router::Router, serve};
use crate::runtime::{LoadedFrom, actor::Actor};

/// Subscribes to the host-targeted subjects and the lattice-wide ones.
pub(super) async fn subscribe(inner: &Arc<HostInner>) -> Result<(), HostError> {
    let subjects = [
        subject::host_ctl_all(&inner.lattice, &inner.id),
        subject::ctl(&inner.lattice, subject::OP_PING_HOSTS),
        subject::ctl(&inner.lattice, subject::OP_AUCTION_ACTOR),
    ];
    for s in subjects {
        let mut sub = inner
            .nats
            .subscribe(s.clone())
            .await
            .map_err(|e| lattice::Error::nats(format!("subscribe {s}"), e))?;
        let weak = Arc::downgrade(inner);
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(inner) = weak.upgrade() else { break };
                // Each request on its own task: a slow start must not hold up pings.
                tokio::spawn(async move { handle(inner, msg).await });
            }
        });
        inner.track(task);
    }
    Ok(())
}

async fn handle(inner: Arc<HostInner>, msg: async_nats::Message) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let host_prefix = format!("{}.", subject::host_ctl(&inner.lattice, &inner.id, ""));
    let host_prefix = host_prefix.trim_end_matches('.');
    let op = if let Some(op) = msg.subject.as_str().strip_prefix(host_prefix) {
        op.trim_start_matches('.').to_string()
    } else {
        msg.subject
            .as_str()
            .rsplit_once(".ctl.")
            .map(|(_, op)| op.to_string())
            .unwrap_or_default()
    };
    let span = tracing::info_span!("ctl", host_id = %inner.id, op = %op);
    let _enter = span.enter();
    let body = match op.as_str() {
        subject::OP_PING_HOSTS => json(&CtlReply::Ok(inner.info())),
        subject::OP_AUCTION_ACTOR => match parse::<AuctionRequest>(&msg.payload) {
            // Hosts that do not match stay silent: the auction only hears bidders.
            Ok(req) if !lattice::placement::labels_match(&inner.labels, &req.constraints) => return,
            Ok(req) => json(&CtlReply::Ok(bid(&inner, &req))),
            Err(e) => json(&CtlReply::<Bid>::Error(e)),
        },
        subject::OP_INVENTORY => json(&CtlReply::Ok(inner.inventory())),
        subject::OP_ACTOR_START => {
            drop(_enter);
            let r = match parse::<StartActor>(&msg.payload) {
                Ok(cmd) => start_actor(&inner, cmd).await,
                Err(e) => Err(e),
            };
            json(&CtlReply::from(r))
        }
        subject::OP_ACTOR_STOP => {
            drop(_enter);
            let r = match parse::<StopActor>(&msg.payload) {
                Ok(cmd) => stop_actor(&inner, cmd).await,
                Err(e) => Err(e),
            };
            json(&CtlReply::from(r))
        }
        subject::OP_PROVIDER_START => {
            drop(_enter);
            let r = match parse::<lattice::ctl::StartProvider>(&msg.payload) {
                Ok(cmd) => super::providers::start(&inner, cmd).await,
                Err(e) => Err(e),
            };
            json(&CtlReply::from(r))
        }
        subject::OP_PROVIDER_STOP => {
            drop(_enter);
            let r = match parse::<lattice::ctl::StopProvider>(&msg.payload) {
                Ok(cmd) => super::providers::stop(&inner, cmd).await,
                Err(e) => Err(e),
            };
            json(&CtlReply::from(r))
        }
        subject::OP_HOST_STOP => {
            let _ = inner
                .stop_requested
                .send(Some("stop requested through the control interface".into()));
            json(&CtlReply::Ok(()))
        }
        other => json(&CtlReply::<()>::Error(format!(
            "unknown control operation {other:?}"
        ))),
    };
    if let Err(e) = inner.nats.publish(reply, body.into()).await {
        tracing::warn!(error = %e, "could not send control reply");
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "malformed {} request: {e}",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("control")
        )
    })
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v)
        .unwrap_or_else(|e| format!(r#"{{"error":"could not encode reply: {e}"}}"#).into_bytes())
}

fn bid(inner: &HostInner, req: &AuctionRequest) -> Bid {
    let info = inner.info();
    Bid {
        host_id: inner.id.clone(),
        host_name: inner.name.clone(),
        load: info.replicas,
        running: inner
            .actors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&req.actor_id)
            .map_or(0, |r| r.actor.replicas()),
        local_contracts: {
            let providers = inner.providers_read();
            let links = inner.links.for_actor(&req.actor_id);
            req.contracts
                .iter()
                .filter(|c| {
                    links
                        .iter()
                        .any(|l| &l.contract == *c && providers.contains_key(&l.provider_id))
                })
                .count() as u32
        },
    }
}

async fn start_actor(inner: &Arc<HostInner>, cmd: StartActor) -> Result<ActorStarted, String> {
    let began = Instant::now();
    let result = start_actor_inner(inner, &cmd, began).await;
    if let Err(e) = &result {
        tracing::warn!(actor = %cmd.actor_id, error = %e, "actor failed to start");
        inner
            .publish(EventData::ActorFailed {
                host_id: inner.id.clone(),
                actor_id: cmd.actor_id.clone(),
                error: e.clone(),
            })
            .await;
    }
    result
}

async fn start_actor_inner(
    inner: &Arc<HostInner>,
    cmd: &StartActor,
    began: Instant,
) -> Result<ActorStarted, String> {
    if cmd.replicas == 0 {
        return Err(format!(
            "replicas for actor {} must be at least 1",
            cmd.actor_id
        ));
    }
    let _guard = inner.lifecycle.lock().await;
    let existing = inner
        .actors
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cmd.actor_id)
        .cloned();
    if let Some(running) = existing {
        if running.actor.digest() != &cmd.digest {
            return Err(format!(
                "actor {} already runs module {} on host {}; stop it before starting {}",
                cmd.actor_id,
                running.actor.digest().short(),
                inner.name,
                cmd.digest.short()
            ));
        }
        let replicas = running.actor.add_replicas(cmd.replicas);
        publish_started(inner, cmd, replicas).await;
        return Ok(started(inner, cmd, replicas, false, began));
    }

    let what = format!("actor {} ({})", cmd.actor_id, cmd.reference);
    let artifacts = inner.artifacts().await.map_err(|e| e.to_string())?;
    let bytes = artifacts
        .get(&cmd.digest)
        .await
        .map_err(|e| format!("could not fetch {what}: {e}"))?;
    crate::runtime::validate::check_magic(&what, &bytes).map_err(|e| e.to_string())?;
    // The issuer policy: checked here, once per start, never per call.
    let claims = inner
        .trust
        .claims_for(&what, &cmd.digest, &bytes)
        .map_err(|e| e.to_string())?;
    let (module, from) = inner
        .runtime
        .load(&what, &cmd.digest, Arc::new(bytes))
        .await
        .map_err(|e| e.to_string())?;
    let router = Arc::new(Router::new(inner));
    let actor = Actor::start(
        &inner.runtime,
        cmd.actor_id.clone(),
        cmd.digest.clone(),
        &module,
        cmd.replicas,
        cmd.config.clone(),
        router,
    )
    .await
    .map_err(|e| e.to_string())?;
    let (stop, stop_rx) = watch::channel(false);
    let running = Arc::new(RunningActor {
        actor: actor.clone(),
        claims,
        reference: cmd.reference.clone(),
        stop,
        serve: std::sync::Mutex::new(None),
    });
    let sub = inner
        .nats
        .queue_subscribe(
            subject::actor_rpc(&inner.lattice, &cmd.actor_id),
            subject::rpc_queue_group(&cmd.actor_id),
        )
        .await
        .map_err(|e| format!("could not subscribe actor {}: {e}", cmd.actor_id))?;
    // Make sure the server has the subscription before we say "started", so the
    // first call cannot race it to a no-responders error.
    let _ = tokio::time::timeout(Duration::from_secs(5), inner.nats.flush()).await;
    let task = tokio::spawn(serve::serve(Arc::downgrade(inner), actor, sub, stop_rx));
    *running.serve.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    inner
        .actors
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cmd.actor_id.clone(), running);
    publish_started(inner, cmd, cmd.replicas).await;
    tracing::info!(actor = %cmd.actor_id, digest = %cmd.digest.short(), ?from, replicas = cmd.replicas, "actor started");
    Ok(started(
        inner,
        cmd,
        cmd.replicas,
        from == LoadedFrom::Compiled,
        began,
    ))
}

async fn publish_started(inner: &HostInner, cmd: &StartActor, replicas: u32) {
    inner
        .publish(EventData::ActorStarted {
            host_id: inner.id.clone(),
            actor_id: cmd.actor_id.clone(),
            digest: cmd.digest.clone(),
            replicas,
        })
        .await;
}

fn started(
    inner: &HostInner,
    cmd: &StartActor,
    replicas: u32,
    compiled: bool,
    began: Instant,
) -> ActorStarted {
    ActorStarted {
        host_id: inner.id.clone(),
        host_name: inner.name.clone(),
        actor_id: cmd.actor_id.clone(),
        replicas,
        compiled,
        elapsed_ms: began.elapsed().as_millis() as u64,
    }
}

async fn stop_actor(inner: &Arc<HostInner>, cmd: StopActor) -> Result<ActorStopped, String> {
    let _guard = inner.lifecycle.lock().await;
    let running = inner
        .actors
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&cmd.actor_id)
        .ok_or_else(|| {
            format!(
                "actor {} is not running on host {} ({})",
                cmd.actor_id, inner.name, inner.id
            )
        })?;
    let replicas = inner
        .stop_running(&cmd.actor_id, running, "stop requested")
        .await;
    Ok(ActorStopped {
        host_id: inner.id.clone(),
        actor_id: cmd.actor_id,
        replicas,
    })
}
