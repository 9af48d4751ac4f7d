//! Serving an HTTP request whose bodies stream over NATS
//! ([`lattice_provider::http_stream`]), for an HTTP server on another host or
//! in its own process: the request body is fed to the actor as its chunks
//! arrive, and a component's response goes out as its head and first part,
//! then chunk by chunk while the component writes, each chunk on the caller's
//! credit. A waPC module gets the whole request body first (it takes an
//! `HttpRequest`), and answers whole.
//!
//! Everything a stream holds is bounded: a window of chunks each way, the
//! caller's body limit, and the call's deadline, past which the stream ends
//! with an error whatever the caller does.

use std::{collections::VecDeque, future::Future, sync::Arc};

use async_nats::Subject;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::BodyExt;
use lattice::{
    contracts::httpserver::{HANDLE_REQUEST, HttpRequest, HttpResponse},
    rpc::{
        Invocation, InvocationResponse,
        remote::{Caller, Inbox, SILENCE_LIMIT},
        serve::{DEADLINE_SLACK, deadline_exceeded, encode_within, with_progress_if_asked},
    },
    trace::{CallSpan, SpanStart, TraceContext},
};
use lattice_provider::{
    HttpBody,
    http_stream::{self as stream, End, Feed, Received},
};
use tokio::time::Instant;
use tracing::Instrument;

use super::HostInner;
use crate::{
    error::InvokeError,
    runtime::{
        actor::{Actor, Admission},
        component::{MAX_RESPONSE_BODY, header_map, to_hyper},
    },
};

/// The most request body bytes a stream takes, whatever limit the caller
/// gives.
const MAX_REQUEST_BODY: usize = 64 << 20;

/// Whether `msg` asks for a streamed exchange: its request body continues,
/// or its caller takes a streamed response from an actor that writes one.
pub(super) fn wanted(msg: &async_nats::Message, actor: &Actor) -> bool {
    let Some(headers) = msg.headers.as_ref() else {
        return false;
    };
    headers
        .get(stream::BODY_HEADER)
        .is_some_and(|v| v.as_str() == stream::MORE)
        || (headers.get(stream::STREAM_HEADER).is_some() && actor.streams_http())
}

/// Serves the admitted invocation `msg` as a streamed exchange, sending
/// progress to the caller until the stream ends.
pub(super) async fn serve(
    host: Arc<HostInner>,
    actor: Arc<Actor>,
    what: Arc<str>,
    admission: Admission,
    msg: async_nats::Message,
) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let incoming = TraceContext::from_headers(msg.headers.as_ref());
    // DEBUG like every per-call span (see `serve_invocation`).
    let span = tracing::debug_span!(
        "serve",
        target = %what,
        operation = HANDLE_REQUEST,
        streamed = true,
        trace_id = tracing::field::Empty,
    );
    let exported = CallSpan::start(SpanStart::serve(
        incoming.as_ref(),
        &[
            ("target", &*what),
            ("operation", HANDLE_REQUEST),
            ("streamed", "true"),
        ],
    ));
    let trace = exported.context();
    span.record("trace_id", tracing::field::display(trace.trace_id));
    let timeout = host.call_timeout();
    let until = Instant::now() + timeout;
    let mut exchange = Exchange {
        nats: host.nats.clone(),
        reply,
        what: what.clone(),
        head_sent: false,
        seq: 0,
    };
    let work = tokio::time::timeout_at(
        until + DEADLINE_SLACK,
        exchange.run(
            &host,
            &actor,
            admission,
            (msg.payload.clone(), msg.headers.clone().unwrap_or_default()),
            trace,
            until,
        ),
    );
    let outcome = with_progress_if_asked(&host.nats, &msg, work)
        .instrument(span.clone())
        .await;
    let failure = match outcome {
        Ok(Ok(())) => {
            exported.end(None);
            return;
        }
        Ok(Err(why)) => why,
        Err(_) => deadline_exceeded(&what, timeout, HANDLE_REQUEST),
    };
    exported.end(Some(&failure));
    span.in_scope(|| tracing::debug!(error = %failure, "streamed call failed"));
    exchange.fail(failure).await;
}

