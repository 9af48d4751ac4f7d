//! Serving an actor's queue subscription on `lattice.{lid}.rpc.actor.{actor}`;
//! each message goes through [`serve_invocation`], as providers' do.
//!
//! Every message is admitted ([`Actor::admit`]) in the reading loop, before a
//! task is spawned for it: a message past the actor's or the host's limits is
//! answered "busy" at once, from the loop, and dropped. So the tasks (and the
//! payloads they hold) never exceed the limits, and the loop never waits on a
//! slow actor: callers hear "busy" rather than time out, and the connection
//! keeps reading control requests and other actors' calls.
//!
//! An admitted call is first run in the loop itself, up to its first await
//! that is not ready: most calls (a short guest run, the reply queued) finish
//! there, without a task spawn and the wake-up of another worker thread that
//! a spawn costs (measured: call p50 1.39x raw NATS before, 1.20x after, in
//! one `scripts/bench.sh` each). A call that waits (a host call, a free
//! instance, a full outgoing queue) or runs long (a guest yields every
//! `YIELD_TICKS` epoch ticks, 20 ms at most) becomes a task of its own at that
//! point, so the loop is held for at most one such stretch per call.

use std::sync::{Arc, RwLock, Weak};

use futures::StreamExt;
use lattice::rpc::{InvocationResponse, serve::serve_invocation};
use tokio::{sync::watch, task::JoinSet};

use super::HostInner;
use crate::error::InvokeError;
use crate::runtime::actor::{Actor, Admission};

/// The module an actor's calls go to. One subscription serves an actor for
/// as long as it runs here; an update swaps the module behind it, so no call
/// is ever routed to a subscription that is going away.
pub(crate) struct Current(RwLock<Arc<Actor>>);

impl Current {
    pub(crate) fn new(actor: Arc<Actor>) -> Self {
        Current(RwLock::new(actor))
    }

    /// Sends every call admitted from now on to `actor`; returns the module
    /// before. Admission happens under the read lock, so when this returns
    /// every call the old module admitted holds its permit or its place in
    /// the queue, and the old module's [`Actor::stop`] waits for them.
    pub(crate) fn replace(&self, actor: Arc<Actor>) -> Arc<Actor> {
        std::mem::replace(
            &mut *self.0.write().unwrap_or_else(|p| p.into_inner()),
            actor,
        )
    }

    /// The current module.
    pub(crate) fn get(&self) -> Arc<Actor> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admits a call to the current module.
    pub(crate) fn admit(&self) -> (Arc<Actor>, Result<Admission, InvokeError>) {
        let actor = self.0.read().unwrap_or_else(|p| p.into_inner());
        let admitted = actor.admit();
        (actor.clone(), admitted)
    }
}

/// Reads invocations until told to stop, then drains what the server already
/// sent, and returns only once every call it took has sent its reply: a host
/// that waits for this task before exiting never drops an in-flight reply.
pub(super) async fn serve(
    host: Weak<HostInner>,
    current: Arc<Current>,
    mut sub: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
) {
    let mut calls = JoinSet::new();
    // Named once per actor, not per call: errors and spans say which replica set.
    let what: Arc<str> = match host.upgrade() {
        Some(h) => format!("actor {} on host {}", current.get().id(), h.name).into(),
        None => return,
    };
    let stopped = loop {
        tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => admit(&mut calls, &host, &current, &what, msg).await,
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
            admit(&mut calls, &host, &current, &what, msg).await;
        }
    }
    while calls.join_next().await.is_some() {}
}

/// Spawns the call when the actor admits it; else answers the refusal (busy,
/// stopping) at once and drops the message.
async fn admit(
    calls: &mut JoinSet<()>,
    host: &Weak<HostInner>,
    current: &Current,
    what: &Arc<str>,
    msg: async_nats::Message,
) {
    let Some(host) = host.upgrade() else { return };
    match current.admit() {
        (actor, Ok(admission)) => {
            let mut call = Box::pin(handle(host, actor, what.clone(), admission, msg));
            // Futures take whichever waker polls them last, so one first
            // polled here with a no-op waker is safe to hand to a task.
            if futures::FutureExt::now_or_never(&mut call).is_none() {
                calls.spawn(call);
            }
        }
        (_, Err(refused)) => {
            let Some(reply) = msg.reply else { return };
            tracing::debug!(target = %what, error = %refused, "call refused");
            let body = InvocationResponse::err(refused.to_string())
                .encode()
                .unwrap_or_default();
            if let Err(e) = host.nats.publish(reply, body.into()).await {
                tracing::warn!(target = %what, error = %e, "could not send reply");
            }
        }
    }
}

async fn handle(
    host: Arc<HostInner>,
    actor: Arc<Actor>,
    what: Arc<str>,
    admission: Admission,
    msg: async_nats::Message,
) {
    if super::http_stream::wanted(&msg, &actor) {
        // Boxed: a streamed exchange's state is some 16 KB, and every other
        // call would otherwise allocate and copy that much for nothing.
        return Box::pin(super::http_stream::serve(host, actor, what, admission, msg)).await;
    }
    let deadline = host.call_timeout();
    serve_invocation(
        &host.nats,
        msg,
        &what,
        deadline,
        |inv, trace, until| async move {
            actor
                .invoke_admitted(admission, &inv.operation, inv.payload, trace, until)
                .await
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, Fut>(_: impl FnOnce(A, B, C, D, E) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_call_in_flight_holds_a_few_kilobytes() {
        // Every call allocates its future; it was 16 KB when the streamed
        // HTTP exchange and the component call lived inside it.
        let size = future_size(super::handle);
        assert!(size <= 8 << 10, "serve::handle's future is {size} bytes");
    }
}
