//! Serving an actor's queue subscription on `lattice.{lid}.rpc.{actor}`.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use lattice::{
    rpc::{Invocation, InvocationResponse},
    trace::TraceContext,
};
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

use super::HostInner;
use crate::runtime::actor::Actor;

/// Reads invocations until told to stop, then drains what the server already
/// sent, and returns only once every call it took has sent its reply: a host
/// that waits for this task before exiting never drops an in-flight reply.
pub(super) async fn serve(
    host: Weak<HostInner>,
    actor: Arc<Actor>,
    mut sub: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
) {
    let mut calls = JoinSet::new();
    let stopped = loop {
        tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => spawn_call(&mut calls, &host, &actor, msg),
                None => break false,
            },
            _ = stop.changed() => break true,
            // Reap finished calls so the set does not grow.
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
        }
    };
    if stopped {
        // Unsubscribe, then finish every message the server delivered before that.
        let _ = sub.drain().await;
        while let Some(msg) = sub.next().await {
            spawn_call(&mut calls, &host, &actor, msg);
        }
    }
    while calls.join_next().await.is_some() {}
}

fn spawn_call(
    calls: &mut JoinSet<()>,
    host: &Weak<HostInner>,
    actor: &Arc<Actor>,
    msg: async_nats::Message,
) {
    let Some(host) = host.upgrade() else { return };
    let actor = actor.clone();
    calls.spawn(async move { handle(host, actor, msg).await });
}

async fn handle(host: Arc<HostInner>, actor: Arc<Actor>, msg: async_nats::Message) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let trace = TraceContext::from_headers(msg.headers.as_ref())
        .map(|t| t.child())
        .unwrap_or_else(TraceContext::new_root);
    let response = match Invocation::decode(&msg.payload) {
        Err(e) => InvocationResponse::err(format!(
            "host {} could not read the invocation for actor {}: {e}",
            host.name,
            actor.id()
        )),
        Ok(inv) => {
            let span = tracing::info_span!(
                "invoke",
                actor = %actor.id(),
                operation = %inv.operation,
                origin = %inv.origin,
                trace_id = %trace.trace_id,
            );
            let deadline = tokio::time::Instant::now() + host.runtime.config().call_timeout;
            let result = actor
                .invoke(&inv.operation, inv.payload, trace, deadline)
                .instrument(span.clone())
                .await;
            match result {
                Ok(payload) => InvocationResponse::ok(payload),
                Err(e) => {
                    span.in_scope(|| tracing::debug!(error = %e, "call failed"));
                    InvocationResponse::err(e.to_string())
                }
            }
        }
    };
    let body = match response.encode() {
        Ok(b) => b,
        Err(e) => InvocationResponse::err(e.to_string())
            .encode()
            .unwrap_or_default(),
    };
    let max = host.nats.max_payload();
    let body = if max > 0 && body.len() > max {
        InvocationResponse::err(format!(
            "actor {} returned {} bytes, more than the NATS max payload of {max} bytes",
            actor.id(),
            body.len()
        ))
        .encode()
        .unwrap_or_default()
    } else {
        body
    };
    if let Err(e) = host.nats.publish(reply, body.into()).await {
        tracing::warn!(actor = %actor.id(), error = %e, "could not send reply");
    }
}
