//! Serving a request with an actor on another host, bodies streamed over NATS
//! ([`lattice_provider::http_stream`]): the request goes out as soon as its
//! head and first part are here, the rest of its body follows on the serving
//! host's credit, and a response whose body is still being written comes
//! back as its head, then chunks on this side's credit. A small request and a
//! whole response cost one message each way, as before streaming.

use std::{collections::VecDeque, future::Future, pin::Pin, time::Duration};

use async_nats::{HeaderMap, Subject};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::{BodyExt, Either, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::{Body, Incoming},
    header,
};
use lattice::{
    contracts::httpserver::HANDLE_REQUEST,
    rpc::{
        Invocation, InvocationResponse,
        remote::{Inbox, SILENCE_LIMIT, ask_for_progress},
    },
    trace::TraceContext,
};
use lattice_provider::{
    BoxError, CallError, RemoteActor, call_error,
    http_stream::{self as stream, End, FedBody, Feed, Received},
};
use tokio::{sync::oneshot, time::Instant};
use tracing::debug;

use crate::{
    codec,
    server::{ResBody, Route, encode_request, final_status, text, too_large, unencodable},
};

/// Extra time past the call's timeout, for the serving host's own deadline
/// error to arrive first.
const SLACK: Duration = Duration::from_millis(500);

/// The error of an exchange whose NATS connection failed under it.
fn lost_connection() -> CallError {
    CallError::Failed("the NATS connection failed mid-request".into())
}

/// How the exchange began, for the request handler to answer.
enum Head {
    /// The actor answered whole: the msgpack `HttpResponse`.
    Whole(Vec<u8>),
    /// The head of a response whose body streams on.
    Streamed(Box<codec::DecodedResponse>, FedBody),
    /// The call failed before a response.
    Failed(CallError),
    /// The request body failed here (past `max_body_bytes`, or unreadable).
    Unreadable(BoxError),
}

