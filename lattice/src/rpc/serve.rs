//! Answering invocations: what every actor replica and every provider instance
//! does with a message from its rpc subscription.
//!
//! [`serve_invocation`] is the single serving path, so actors and providers share
//! payload limits, deadlines, tracing and error mapping: the reply is always an
//! [`InvocationResponse`], an undecodable request or an oversized reply become
//! error replies that say so, and a handler that outlives the deadline is
//! answered with a deadline error rather than left for the caller's timeout.

use std::{future::Future, pin::Pin, time::Duration};

use tracing::Instrument;

use super::{
    Invocation, InvocationResponse,
    remote::{PROGRESS, PROGRESS_HEADER, STATUS_HEADER},
};
use crate::trace::{CallSpan, SpanStart, TraceContext};

/// Serves one request message: decodes the [`Invocation`], runs `handle` within
/// `deadline` inside a span carrying the caller's trace id, and publishes the
/// reply. `what` names the callee in every error (`actor "hello" on host h1`).
///
/// Messages without a reply subject are ignored: nobody could read the answer.
pub async fn serve_invocation<F, Fut, E>(
    nats: &async_nats::Client,
    msg: async_nats::Message,
    what: &str,
    deadline: Duration,
    handle: F,
) where
    F: FnOnce(Invocation, TraceContext, tokio::time::Instant) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, E>>,
    E: std::fmt::Display,
{
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let (response, exported) = match Invocation::decode(&msg.payload) {
        Err(e) => (
            InvocationResponse::err(format!("{what} could not read the invocation: {e}")),
            None,
        ),
        Ok(inv) => {
            let incoming = incoming_trace(&inv, &msg);
            let every = asked_interval(&inv, &msg);
            // For the log only, and at DEBUG: at INFO (a host's default) the
            // log would format its fields on every call (measured: 5-10 % of
            // calls/s). The exported span is the `CallSpan`.
            let span = tracing::debug_span!(
                "serve",
                target = %what,
                operation = %inv.operation,
                origin = %inv.origin,
                trace_id = tracing::field::Empty,
            );
            let exported = CallSpan::start(SpanStart::serve(
                incoming.as_ref(),
                &[
                    ("target", what),
                    ("operation", &inv.operation),
                    ("origin", &inv.origin),
                ],
            ));
            let trace = exported.context();
            span.record("trace_id", tracing::field::display(trace.trace_id));
            let operation = inv.operation.clone();
            let until = tokio::time::Instant::now() + deadline;
            let slack = deadline + DEADLINE_SLACK;
            let work =
                tokio::time::timeout(slack, handle(inv, trace, until)).instrument(span.clone());
            let result = with_progress(nats, every.map(|every| (every, &reply)), work).await;
            let response = match result {
                Ok(Ok(payload)) => InvocationResponse::ok(payload),
                Ok(Err(e)) => {
                    span.in_scope(|| tracing::debug!(error = %e, "call failed"));
                    InvocationResponse::err(e.to_string())
                }
                Err(_) => InvocationResponse::err(deadline_exceeded(what, deadline, &operation)),
            };
            (response, Some(exported))
        }
    };
    // The span ends once the reply is out, with the error the caller hears
    // (the one that replaced the response, else the response's own), or
    // with the failure to send it.
    let own = response.error.clone();
    let (body, replaced) = encode_checked(nats.max_payload(), response, what);
    let mut failure = replaced.or(own);
    if let Err(e) = nats.publish(reply, body.into()).await {
        tracing::warn!(target = %what, error = %e, "could not send reply");
        failure = Some(format!("{what} could not send its reply: {e}"));
    }
    if let Some(exported) = exported {
        exported.end(failure.as_deref());
    }
}

/// How long past its deadline a call is given before the serving side
/// answers [`deadline_exceeded`]: handlers that enforce the deadline
/// themselves (actors, through epoch interruption) report their own, more
/// precise error first.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// The error of a call past its deadline, as every serving side words it
/// (callers recognise it by ` exceeded the call deadline of `).
pub fn deadline_exceeded(what: &str, deadline: Duration, operation: &str) -> String {
    format!(
        "{what} exceeded the call deadline of {} ms in {operation}",
        deadline.as_millis()
    )
}

/// The caller's trace context: the invocation's own field, else the
/// `traceparent` header (callers that set only that).
fn incoming_trace(inv: &Invocation, msg: &async_nats::Message) -> Option<TraceContext> {
    inv.traceparent
        .or_else(|| TraceContext::from_headers(msg.headers.as_ref()))
}

/// The progress interval the caller asked for: the invocation's own field,
/// else the [`PROGRESS_HEADER`].
fn asked_interval(inv: &Invocation, msg: &async_nats::Message) -> Option<Duration> {
    match inv.progress_ms {
        Some(ms) => Some(clamp_interval(ms)),
        None => progress_interval(msg),
    }
}

/// The progress interval a caller asked for in [`PROGRESS_HEADER`].
fn progress_interval(msg: &async_nats::Message) -> Option<Duration> {
    let ms: u64 = msg
        .headers
        .as_ref()?
        .get(PROGRESS_HEADER)?
        .as_str()
        .parse()
        .ok()?;
    Some(clamp_interval(ms))
}

/// A progress interval asked for in milliseconds, within 50 ms to 60 s (a
/// caller cannot make a host chatter faster).
fn clamp_interval(ms: u64) -> Duration {
    Duration::from_millis(ms.clamp(50, 60_000))
}

