//! Serving an actor's queue subscription on `lattice.{lid}.rpc.actor.{actor}`;
//! each message goes through [`serve_invocation`], as providers' do.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use lattice::rpc::serve::serve_invocation;
use tokio::{sync::watch, task::JoinSet};

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
    // Named once per actor, not per call: errors and spans say which replica set.
    let what: Arc<str> = match host.upgrade() {
        Some(h) => format!("actor {} on host {}", actor.id(), h.name).into(),
        None => return,
    };
    let stopped = loop {
        tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => spawn_call(&mut calls, &host, &actor, &what, msg),
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
            spawn_call(&mut calls, &host, &actor, &what, msg);
        }
    }
    while calls.join_next().await.is_some() {}
}

fn spawn_call(
    calls: &mut JoinSet<()>,
    host: &Weak<HostInner>,
    actor: &Arc<Actor>,
    what: &Arc<str>,
    msg: async_nats::Message,
) {
    let Some(host) = host.upgrade() else { return };
    let (actor, what) = (actor.clone(), what.clone());
    calls.spawn(async move { handle(host, actor, what, msg).await });
}

async fn handle(host: Arc<HostInner>, actor: Arc<Actor>, what: Arc<str>, msg: async_nats::Message) {
    let deadline = host.call_timeout();
    serve_invocation(
        &host.nats,
        msg,
        &what,
        deadline,
        |inv, trace, until| async move {
            actor
                .invoke(&inv.operation, inv.payload, trace, until)
                .await
        },
    )
    .await;
}
