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

use std::{collections::VecDeque, future::Future, sync::Arc, time::Duration};

use async_nats::Subject;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::BodyExt;
use lattice::{
    contracts::httpserver::{HANDLE_REQUEST, HttpRequest, HttpResponse},
    rpc::{
        Invocation, InvocationResponse,
        remote::Inbox,
        serve::{encode_within, with_progress_if_asked},
    },
    trace::TraceContext,
};
use lattice_provider::{
    HttpBody,
    http_stream::{self as stream, End, Feed, Received},
};
use tokio::time::Instant;
use tracing::Instrument;

use super::HostInner;
use crate::runtime::{
    actor::{Actor, Admission},
    component::{MAX_RESPONSE_BODY, header_map, to_hyper},
};

/// The most request body bytes a stream takes, whatever limit the caller
/// gives.
const MAX_REQUEST_BODY: usize = 64 << 20;

/// Time past the deadline for the actor's own deadline error to come first.
const SLACK: Duration = Duration::from_millis(250);

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
    let span = tracing::info_span!(
        "serve",
        target = %what,
        operation = HANDLE_REQUEST,
        streamed = true,
        trace_id = tracing::field::Empty,
    );
    let trace = lattice::trace::enter(&span, incoming.as_ref());
    span.record("trace_id", trace.trace_id.as_str());
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
        until + SLACK,
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
        Ok(Ok(())) => return,
        Ok(Err(why)) => why,
        Err(_) => format!(
            "{what} exceeded the call deadline of {} ms in {HANDLE_REQUEST}",
            timeout.as_millis()
        ),
    };
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
        let response = peer
            .while_running(actor.invoke_http_admitted(admission, request, trace, until))
            .await?
            .map_err(|e| e.to_string())?;
        self.respond(response, window, &mut peer).await
    }

    /// Answers with `response`: whole when its body is all there (or the
    /// caller takes whole responses only), else its head and first part, then
    /// chunks on the caller's credit.
    async fn respond(
        &mut self,
        response: hyper::Response<HttpBody>,
        window: Option<u32>,
        peer: &mut Peer,
    ) -> Result<(), String> {
        let (parts, mut body) = response.into_parts();
        let headers = header_map(&parts.headers).map_err(|e| format!("{e:?}"))?;
        let mut first = BytesMut::new();
        let mut ended = false;
        // What the component has written already, up to a chunk.
        while first.len() < stream::CHUNK_MAX {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        first.extend_from_slice(&data);
                    }
                }
                Some(Some(Err(e))) => return Err(format!("the response body failed: {e}")),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        let Some(mut credit) = window.filter(|_| !ended) else {
            if !ended {
                let rest = async {
                    while let Some(frame) = body.frame().await {
                        let frame = frame.map_err(|e| format!("the response body failed: {e}"))?;
                        if let Ok(data) = frame.into_data() {
                            first.extend_from_slice(&data);
                        }
                        if first.len() > MAX_RESPONSE_BODY {
                            return Err(format!(
                                "the response body exceeds {MAX_RESPONSE_BODY} bytes"
                            ));
                        }
                    }
                    Ok(())
                };
                peer.while_running(rest).await??;
            }
            let response = HttpResponse {
                status: parts.status.as_u16(),
                headers,
                body: first.to_vec(),
            };
            let payload = rmp_serde::to_vec_named(&response)
                .map_err(|e| format!("could not encode the response: {e}"))?;
            return self.reply_whole(payload).await;
        };

        let head = HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body: first.to_vec(),
        };
        let payload = rmp_serde::to_vec_named(&head)
            .map_err(|e| format!("could not encode the response: {e}"))?;
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
        let mut end: Option<End> = None;
        loop {
            while credit > 0 {
                let Some(piece) = pending.pop_front() else {
                    break;
                };
                self.chunk(piece, None).await?;
                credit -= 1;
            }
            if credit > 0
                && pending.is_empty()
                && let Some(end) = end.take()
            {
                return self.chunk(Bytes::new(), Some(&end)).await;
            }
            tokio::select! {
                frame = body.frame(), if pending.is_empty() && end.is_none() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            pending.extend(stream::pieces(data));
                        }
                    }
                    Some(Err(e)) => end = Some(End::Failed(e.to_string())),
                    None => end = Some(End::Whole),
                },
                event = peer.next() => match event {
                    Event::Credit(more) => credit = credit.saturating_add(more),
                    // Dropping the body makes the component's next write fail.
                    Event::Cancel => return Ok(()),
                    Event::Closed => return Err("the stream inbox closed".into()),
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

/// The caller, as the serving side hears it: chunks of the request body
/// (fed on), credits for the response, a cancel.
struct Peer {
    nats: async_nats::Client,
    reply: Subject,
    inbox: Inbox,
    feed: Feed,
    /// Credit granted but not yet sent.
    owed: u32,
}

/// What the caller said that concerns the response.
enum Event {
    Credit(u32),
    Cancel,
    Closed,
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
                    return Event::Closed;
                }
                self.owed -= credit;
            }
            tokio::select! {
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { return Event::Closed };
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
                    Event::Closed => return Err("the stream inbox closed".into()),
                },
            }
        }
    }
}