/// Runs `work`, the answering of request `msg`; when the caller asked for
/// progress ([`PROGRESS_HEADER`], as [`super::remote::Caller::request`]
/// does), publishes a progress message to the reply subject at the asked
/// interval until `work` is done, so the caller can tell a long request from
/// a dead server. Used for the control requests that take time (starts,
/// stops) and streamed exchanges; invocations ask in their body.
pub async fn with_progress_if_asked<T>(
    nats: &async_nats::Client,
    msg: &async_nats::Message,
    work: impl Future<Output = T>,
) -> T {
    let asked = progress_interval(msg).zip(msg.reply.as_ref());
    with_progress(nats, asked, work).await
}

/// Runs `work`, publishing a progress message every `every` to `reply` until
/// it is done when `asked` is `Some((every, reply))`.
async fn with_progress<T>(
    nats: &async_nats::Client,
    asked: Option<(Duration, &async_nats::Subject)>,
    work: impl Future<Output = T>,
) -> T {
    // One path for both cases, so `work` (an actor call: kilobytes of state)
    // is held once in this future, not once per branch; the publish in
    // flight is boxed, as it is seldom there (calls over `every`).
    let mut work = std::pin::pin!(work);
    let mut ticks = asked.map(|(every, reply)| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (tick, reply)
    });
    let mut sending: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    loop {
        tokio::select! {
            // The work first: most calls are done at their first poll, and
            // then the timer is never registered.
            biased;
            done = &mut work => return done,
            () = async { sending.as_mut().expect("checked").await }, if sending.is_some() => {
                sending = None;
            }
            // Not while one is still being sent: a stalled connection gets
            // one progress message at a time, not a pile of them.
            reply = async {
                let (tick, reply) = ticks.as_mut().expect("checked");
                tick.tick().await;
                *reply
            }, if ticks.is_some() && sending.is_none() => {
                sending = Some(Box::pin(progress(nats, reply)));
            }
        }
    }
}

/// Says "still at work" to `reply`, best effort: a lost progress message
/// costs at most one interval of the caller's patience.
async fn progress(nats: &async_nats::Client, reply: &async_nats::Subject) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(STATUS_HEADER, PROGRESS);
    let _ = nats
        .publish_with_headers(reply.clone(), headers, bytes::Bytes::new())
        .await;
}

/// Encodes a response; one that would not fit in `max` bytes becomes an error
/// response naming both sizes, so the caller hears why instead of timing out.
pub fn encode_within(max: usize, response: InvocationResponse, what: &str) -> Vec<u8> {
    encode_checked(max, response, what).0
}

/// [`encode_within`], and the error that replaced the response, if one did.
fn encode_checked(
    max: usize,
    response: InvocationResponse,
    what: &str,
) -> (Vec<u8>, Option<String>) {
    let (body, replaced) = match response.encode() {
        Ok(b) => (b, None),
        Err(e) => {
            let why = e.to_string();
            (
                InvocationResponse::err(why.clone())
                    .encode()
                    .unwrap_or_default(),
                Some(why),
            )
        }
    };
    if max > 0 && body.len() > max {
        let why = format!(
            "{what} returned {} bytes, more than the NATS max payload of {max} bytes",
            body.len()
        );
        let body = InvocationResponse::err(why.clone())
            .encode()
            .unwrap_or_default();
        (body, Some(why))
    } else {
        (body, replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_replies_become_errors() {
        let big = InvocationResponse::ok(vec![0; 100]);
        let body = encode_within(50, big, "actor \"x\"");
        let r = InvocationResponse::decode(&body).unwrap();
        let err = r.error.unwrap();
        assert!(
            err.contains("actor \"x\" returned") && err.contains("max payload of 50"),
            "{err}"
        );
        let small = encode_within(0, InvocationResponse::ok(vec![1; 100]), "x");
        assert_eq!(
            InvocationResponse::decode(&small).unwrap().payload.len(),
            100
        );
    }

    fn message(headers: Option<async_nats::HeaderMap>) -> async_nats::Message {
        async_nats::Message {
            subject: "lattice.l.rpc.actor.hello".into(),
            reply: Some("_INBOX.a.1".into()),
            payload: bytes::Bytes::new(),
            headers,
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn trace_and_progress_come_from_the_body_else_the_headers() {
        let body_trace = TraceContext::new_root();
        let header_trace = TraceContext::new_root();
        let mut headers = async_nats::HeaderMap::new();
        header_trace.inject(&mut headers);
        headers.insert(PROGRESS_HEADER, "1000");
        let with_headers = message(Some(headers));
        let target = crate::rpc::Target::Actor(crate::id::ActorId::new("hello").unwrap());
        let mut inv = Invocation::new("cli", &target, "SayHello", vec![]);

        // Nothing in the body: the headers (callers that set only those).
        assert_eq!(incoming_trace(&inv, &with_headers), Some(header_trace));
        assert_eq!(
            asked_interval(&inv, &with_headers),
            Some(Duration::from_secs(1))
        );
        // Nothing anywhere: a new trace is the serving side's to start, no progress.
        assert_eq!(incoming_trace(&inv, &message(None)), None);
        assert_eq!(asked_interval(&inv, &message(None)), None);

        // The body wins.
        inv = inv.as_sent(&body_trace);
        assert_eq!(incoming_trace(&inv, &with_headers), Some(body_trace));
        assert_eq!(
            asked_interval(&inv, &with_headers),
            Some(Duration::from_millis(250))
        );
        // None in the body (a malformed one decodes as None): the header.
        inv.traceparent = None;
        assert_eq!(
            incoming_trace(&inv, &with_headers),
            TraceContext::from_headers(with_headers.headers.as_ref())
        );
        // Intervals are clamped: a caller cannot make a host chatter.
        assert_eq!(clamp_interval(1), Duration::from_millis(50));
        assert_eq!(clamp_interval(u64::MAX), Duration::from_secs(60));
    }
}