/// One streamed exchange, from the serving side.
struct Exchange {
    nats: async_nats::Client,
    /// The caller's reply subject: the response, its chunks, credits for
    /// the request body, progress.
    reply: Subject,
    what: Arc<str>,
    /// Whether the response head is out (failures then end its body).
    head_sent: bool,
    /// The next response chunk's number.
    seq: u64,
}

impl Exchange {
    async fn run(
        &mut self,
        host: &HostInner,
        actor: &Arc<Actor>,
        admission: Admission,
        (payload, headers): (Bytes, async_nats::HeaderMap),
        trace: TraceContext,
        until: Instant,
    ) -> Result<(), String> {
        let what = self.what.clone();
        let inv = Invocation::decode(&payload)
            .map_err(|e| format!("{what} could not read the invocation: {e}"))?;
        if inv.operation != HANDLE_REQUEST {
            return Err(format!(
                "{what} streams bodies of {HANDLE_REQUEST} only, not of {}",
                inv.operation
            ));
        }
        let mut request: HttpRequest = rmp_serde::from_slice(&inv.payload)
            .map_err(|e| format!("{what} could not read the HttpRequest: {e}"))?;
        let more = headers
            .get(stream::BODY_HEADER)
            .is_some_and(|v| v.as_str() == stream::MORE);
        // The caller's credit for response chunks; none: it takes whole
        // responses only.
        let window: Option<u32> = headers
            .get(stream::STREAM_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .map(|w: u32| w.clamp(1, stream::WINDOW * 4));
        let limit = headers
            .get(stream::BODY_LIMIT_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(MAX_REQUEST_BODY)
            .min(MAX_REQUEST_BODY);

        let inbox = host
            .caller
            .inbox(stream::INBOX_CAPACITY)
            .await
            .map_err(|e| format!("{what} could not open a stream inbox: {e}"))?;
        let first = Bytes::from(std::mem::take(&mut request.body));
        let (feed, body) = Feed::new(first, !more, Some(limit));
        let mut peer = Peer {
            nats: self.nats.clone(),
            reply: self.reply.clone(),
            inbox,
            feed,
            owed: 0,
            heard: Instant::now(),
            caller: host.caller.clone(),
            probe: None,
        };
        if more {
            stream::send_credit(
                &self.nats,
                self.reply.clone(),
                stream::WINDOW,
                Some(peer.inbox.subject()),
            )
            .await
            .map_err(|e| format!("{what} could not grant credit: {e}"))?;
        }

        if !actor.streams_http() {
            // A waPC module takes the whole request.
            let body = peer
                .while_running(body.collect())
                .await?
                .map_err(|e| format!("{what} could not read the request body: {e}"))?
                .to_bytes();
            request.body = Vec::from(body);
            let payload = rmp_serde::to_vec_named(&request)
                .map_err(|e| format!("could not encode the request: {e}"))?;
            let reply = actor
                .invoke_admitted(admission, HANDLE_REQUEST, payload, trace, until)
                .await
                .map_err(|e| e.to_string())?;
            return self.reply_whole(reply).await;
        }

        let request = to_hyper(&request, body.boxed_unsync())
            .map_err(|e| format!("{what} got a bad request: {e}"))?;
        let (respond, head) = tokio::sync::oneshot::channel();
        let mut call = Call {
            future: Box::pin(
                Arc::clone(actor).http_call(admission, request, respond, trace, until),
            ),
            result: None,
        };
        // Until the component sets its response, or ends without one.
        let mut head = head;
        let response = loop {
            tokio::select! {
                set = &mut head => match set {
                    Ok(response) => break response,
                    Err(_) => {
                        peer.while_running(call.end()).await?;
                        return Err(call.failure().unwrap_or_else(|| {
                            "the component returned without setting a response".into()
                        }));
                    }
                },
                () = call.run(), if !call.ended() => {}
                event = peer.next() => match event {
                    Event::Credit(_) => {}
                    Event::Cancel => return Err("the caller cancelled the request".into()),
                    Event::Gone(why) => return Err(why.into()),
                },
            }
        };
        self.respond(response, window, &mut peer, &mut call).await
    }

    /// Answers with `response`: whole when its body is all there (or the
    /// caller takes whole responses only), else its head and first part, then
    /// chunks on the caller's credit.
    async fn respond(
        &mut self,
        response: hyper::Response<HttpBody>,
        window: Option<u32>,
        peer: &mut Peer,
        call: &mut Call,
    ) -> Result<(), String> {
        let (parts, mut body) = response.into_parts();
        let headers = header_map(&parts.headers).map_err(|e| format!("{e:?}"))?;
        let mut first = BytesMut::new();
        // Set once the body has ended (and the call with it).
        let mut end: Option<End> = None;
        // The first frame, then what else is ready, up to a chunk: the call
        // runs alongside, since the component writes only as it is read.
        let mut waited = false;
        while first.len() < stream::CHUNK_MAX && end.is_none() {
            let frame = if waited {
                if !call.ended()
                    && let Some(result) = call.future.as_mut().now_or_never()
                {
                    call.result = Some(result);
                }
                match body.frame().now_or_never() {
                    Some(frame) => frame,
                    None => break,
                }
            } else {
                waited = true;
                peer.while_running(next_frame(&mut body, call)).await?
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        first.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => end = Some(End::Failed(e.to_string())),
                None => {
                    peer.while_running(call.end()).await?;
                    end = Some(call.body_end());
                }
            }
        }
        // The msgpack `HttpResponse` of the head and the body so far.
        let encode = |first: &BytesMut, headers| {
            let response = HttpResponse {
                status: parts.status.as_u16(),
                headers,
                body: first.to_vec(),
            };
            rmp_serde::to_vec_named(&response)
                .map_err(|e| format!("could not encode the response: {e}"))
        };
        if let Some(End::Failed(why)) = &end {
            // Nothing has gone out: the caller answers with the error.
            return Err(format!("the response body failed: {why}"));
        }
        let Some(mut credit) = window.filter(|_| end.is_none()) else {
            while end.is_none() {
                match peer.while_running(next_frame(&mut body, call)).await? {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            first.extend_from_slice(&data);
                        }
                        if first.len() > MAX_RESPONSE_BODY {
                            return Err(format!(
                                "the response body exceeds {MAX_RESPONSE_BODY} bytes"
                            ));
                        }
                    }
                    Some(Err(e)) => return Err(format!("the response body failed: {e}")),
                    None => {
                        peer.while_running(call.end()).await?;
                        if let End::Failed(why) = call.body_end() {
                            return Err(format!("the response body failed: {why}"));
                        }
                        end = Some(End::Whole);
                    }
                }
            }
            return self.reply_whole(encode(&first, headers)?).await;
        };

        let payload = encode(&first, headers)?;
        let mut reply_headers = async_nats::HeaderMap::new();
        reply_headers.insert(stream::BODY_HEADER, stream::MORE);
        reply_headers.insert(stream::INBOX_HEADER, peer.inbox.subject());
        let body_bytes = encode_within(
            self.nats.max_payload(),
            InvocationResponse::ok(payload),
            &self.what,
        );
        self.nats
            .publish_with_headers(self.reply.clone(), reply_headers, body_bytes.into())
            .await
            .map_err(|e| format!("could not send the response: {e}"))?;
        self.head_sent = true;

        let mut pending: VecDeque<Bytes> = VecDeque::new();
        // The body's sender is gone; its end waits for the call's.
        let mut drained = false;
        loop {
            while credit > 0 {
                let Some(piece) = pending.pop_front() else {
                    break;
                };
                self.chunk(piece, None).await?;
                credit -= 1;
            }
            if drained && end.is_none() && call.ended() {
                end = Some(call.body_end());
            }
            if credit > 0
                && pending.is_empty()
                && let Some(end) = end.take()
            {
                return self.chunk(Bytes::new(), Some(&end)).await;
            }
            tokio::select! {
                frame = body.frame(), if pending.is_empty() && !drained && end.is_none() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            pending.extend(stream::pieces(data));
                        }
                    }
                    Some(Err(e)) => end = Some(End::Failed(e.to_string())),
                    None => drained = true,
                },
                () = call.run(), if !call.ended() => {}
                event = peer.next() => match event {
                    Event::Credit(more) => credit = credit.saturating_add(more),
                    // Dropping the body (and the call) ends the component.
                    Event::Cancel => return Ok(()),
                    Event::Gone(why) => return Err(why.into()),
                },
            }
        }
    }

    /// Sends the next response chunk.
    async fn chunk(&mut self, data: Bytes, end: Option<&End>) -> Result<(), String> {
        stream::send_chunk(&self.nats, self.reply.clone(), self.seq, data, end)
            .await
            .map_err(|e| format!("could not send a response chunk: {e}"))?;
        self.seq += 1;
        Ok(())
    }

    /// Sends a whole response.
    async fn reply_whole(&mut self, payload: Vec<u8>) -> Result<(), String> {
        let body = encode_within(
            self.nats.max_payload(),
            InvocationResponse::ok(payload),
            &self.what,
        );
        self.head_sent = true;
        self.nats
            .publish(self.reply.clone(), body.into())
            .await
            .map_err(|e| format!("could not send the response: {e}"))
    }

    /// Tells the caller the exchange failed: an error reply before the head,
    /// an error end of the body after it.
    async fn fail(&mut self, why: String) {
        let sent = if self.head_sent {
            let end = End::Failed(why);
            stream::send_chunk(
                &self.nats,
                self.reply.clone(),
                self.seq,
                Bytes::new(),
                Some(&end),
            )
            .await
        } else {
            let body = InvocationResponse::err(why).encode().unwrap_or_default();
            self.nats.publish(self.reply.clone(), body.into()).await
        };
        if let Err(e) = sent {
            tracing::warn!(target = %self.what, error = %e, "could not send the failure");
        }
    }
}

