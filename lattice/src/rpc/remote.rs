//! Sending requests over NATS: the one place remote calls are made, by the
//! CLI, by hosts routing an actor's host call, by providers calling actors,
//! and for control requests to one host.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;
use tokio::{sync::mpsc, time::Instant};

use super::{Invocation, InvocationResponse, Target};
use crate::{Error, id::LatticeId, trace::TraceContext};

/// The largest message the server takes from `nats`: its max payload, or
/// 1 MiB (the server's default) before the server said.
pub fn payload_limit(nats: &Client) -> usize {
    match nats.max_payload() {
        0 => 1 << 20,
        max => max,
    }
}

/// Refuses a request body larger than the server's max payload, naming both
/// sizes, before the connection would drop it.
fn fits(nats: &Client, body: &Bytes, what: &(dyn std::fmt::Display + Sync)) -> Result<(), Error> {
    // `max_payload` reads one field; `server_info()` would clone the whole INFO.
    let max = nats.max_payload();
    if max > 0 && body.len() > max {
        return Err(Error::TooLarge {
            what: format!("request to {what}"),
            size: body.len(),
            max,
        });
    }
    Ok(())
}

/// Header a caller sets on a control request or a streamed exchange to ask
/// for progress messages (an invocation asks in its `progress_ms` field; the
/// header is read there too when the field is absent): its value is the
/// interval in milliseconds. While the request runs, the serving side
/// publishes an empty message with [`STATUS_HEADER`]` = `[`PROGRESS`] to the
/// reply subject at that interval ([`super::serve::serve_invocation`]).
pub const PROGRESS_HEADER: &str = "Lattice-Progress";
/// Header marking a message on a reply subject as other than the reply.
pub const STATUS_HEADER: &str = "Lattice-Status";
/// The [`STATUS_HEADER`] value of a progress message.
pub const PROGRESS: &str = "progress";
/// How often a serving host says a call is still running.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How long a caller waits without a reply or a progress message before it
/// gives the serving side up as lost ([`Error::ServerLost`]): four progress
/// intervals, so one late message is not taken for a death.
pub const SILENCE_LIMIT: Duration = Duration::from_millis(1000);