impl Route {
    /// Serves `req` with the actor at `remote`.
    pub(crate) async fn serve_remote(
        &self,
        remote: RemoteActor,
        req: Request<Incoming>,
    ) -> Response<ResBody> {
        let (parts, body) = req.into_parts();
        let max = self.max_body.load(std::sync::atomic::Ordering::Relaxed);
        if body.size_hint().lower() > max as u64 {
            return too_large(parts.version, max);
        }
        let mut body = Limited::new(body, max);
        // What came with the head, up to a chunk: a client sends its body
        // right after the head (hyper answers `Expect: 100-continue` now).
        let mut first = BytesMut::new();
        let mut whole = body.is_end_stream();
        let mut next = if whole { None } else { body.frame().await };
        loop {
            match next {
                None => {
                    whole = true;
                    break;
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        first.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return self.unreadable(&parts, max, e),
            }
            if first.len() >= stream::CHUNK_MAX {
                break;
            }
            match body.frame().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        let payload = match encode_request(&parts, &first) {
            Ok(payload) => payload,
            Err(e) => return unencodable(e),
        };
        drop(first);
        let invocation = Invocation {
            origin: remote.origin.clone(),
            target: self.actor.clone(),
            operation: HANDLE_REQUEST.to_string(),
            payload,
            link_name: None,
            // A streamed exchange says these in headers, beside its own.
            traceparent: None,
            progress_ms: None,
        };
        let payload = match invocation.encode() {
            Ok(payload) => payload,
            Err(e) => return self.failed(CallError::Failed(e.to_string())),
        };

        let inbox = match remote.caller.inbox(stream::INBOX_CAPACITY).await {
            Ok(inbox) => inbox,
            Err(e) => return self.failed(CallError::Failed(e.to_string())),
        };
        let mut headers = HeaderMap::new();
        TraceContext::new_root().inject(&mut headers);
        ask_for_progress(&mut headers);
        headers.insert(stream::STREAM_HEADER, stream::WINDOW.to_string().as_str());
        if !whole {
            headers.insert(stream::BODY_HEADER, stream::MORE);
            headers.insert(stream::BODY_LIMIT_HEADER, max.to_string().as_str());
        }
        let (head_tx, head_rx) = oneshot::channel();
        let timeout = remote.timeout + SLACK;
        let exchange = Exchange {
            nats: remote.caller.nats().clone(),
            actor: self.actor.clone(),
            subject: remote.subject,
            inbox,
            headers,
            payload: payload.into(),
            // A request the client may repeat (GET, HEAD, PUT, DELETE, ...)
            // is sent once more when the host serving it died mid-call: the
            // queue group gives it to another replica. Others get 502.
            retry: whole && parts.method.is_idempotent(),
            more: !whole,
            timeout,
            body: (!whole).then_some(body),
            head: Some(head_tx),
            deadline: Instant::now() + timeout,
        };
        // Driven here until the head is out: an exchange that ends with it
        // (a whole reply, a failure) needs no task; one whose body streams on
        // continues in a task of its own.
        let mut exchange: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(exchange.run());
        let mut head_rx = head_rx;
        let head = tokio::select! {
            biased;
            () = &mut exchange => head_rx.await,
            head = &mut head_rx => {
                tokio::spawn(exchange);
                head
            }
        };
        match head {
            Ok(Head::Whole(reply)) => self.whole_response(reply, &parts.method),
            Ok(Head::Streamed(head, body)) => self.streamed_response(*head, body),
            Ok(Head::Failed(e)) => self.failed(e),
            Ok(Head::Unreadable(e)) => self.unreadable(&parts, max, e),
            Err(_) => self.failed(CallError::Failed(
                "the exchange with the actor's host ended without a response".into(),
            )),
        }
    }

    /// The 413 or 400 for a request body that failed while read here.
    fn unreadable(
        &self,
        parts: &hyper::http::request::Parts,
        max: usize,
        e: BoxError,
    ) -> Response<ResBody> {
        if e.is::<http_body_util::LengthLimitError>() {
            return too_large(parts.version, max);
        }
        debug!(actor = %self.actor, "reading request body: {e}");
        text(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {e}\n"),
        )
    }

    /// The response whose body streams from the actor's host.
    fn streamed_response(&self, head: codec::DecodedResponse, body: FedBody) -> Response<ResBody> {
        for what in &head.dropped {
            tracing::warn!(actor = %self.actor, "dropped a response header: {what}");
        }
        let Some(status) = final_status(head.status) else {
            return self.invalid_status(head.status);
        };
        let mut headers = head.headers;
        // hyper frames a streamed body itself.
        if headers.remove(header::TRANSFER_ENCODING).is_some() {
            debug!(actor = %self.actor, "dropped transfer-encoding from the actor's response");
        }
        let mut resp = Response::new(Either::Right(body.boxed_unsync()));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

/// One exchange, from the caller's side: a task of its own, since the
/// response body streams on after the handler has returned the head.
struct Exchange {
    nats: async_nats::Client,
    actor: String,
    subject: String,
    inbox: Inbox,
    headers: HeaderMap,
    payload: Bytes,
    retry: bool,
    /// Whether the request body continues after the invocation.
    more: bool,
    /// How long an attempt may take.
    timeout: Duration,
    /// The rest of the request body, while there is some to send.
    body: Option<Limited<Incoming>>,
    /// Where the head goes, until it has gone.
    head: Option<oneshot::Sender<Head>>,
    deadline: Instant,
}

impl Exchange {
    async fn run(mut self) {
        if let Err(e) = self.send().await {
            let why = format!("could not send the request to actor {}: {e}", self.actor);
            return self.end(None, None, CallError::Failed(why)).await;
        }
        let mut heard = Instant::now();
        // The serving host's inbox, once it has named it.
        let mut peer: Option<Subject> = None;
        let mut credit: u32 = 0;
        let mut seq: u64 = 0;
        let mut pending: VecDeque<Bytes> = VecDeque::new();
        let mut body_end: Option<End> = None;
        let mut feed: Option<Feed> = None;
        loop {
            // The request body, as far as credit goes.
            if let Some(to) = peer.as_ref() {
                while credit > 0 {
                    let piece = match pending.pop_front() {
                        Some(piece) => (piece, None),
                        None => match body_end.take() {
                            Some(end) => (Bytes::new(), Some(end)),
                            None => break,
                        },
                    };
                    if stream::send_chunk(&self.nats, to.clone(), seq, piece.0, piece.1.as_ref())
                        .await
                        .is_err()
                    {
                        return self
                            .end(feed.as_mut(), peer.as_ref(), lost_connection())
                            .await;
                    }
                    seq += 1;
                    credit -= 1;
                }
            }
            let sending = self.body.is_some() && pending.is_empty() && body_end.is_none();
            let waiting = self.head.is_some();
            let until = self.deadline.min(heard + SILENCE_LIMIT);
            let (inbox, body, head) = (&mut self.inbox, &mut self.body, &mut self.head);
            tokio::select! {
                msg = tokio::time::timeout_at(until, inbox.recv()) => {
                    let msg = match msg {
                        Ok(Some(msg)) => msg,
                        Ok(None) => {
                            let why = CallError::Failed("the reply subscription closed".into());
                            return self.end(feed.as_mut(), peer.as_ref(), why).await;
                        }
                        Err(_) if until >= self.deadline => {
                            let why = lattice::Error::Timeout { what: self.what(), timeout: self.timeout };
                            let why = call_error(&self.actor, why);
                            return self.end(feed.as_mut(), peer.as_ref(), why).await;
                        }
                        Err(_) => match self.inbox.catch_up().await {
                            Some(msg) => msg,
                            None if self.retry && self.head.is_some() => {
                                debug!(actor = %self.actor, "host went silent; retrying once");
                                self.retry = false;
                                self.deadline = Instant::now() + self.timeout;
                                if self.send().await.is_err() {
                                    return self.end(feed.as_mut(), peer.as_ref(), lost_connection()).await;
                                }
                                heard = Instant::now();
                                continue;
                            }
                            None => {
                                let why = lattice::Error::ServerLost { what: self.what(), silence: SILENCE_LIMIT };
                                let why = call_error(&self.actor, why);
                                return self.end(feed.as_mut(), peer.as_ref(), why).await;
                            }
                        },
                    };
                    heard = Instant::now();
                    if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                        let why = lattice::Error::NoResponders { what: self.what(), subject: self.subject.clone() };
                        let why = call_error(&self.actor, why);
                        return self.end(feed.as_mut(), peer.as_ref(), why).await;
                    }
                    match stream::classify(msg) {
                        Ok(Received::Progress | Received::Cancel) => {}
                        Ok(Received::Credit { credit: more, inbox }) => {
                            credit = credit.saturating_add(more);
                            if let Some(inbox) = inbox {
                                peer = Some(inbox);
                            }
                        }
                        Ok(Received::Chunk { seq, data, end }) => {
                            let Some(fed) = feed.as_mut() else {
                                let why = "the actor's host sent a chunk before the response";
                                return self.end(None, peer.as_ref(), CallError::Failed(why.into())).await;
                            };
                            if let Err(why) = fed.accept(seq, data, end) {
                                debug!(actor = %self.actor, "response body ended badly: {why}");
                                return self.cancel(peer).await;
                            }
                            if fed.ended() {
                                return;
                            }
                        }
                        Ok(Received::Other(reply)) => {
                            if feed.is_some() {
                                let why = CallError::Failed("the actor's host answered twice".into());
                                return self.end(feed.as_mut(), peer.as_ref(), why).await;
                            }
                            let streamed = reply.headers.as_ref().and_then(|h| {
                                h.get(stream::BODY_HEADER)
                                    .filter(|v| v.as_str() == stream::MORE)
                                    .and(h.get(stream::INBOX_HEADER))
                                    .map(|v| Subject::from(v.as_str()))
                            });
                            let payload = match InvocationResponse::decode(&reply.payload)
                                .and_then(InvocationResponse::into_result)
                            {
                                Ok(payload) => payload,
                                Err(e) => {
                                    let why = call_error(&self.actor, e);
                                    return self.end(None, peer.as_ref(), why).await;
                                }
                            };
                            if self.more && peer.is_none() {
                                // A host that streams request bodies asks for
                                // the rest before it answers; one that does not
                                // (an older version) served the first part
                                // alone, as if it were the whole body.
                                let why = format!(
                                    "the host serving actor {} took only the part of the request body sent with the call: it does not stream request bodies (an older version?)",
                                    self.actor
                                );
                                return self.end(None, None, CallError::Failed(why)).await;
                            }
                            let Some(inbox) = streamed else {
                                // Whole: the request body, if any is left,
                                // is not wanted any more.
                                if let Some(head) = self.head.take() {
                                    let _ = head.send(Head::Whole(payload));
                                }
                                return;
                            };
                            let mut head = match codec::decode_response(payload) {
                                Ok(head) => head,
                                Err(e) => {
                                    let why = CallError::Failed(format!(
                                        "actor returned a malformed response: {}",
                                        codec::truncate(&e.to_string(), 200)
                                    ));
                                    return self.end(None, peer.as_ref(), why).await;
                                }
                            };
                            let (fed, body) = Feed::new(std::mem::take(&mut head.body), false, None);
                            feed = Some(fed);
                            peer = Some(inbox);
                            let sent = self.head.take().map(|tx| tx.send(Head::Streamed(Box::new(head), body)));
                            if !matches!(sent, Some(Ok(()))) {
                                return self.cancel(peer).await;
                            }
                        }
                        Err(why) => {
                            debug!(actor = %self.actor, "ignored a malformed stream message: {why}");
                        }
                    }
                }
                frame = async { body.as_mut()?.frame().await }, if sending => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            pending.extend(stream::pieces(data));
                        }
                    }
                    Some(Err(e)) => {
                        self.body = None;
                        if let Some(head) = self.head.take() {
                            // Answered here (413 or 400); the host stops.
                            let _ = head.send(Head::Unreadable(e));
                            return self.cancel(peer).await;
                        }
                        body_end = Some(if e.is::<http_body_util::LengthLimitError>() {
                            End::TooLarge
                        } else {
                            End::Failed(e.to_string())
                        });
                    }
                    None => {
                        self.body = None;
                        body_end = Some(End::Whole);
                    }
                },
                () = async { feed.as_ref().expect("checked").taken().await }, if feed.is_some() => {
                    let grant = feed.as_mut().and_then(Feed::grant);
                    if let (Some(more), Some(to)) = (grant, peer.as_ref()) {
                        let _ = stream::send_credit(&self.nats, to.clone(), more, None).await;
                    }
                }
                () = async { feed.as_ref().expect("checked").reader_gone().await }, if feed.is_some() => {
                    return self.cancel(peer).await;
                }
                () = async { head.as_mut().expect("checked").closed().await }, if waiting => {
                    return self.cancel(peer).await;
                }
            }
        }
    }

    /// Publishes the invocation.
    async fn send(&self) -> Result<(), async_nats::PublishError> {
        self.nats
            .publish_with_reply_and_headers(
                self.subject.clone(),
                self.inbox.subject().to_string(),
                self.headers.clone(),
                self.payload.clone(),
            )
            .await
    }

    /// The callee, as errors name it (`actor "hello"`).
    fn what(&self) -> String {
        format!("actor {:?}", self.actor)
    }

    /// Ends the exchange with `error`: the handler's answer before the head,
    /// the body's error frame (in `feed`) after it; and tells the serving
    /// host (at `peer`, when it named it) to stop.
    async fn end(mut self, feed: Option<&mut Feed>, peer: Option<&Subject>, error: CallError) {
        if let Some(head) = self.head.take() {
            let _ = head.send(Head::Failed(error));
        } else if let Some(feed) = feed {
            feed.fail(error.to_string().into());
        }
        if let Some(to) = peer {
            let _ = stream::send_cancel(&self.nats, to.clone()).await;
        }
    }

    /// Tells the serving host to stop (nobody reads on), and ends.
    async fn cancel(self, peer: Option<Subject>) {
        if let Some(to) = peer {
            let _ = stream::send_cancel(&self.nats, to).await;
        }
    }
}