/// The component's call, driven by the exchange itself rather than from a
/// task of its own: a call that can finish at once then finishes within the
/// first poll of the serving loop, as a whole-message call does, instead of
/// every request becoming a task that waits its turn while the actor's
/// limits refuse the calls behind it.
struct Call {
    future: std::pin::Pin<Box<dyn Future<Output = Result<(), InvokeError>> + Send>>,
    result: Option<Result<(), InvokeError>>,
}

impl Call {
    /// Whether `handle` has returned (or failed).
    fn ended(&self) -> bool {
        self.result.is_some()
    }

    /// Runs the call until it ends; never resolves once it has.
    async fn run(&mut self) {
        if self.ended() {
            std::future::pending::<()>().await;
        }
        self.end().await;
    }

    /// Runs the call to its end.
    async fn end(&mut self) {
        if self.result.is_none() {
            self.result = Some(self.future.as_mut().await);
        }
    }

    /// Why the call failed, once it has.
    fn failure(&self) -> Option<String> {
        match &self.result {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// How a body whose sender is gone ended, once the call has: whole only
    /// if the call went well.
    fn body_end(&self) -> End {
        match self.failure() {
            Some(why) => End::Failed(why),
            None => End::Whole,
        }
    }
}

/// The next frame of `body`, running `call` meanwhile (the component writes
/// only as its body is read).
async fn next_frame(
    body: &mut HttpBody,
    call: &mut Call,
) -> Option<Result<http_body::Frame<Bytes>, lattice_provider::BoxError>> {
    loop {
        tokio::select! {
            frame = body.frame() => return frame,
            () = call.run(), if !call.ended() => {}
        }
    }
}

/// Why a call is given up whose caller died or lost NATS mid-stream.
const CALLER_GONE: &str = "the caller is gone: nothing subscribes to its reply subjects any more";

/// How long [`caller_gone`] waits for the server to say that nobody listens.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether the caller of a streamed exchange is gone: its process ended or
/// its NATS connection closed, so the server has no subscriber left for its
/// reply subjects. Only chunks and credit flow from a caller, and a caller
/// waiting on a slow HTTP client or a component may rightly send neither for
/// long; so after a silence the host asks the server instead: a message to a
/// subject under the caller's reply prefix, which the caller's subscription
/// takes and drops (no call has that token), with a reply subject on this
/// host's own inbox. "No responders" back means nobody subscribes any more.
/// (A request through async-nats's shared inbox would leave an entry behind
/// for every probe that a live caller does not answer.) A reply subject of
/// fewer than three tokens (no `PREFIX.TOKEN` under an inbox) is never taken
/// for gone: such a caller is held to the deadline.
async fn caller_gone(caller: Caller, reply: Subject) -> bool {
    let Some((prefix, _token)) = reply.rsplit_once('.') else {
        return false;
    };
    if !prefix.contains('.') {
        return false;
    }
    let Ok(mut answers) = caller.inbox(1).await else {
        return false;
    };
    let sent = caller
        .nats()
        .publish_with_reply(
            format!("{prefix}.probe"),
            answers.subject().to_string(),
            Bytes::new(),
        )
        .await;
    sent.is_ok()
        && matches!(
            tokio::time::timeout(PROBE_WAIT, answers.recv()).await,
            Ok(Some(msg)) if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS)
        )
}

/// A [`caller_gone`] in flight, and when it was sent.
type Probe = (
    Instant,
    std::pin::Pin<Box<dyn Future<Output = bool> + Send>>,
);

/// The caller, as the serving side hears it: chunks of the request body
/// (fed on), credits for the response, a cancel.
struct Peer {
    nats: async_nats::Client,
    reply: Subject,
    inbox: Inbox,
    feed: Feed,
    /// Credit granted but not yet sent.
    owed: u32,
    /// When the caller last sent anything. After [`SILENCE_LIMIT`] without
    /// a word it is asked whether it is still there ([`caller_gone`]).
    heard: Instant,
    /// Where probes are sent from.
    caller: Caller,
    /// The probe in flight: kept across [`Peer::next`] calls (which may be
    /// dropped at any await), and run beside the rest, so it holds nothing up.
    probe: Option<Probe>,
}

/// What the caller said that concerns the response.
enum Event {
    Credit(u32),
    Cancel,
    /// The exchange cannot go on: the inbox closed, or the caller is gone.
    Gone(&'static str),
}

impl Peer {
    /// Feeds the request body (granting credit as it is read) until the
    /// caller says something about the response.
    async fn next(&mut self) -> Event {
        loop {
            // Sent before anything else, and counted as sent only once queued:
            // this future may be dropped at any await (the caller selects
            // on it), and a publish dropped before it was queued is not lost
            // but sent on the next call.
            if self.owed > 0 {
                let credit = self.owed;
                if stream::send_credit(&self.nats, self.reply.clone(), credit, None)
                    .await
                    .is_err()
                {
                    return Event::Gone("could not send credit to the caller");
                }
                self.owed -= credit;
            }
            let probing = self.probe.is_some();
            let probe = &mut self.probe;
            tokio::select! {
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { return Event::Gone("the stream inbox closed") };
                    self.heard = Instant::now();
                    match stream::classify(msg) {
                        Ok(Received::Credit { credit, .. }) => return Event::Credit(credit),
                        Ok(Received::Cancel) => return Event::Cancel,
                        Ok(Received::Chunk { seq, data, end }) => {
                            if let Err(why) = self.feed.accept(seq, data, end) {
                                tracing::debug!(error = %why, "request body ended badly");
                            }
                        }
                        Ok(_) => {}
                        Err(why) => tracing::debug!(error = %why, "ignored a malformed stream message"),
                    }
                }
                () = self.feed.taken(), if !self.feed.ended() => {
                    if let Some(credit) = self.feed.grant() {
                        self.owed += credit;
                    }
                }
                () = tokio::time::sleep_until(self.heard + SILENCE_LIMIT), if !probing => {
                    let asking = caller_gone(self.caller.clone(), self.reply.clone());
                    *probe = Some((Instant::now(), Box::pin(asking)));
                }
                gone = async { probe.as_mut().expect("probing").1.as_mut().await }, if probing => {
                    let (sent, _) = probe.take().expect("probing");
                    // Anything heard since the probe went out says otherwise.
                    if gone && self.heard < sent {
                        tracing::debug!(caller = %self.reply, "the caller of a streamed call is gone");
                        return Event::Gone(CALLER_GONE);
                    }
                    self.heard = Instant::now();
                }
            }
        }
    }

    /// Runs `work` while feeding the request body; the caller's cancel (or
    /// the inbox closing) gives up on it.
    async fn while_running<F: Future>(&mut self, work: F) -> Result<F::Output, String> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                event = self.next() => match event {
                    Event::Credit(_) => {}
                    Event::Cancel => return Err("the caller cancelled the request".into()),
                    Event::Gone(why) => return Err(why.into()),
                },
            }
        }
    }
}