/// Sends invocations and hears their progress, on one NATS connection.
///
/// A call is published with a reply subject of its own under one wildcard
/// subscription (made on first use), so the progress messages the serving side
/// sends every [`PROGRESS_INTERVAL`] reach the waiting call. When neither a
/// reply nor progress arrives for [`SILENCE_LIMIT`], the host that took the
/// call has died or lost NATS, and the call fails with [`Error::ServerLost`]
/// at once instead of waiting for its whole timeout. Cheap to clone.
#[derive(Clone)]
pub struct Caller {
    inner: Arc<Replies>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// Calls waiting for messages on their reply subjects.
struct Replies {
    nats: Client,
    /// `_INBOX.<unique>.`: a call's reply subject is this plus its token.
    prefix: String,
    /// Messages travel boxed: a channel allocates room for 32 of what it
    /// carries up front, and per call 32 whole `Message`s (some 6 KiB, past
    /// the allocator's fast caches) cost more than the rest of the client's
    /// work on a call (measured with `perf`).
    pending: Mutex<HashMap<u64, mpsc::Sender<Box<async_nats::Message>>>>,
    next: AtomicU64,
    /// Keys of the hash that turns `next` into tokens (random per process).
    tokens: std::hash::RandomState,
    subscribed: tokio::sync::OnceCell<()>,
}

/// Messages one call may have waiting (progress comes a few times a second,
/// the reply once; more than this means the caller stopped reading).
const CALL_QUEUE: usize = 4;

impl Caller {
    /// A caller on `nats`. Subscribes on the first call.
    pub fn new(nats: Client) -> Self {
        let prefix = format!("{}.", nats.new_inbox());
        Caller {
            inner: Arc::new(Replies {
                nats,
                prefix,
                pending: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                tokens: std::hash::RandomState::new(),
                subscribed: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Sends `invocation` to `target` and returns the reply payload. The
    /// trace context and the request for progress go in the invocation
    /// itself ([`Invocation::traceparent`], [`Invocation::progress_ms`]), not
    /// in headers: this is every call's path, and a message with headers
    /// costs NATS noticeably more.
    ///
    /// # Errors
    /// [`Error::NoResponders`] when nobody serves the target (at once, not
    /// after the timeout), [`Error::ServerLost`] when the host that took the
    /// call went silent, [`Error::Remote`] with the callee's error,
    /// [`Error::Timeout`], [`Error::TooLarge`], [`Error::Codec`] for a reply
    /// that is not a response.
    pub async fn invoke(
        &self,
        lattice: &LatticeId,
        target: &Target,
        invocation: Invocation,
        trace: &TraceContext,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let body: Bytes = invocation.as_sent(trace).encode()?.into();
        let msg = self
            .exchange(target.subject(lattice), None, body, timeout, target)
            .await?;
        InvocationResponse::decode(&msg.payload)?.into_result()
    }

    /// Sends a request to `subject` asking for progress messages, and returns
    /// the reply: the one way control requests to one host are sent (and, with
    /// the progress request in the body, invocations), so a serving side that
    /// dies mid-request is noticed within [`SILENCE_LIMIT`] whatever the
    /// request was. `what` names the callee in errors.
    ///
    /// # Errors
    /// [`Error::NoResponders`] at once when nobody subscribes to `subject`,
    /// [`Error::ServerLost`] when the side that took the request went silent,
    /// [`Error::Timeout`], [`Error::TooLarge`] for a body over the server's max
    /// payload, [`Error::Nats`] when publishing fails.
    pub async fn request(
        &self,
        subject: String,
        mut headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
        what: &str,
    ) -> Result<async_nats::Message, Error> {
        ask_for_progress(&mut headers);
        self.exchange(subject, Some(headers), body, timeout, &what)
            .await
    }

    /// [`Caller::request`] once progress has been asked for, in `headers` or
    /// in `body`. `what` is formatted only for an error: on every call's path.
    async fn exchange(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        body: Bytes,
        timeout: Duration,
        what: &(dyn std::fmt::Display + Sync),
    ) -> Result<async_nats::Message, Error> {
        fits(&self.inner.nats, &body, what)?;
        self.inner.subscribe().await?;
        let (mut waiting, reply) = self.inner.expect();
        let nats = &self.inner.nats;
        match headers {
            Some(headers) => {
                nats.publish_with_reply_and_headers(subject.clone(), reply, headers, body)
                    .await
            }
            None => nats.publish_with_reply(subject.clone(), reply, body).await,
        }
        .map_err(|e| Error::nats(format!("request to {what}"), e))?;
        let deadline = Instant::now() + timeout;
        let mut heard = Instant::now();
        loop {
            let until = deadline.min(heard + SILENCE_LIMIT);
            let msg = match tokio::time::timeout_at(until, waiting.rx.recv()).await {
                Ok(Some(msg)) => *msg,
                Ok(None) => {
                    return Err(Error::nats(
                        format!("request to {what}"),
                        std::io::Error::other("the reply subscription closed"),
                    ));
                }
                Err(_) if until >= deadline => {
                    return Err(Error::Timeout {
                        what: what.to_string(),
                        timeout,
                    });
                }
                Err(_) => match catch_up(&self.inner.nats, &mut waiting.rx).await {
                    Some(msg) => msg,
                    None => {
                        return Err(Error::ServerLost {
                            what: what.to_string(),
                            silence: SILENCE_LIMIT,
                        });
                    }
                },
            };
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(Error::NoResponders {
                    what: what.to_string(),
                    subject,
                });
            }
            let progress = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(STATUS_HEADER))
                .is_some_and(|v| v.as_str() == PROGRESS);
            if progress {
                heard = Instant::now();
                continue;
            }
            return Ok(msg);
        }
    }
}

impl Invocation {
    /// The invocation as [`Caller::invoke`] sends it: carrying `trace` and
    /// asking for progress every [`PROGRESS_INTERVAL`].
    pub fn as_sent(mut self, trace: &TraceContext) -> Self {
        self.traceparent = Some(*trace);
        self.progress_ms = Some(PROGRESS_INTERVAL.as_millis() as u64);
        self
    }
}

/// Sets [`PROGRESS_HEADER`] on a request: the serving side then says every
/// [`PROGRESS_INTERVAL`] that it is still at work.
pub fn ask_for_progress(headers: &mut HeaderMap) {
    headers.insert(
        PROGRESS_HEADER,
        PROGRESS_INTERVAL.as_millis().to_string().as_str(),
    );
}

/// After a silence, tells "the serving side went quiet" from "this process
/// did not run": a process starved of CPU (a loaded machine) wakes with
/// progress messages unread in its socket and its timer already expired.
/// A round trip to the server passes everything the server sent before it
/// through the connection; the routing task then gets [`CATCH_UP`] to hand
/// a message on to `rx`. `None`: nothing came, the serving side is lost.
async fn catch_up(
    nats: &Client,
    rx: &mut mpsc::Receiver<Box<async_nats::Message>>,
) -> Option<async_nats::Message> {
    tokio::time::timeout(SILENCE_LIMIT, nats.flush())
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(CATCH_UP, rx.recv())
        .await
        .ok()
        .flatten()
        .map(|msg| *msg)
}

impl Caller {
    /// The connection calls are sent on.
    pub fn nats(&self) -> &Client {
        &self.inner.nats
    }

    /// A subject of its own on this caller's reply subscription, for a
    /// conversation of more than one message (a streamed HTTP body): whatever
    /// is published to [`Inbox::subject`] arrives at [`Inbox::recv`], up to
    /// `capacity` messages waiting (more are dropped, so the peer must be
    /// held below that, e.g. by credit). Its subject is unguessable, like a
    /// call's reply subject, and stops routing when the inbox is dropped.
    ///
    /// # Errors
    /// [`Error::Nats`] when the reply subscription cannot be made.
    pub async fn inbox(&self, capacity: usize) -> Result<Inbox, Error> {
        self.inner.subscribe().await?;
        let (waiting, subject) = self.inner.expect_with(capacity);
        Ok(Inbox { waiting, subject })
    }
}

/// A subject of a [`Caller`]'s and what arrives on it ([`Caller::inbox`]).
pub struct Inbox {
    waiting: Waiting,
    subject: String,
}

impl Inbox {
    /// Where peers publish to reach this inbox.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The next message, in the order the server delivered them; `None` when
    /// the reply subscription has ended.
    pub async fn recv(&mut self) -> Option<async_nats::Message> {
        self.waiting.rx.recv().await.map(|msg| *msg)
    }

    /// After [`SILENCE_LIMIT`] without a message: a message that was only
    /// waiting, unread, in this (perhaps starved) process, as
    /// [`Caller::request`] checks before it reports the serving side lost.
    /// `None`: nothing came, the serving side is lost.
    pub async fn catch_up(&mut self) -> Option<async_nats::Message> {
        let nats = self.waiting.replies.nats.clone();
        catch_up(&nats, &mut self.waiting.rx).await
    }
}

/// How long a call waits, after the round trip of [`Caller::catch_up`], for
/// the routing task to hand on what arrived.
const CATCH_UP: Duration = Duration::from_millis(100);

/// One call's place in [`Replies::pending`]; removed when dropped, so a call
/// given up (timeout, cancelled future) leaves nothing behind.
struct Waiting {
    replies: Arc<Replies>,
    token: u64,
    rx: mpsc::Receiver<Box<async_nats::Message>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.token);
    }
}

impl Replies {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Box<async_nats::Message>>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a call: its receiver and its reply subject.
    ///
    /// A token is a keyed hash of a counter, not the counter: whoever was sent
    /// one reply subject (a provider this host called) cannot work out the
    /// others, so the roles that may publish to `_INBOX.>` (hosts, providers)
    /// can answer only requests they were sent.
    fn expect(self: &Arc<Self>) -> (Waiting, String) {
        self.expect_with(CALL_QUEUE)
    }

    /// [`Replies::expect`] with room for `capacity` waiting messages.
    fn expect_with(self: &Arc<Self>, capacity: usize) -> (Waiting, String) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let token = loop {
            let token = self
                .tokens
                .hash_one(self.next.fetch_add(1, Ordering::Relaxed));
            // Two counters may hash alike; the second takes the next one.
            if let std::collections::hash_map::Entry::Vacant(slot) = self.lock().entry(token) {
                slot.insert(tx);
                break token;
            }
        };
        let waiting = Waiting {
            replies: self.clone(),
            token,
            rx,
        };
        (waiting, format!("{}{token}", self.prefix))
    }

    /// Subscribes to `prefix.*` once and routes each message to its call.
    async fn subscribe(self: &Arc<Self>) -> Result<(), Error> {
        self.subscribed
            .get_or_try_init(|| async {
                let mut sub = self
                    .nats
                    .subscribe(format!("{}*", self.prefix))
                    .await
                    .map_err(|e| Error::nats(format!("subscribe {}*", self.prefix), e))?;
                let weak = Arc::downgrade(self);
                tokio::spawn(async move {
                    while let Some(msg) = sub.next().await {
                        let Some(replies) = weak.upgrade() else { break };
                        let token = msg.subject.rsplit('.').next().and_then(|t| t.parse().ok());
                        let tx = token.and_then(|t: u64| replies.lock().get(&t).cloned());
                        // A full queue means the call is not reading; a
                        // progress message more or less changes nothing.
                        if let Some(tx) = tx {
                            let _ = tx.try_send(Box::new(msg));
                        }
                    }
                });
                Ok::<_, Error>(())
            })
            .await
            .map(|_| ())
    }
}
