//! HTTP bodies streamed over NATS, between the HTTP server provider and a host
//! serving the actor on another machine: the vocabulary both sides speak, and
//! the bounded feed each side reads a body from.
//!
//! A request goes out as an ordinary invocation of `HttpServer.HandleRequest`
//! whose `HttpRequest` carries the head and the first part of the body. Its
//! headers say what follows ([`STREAM_HEADER`]: the caller takes a streamed
//! response; [`BODY_HEADER`]` = more`: the request body continues). The rest
//! of either body travels as chunk messages, numbered from 0 ([`SEQ_HEADER`]),
//! the last one marked with how the body ended ([`BODY_HEADER`]: `end`,
//! `error`, `too-large`). Every chunk needs a credit from its receiver
//! ([`CREDIT_HEADER`], at most [`WINDOW`] outstanding), so a slow reader holds
//! its peer back instead of filling memory, and a lost chunk shows as a gap in
//! the numbers and ends the body with an error. docs/protocol.md has the whole
//! exchange.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use lattice::rpc::remote::STATUS_HEADER;
use tokio::sync::{Notify, mpsc};

use crate::BoxError;

/// On an invocation: the caller takes a streamed response; the value is the
/// credit it grants at once (chunks the server may send before hearing more).
pub const STREAM_HEADER: &str = "Lattice-Stream";
/// On an invocation or a response: `more` when the body continues in chunk
/// messages. On the last chunk: how the body ended (`end`, `error` with the
/// reason as payload, `too-large`).
pub const BODY_HEADER: &str = "Lattice-Body";
/// On an invocation whose body continues: the most bytes the server may
/// take (the HTTP server's `max_body_bytes`).
pub const BODY_LIMIT_HEADER: &str = "Lattice-Body-Limit";
/// On a credit message or a streamed response: the subject the peer sends
/// its chunks and credits to.
pub const INBOX_HEADER: &str = "Lattice-Inbox";
/// On a credit message: how many more chunks the peer may send.
pub const CREDIT_HEADER: &str = "Lattice-Credit";
/// On a chunk: its number, from 0.
pub const SEQ_HEADER: &str = "Lattice-Seq";
/// [`STATUS_HEADER`] of a credit message.
pub const CREDIT: &str = "credit";
/// [`STATUS_HEADER`] of a chunk.
pub const CHUNK: &str = "chunk";
/// [`STATUS_HEADER`] of the caller's "stop": its client is gone.
pub const CANCEL: &str = "cancel";
/// [`BODY_HEADER`] of a message whose body continues.
pub const MORE: &str = "more";
/// Chunks a receiver lets its peer have in flight.
pub const WINDOW: u32 = 8;
/// The largest chunk: bigger frames are split, and a reply that has this much
/// ready goes out with the rest streamed.
pub const CHUNK_MAX: usize = 64 * 1024;
/// Space in a stream's inbox: a full window, plus progress and control
/// messages.
pub const INBOX_CAPACITY: usize = WINDOW as usize + 16;

/// How a body ended, as the last chunk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Whole.
    Whole,
    /// The sender's body failed, for this reason.
    Failed(String),
    /// The request body went past the server's limit.
    TooLarge,
}

/// A message of a stream, as its receiver sorts it.
#[derive(Debug)]
pub enum Received {
    /// A "still working" from the serving side.
    Progress,
    /// The peer may send `credit` more chunks, to `inbox` when it says.
    Credit {
        /// More chunks allowed.
        credit: u32,
        /// Where to send them, when the message names it.
        inbox: Option<Subject>,
    },
    /// A chunk of a body.
    Chunk {
        /// Its number.
        seq: u64,
        /// Its bytes (empty on a bare end marker).
        data: Bytes,
        /// Set on the last chunk.
        end: Option<End>,
    },
    /// The caller gave up (its client is gone).
    Cancel,
    /// Any other message: on the caller's side, the reply to the invocation.
    Other(async_nats::Message),
}

/// Sorts `msg` by its headers.
///
/// # Errors
/// A message naming the header that is missing or malformed.
pub fn classify(msg: async_nats::Message) -> Result<Received, String> {
    let Some(headers) = msg.headers.as_ref() else {
        return Ok(Received::Other(msg));
    };
    let status = headers.get(STATUS_HEADER).map(|v| v.as_str().to_string());
    Ok(match status.as_deref() {
        Some(lattice::rpc::remote::PROGRESS) => Received::Progress,
        Some(CREDIT) => Received::Credit {
            credit: number(headers, CREDIT_HEADER)?
                .try_into()
                .map_err(|_| format!("{CREDIT_HEADER} out of range"))?,
            inbox: headers.get(INBOX_HEADER).map(|v| Subject::from(v.as_str())),
        },
        Some(CHUNK) => {
            let seq = number(headers, SEQ_HEADER)?;
            let end = match headers.get(BODY_HEADER).map(|v| v.as_str()) {
                None => None,
                Some("end") => Some(End::Whole),
                Some("too-large") => Some(End::TooLarge),
                Some("error") => Some(End::Failed(
                    String::from_utf8_lossy(&msg.payload).into_owned(),
                )),
                Some(other) => return Err(format!("unknown {BODY_HEADER} {other:?} on a chunk")),
            };
            let data = if matches!(end, Some(End::Failed(_))) {
                Bytes::new()
            } else {
                msg.payload
            };
            Received::Chunk { seq, data, end }
        }
        Some(CANCEL) => Received::Cancel,
        _ => Received::Other(msg),
    })
}

fn number(headers: &HeaderMap, name: &str) -> Result<u64, String> {
    let value = headers
        .get(name)
        .ok_or_else(|| format!("missing {name}"))?
        .as_str();
    value
        .parse()
        .map_err(|_| format!("{name} is not a number: {value:?}"))
}

/// Sends chunk `seq` of a body to `to`, marked with `end` when it is the last.
///
/// # Errors
/// When publishing fails (the connection is closed).
pub async fn send_chunk(
    nats: &async_nats::Client,
    to: Subject,
    seq: u64,
    data: Bytes,
    end: Option<&End>,
) -> Result<(), async_nats::PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(STATUS_HEADER, CHUNK);
    headers.insert(SEQ_HEADER, seq.to_string().as_str());
    let data = match end {
        None => data,
        Some(End::Whole) => {
            headers.insert(BODY_HEADER, "end");
            data
        }
        Some(End::TooLarge) => {
            headers.insert(BODY_HEADER, "too-large");
            Bytes::new()
        }
        Some(End::Failed(why)) => {
            headers.insert(BODY_HEADER, "error");
            Bytes::from(why.chars().take(500).collect::<String>())
        }
    };
    nats.publish_with_headers(to, headers, data).await
}

/// Grants `to` `credit` more chunks; `inbox` tells it where to send them.
///
/// # Errors
/// When publishing fails (the connection is closed).
pub async fn send_credit(
    nats: &async_nats::Client,
    to: Subject,
    credit: u32,
    inbox: Option<&str>,
) -> Result<(), async_nats::PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(STATUS_HEADER, CREDIT);
    headers.insert(CREDIT_HEADER, credit.to_string().as_str());
    if let Some(inbox) = inbox {
        headers.insert(INBOX_HEADER, inbox);
    }
    nats.publish_with_headers(to, headers, Bytes::new()).await
}

/// Tells the serving side to stop: nobody reads its response any more.
///
/// # Errors
/// When publishing fails (the connection is closed).
pub async fn send_cancel(
    nats: &async_nats::Client,
    to: Subject,
) -> Result<(), async_nats::PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(STATUS_HEADER, CANCEL);
    nats.publish_with_headers(to, headers, Bytes::new()).await
}

/// The request body went past the limit the caller gave
/// ([`BODY_LIMIT_HEADER`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

/// Counts the chunks a [`FedBody`]'s reader has taken, and wakes the feeder
/// so it can grant that many credits again; and whether the body was said to
/// be whole.
#[derive(Default)]
struct Taken {
    count: AtomicU64,
    notify: Notify,
    whole: AtomicBool,
}

/// A body read from chunk messages, in order, by whoever serves it (hyper
/// sending it to a client, a component reading its request).
pub struct FedBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    taken: Arc<Taken>,
}

impl http_body::Body for FedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => {
                self.taken.count.fetch_add(1, Ordering::Relaxed);
                self.taken.notify.notify_one();
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            // The feed went away: whole only if the last chunk said so, never
            // because the exchange ended early.
            Poll::Ready(None) if self.taken.whole.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(
                "the body's stream ended before the body did".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The receiving end of a streamed body: takes its chunk messages in order
/// into a [`FedBody`], and says when to grant credit again. Never holds more
/// than [`WINDOW`] chunks (and the inline first part) for a slow reader.
pub struct Feed {
    tx: Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    taken: Arc<Taken>,
    next_seq: u64,
    /// Chunks the peer was allowed (its first [`WINDOW`] included).
    granted: u64,
    /// 1 when the body began with an inline part: the reader counts it as
    /// taken, but it took no credit.
    inline: u64,
    limit: Option<usize>,
    total: usize,
}

impl Feed {
    /// A feed whose body starts with `first` (the part that came inline), and
    /// is already whole when `whole`; `limit` bounds its bytes (a request
    /// body). Credit for a full [`WINDOW`] counts as granted: the first
    /// credit message (or the caller's [`STREAM_HEADER`]) gives it. Its
    /// channel holds the inline part, a window of chunks and an error.
    pub fn new(first: Bytes, whole: bool, limit: Option<usize>) -> (Feed, FedBody) {
        let (tx, rx) = mpsc::channel(WINDOW as usize + 2);
        let taken = Arc::new(Taken::default());
        taken.whole.store(whole, Ordering::Release);
        let total = first.len();
        let inline = u64::from(!first.is_empty());
        if !first.is_empty() {
            let _ = tx.try_send(Ok(first));
        }
        let feed = Feed {
            tx: (!whole).then_some(tx),
            taken: taken.clone(),
            next_seq: 0,
            granted: u64::from(WINDOW),
            inline,
            limit,
            total,
        };
        (feed, FedBody { rx, taken })
    }

    /// Whether the body has ended (whole, failed, or its reader gone).
    pub fn ended(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }

    /// Takes chunk `seq`. Ends the body with an error when a chunk is missing,
    /// when the peer sent past its credit, or past the limit.
    ///
    /// # Errors
    /// What went wrong, when the body had to end badly (the caller stops the
    /// stream).
    pub fn accept(&mut self, seq: u64, data: Bytes, end: Option<End>) -> Result<(), String> {
        let Some(tx) = self.tx.as_ref() else {
            return Ok(()); // ended: what is still in flight no longer matters
        };
        if seq != self.next_seq {
            let why = format!(
                "chunk {} of the body was lost (got chunk {seq})",
                self.next_seq
            );
            self.fail(why.clone().into());
            return Err(why);
        }
        self.next_seq += 1;
        // A bare end marker takes no room: the sender may end a body (say why
        // it failed) without waiting for credit.
        let bare_end = data.is_empty() && end.is_some();
        if seq >= self.granted && !bare_end {
            let why = format!("the peer sent chunk {seq} past its credit");
            self.fail(why.clone().into());
            return Err(why);
        }
        if !data.is_empty() {
            self.total += data.len();
            if let Some(limit) = self.limit.filter(|limit| self.total > *limit) {
                self.fail(Box::new(BodyTooLarge { limit }));
                return Err(format!("the body exceeds the limit of {limit} bytes"));
            }
            match tx.try_send(Ok(data)) {
                Ok(()) => {}
                // The reader is gone: nothing is owed.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.tx = None;
                    return Ok(());
                }
                // Unreachable while credit is kept (checked above); the body
                // then ends with an error (not whole) once drained.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.tx = None;
                    return Err("the body's chunks overflowed their window".into());
                }
            }
        }
        match end {
            None => {}
            Some(End::Whole) => {
                self.taken.whole.store(true, Ordering::Release);
                self.tx = None;
            }
            Some(End::TooLarge) => {
                let limit = self.limit.unwrap_or(self.total);
                self.fail(Box::new(BodyTooLarge { limit }));
            }
            Some(End::Failed(why)) => self.fail(why.into()),
        }
        Ok(())
    }

    /// Ends the body with `error` (the stream broke).
    pub fn fail(&mut self, error: BoxError) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Err(error));
        }
    }

    /// Credits to grant now: enough to bring the peer back to a full window
    /// once the reader has taken half of one. `None` when none are due (or
    /// the body has ended).
    pub fn grant(&mut self) -> Option<u32> {
        if self.ended() {
            return None;
        }
        let taken = self
            .taken
            .count
            .load(Ordering::Relaxed)
            .saturating_sub(self.inline);
        let due = (taken + u64::from(WINDOW)).saturating_sub(self.granted);
        if due < u64::from(WINDOW / 2) {
            return None;
        }
        self.granted += due;
        u32::try_from(due).ok()
    }

    /// Resolves when the reader has taken a chunk (call [`Feed::grant`]).
    pub async fn taken(&self) {
        self.taken.notify.notified().await
    }

    /// Resolves when the reader of the body is gone (never for an ended feed
    /// whose reader is still there).
    pub async fn reader_gone(&self) {
        match self.tx.as_ref() {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }
}

/// Splits `data` into pieces of at most [`CHUNK_MAX`] bytes (no copy).
pub fn pieces(mut data: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let n = data.len().min(CHUNK_MAX);
        Some(data.split_to(n))
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_feed_passes_chunks_in_order_and_grants_as_they_are_read() {
        let (mut feed, mut body) = Feed::new(Bytes::from_static(b"a"), false, None);
        for seq in 0..u64::from(WINDOW) {
            feed.accept(seq, Bytes::from(vec![b'x'; 1]), None).unwrap();
        }
        assert_eq!(feed.grant(), None, "nothing read yet");
        for _ in 0..5 {
            body.frame().await.unwrap().unwrap();
        }
        // 5 taken (the inline part and 4 chunks): the peer may send 4 more.
        assert_eq!(feed.grant(), Some(4));
        feed.accept(8, Bytes::new(), Some(End::Whole)).unwrap();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest.len(), 4);

        // A feed dropped before its end (the exchange failed) does not pass
        // the body off as whole.
        let (feed, mut body) = Feed::new(Bytes::from_static(b"a"), false, None);
        drop(feed);
        body.frame().await.unwrap().unwrap();
        let end = body.frame().await.unwrap().unwrap_err();
        assert!(end.to_string().contains("ended before"), "{end}");
        // One created whole is.
        let (_feed, body) = Feed::new(Bytes::from_static(b"ab"), true, None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ab");
    }

    #[tokio::test]
    async fn a_gap_past_credit_or_limit_ends_the_body_with_an_error() {
        let (mut feed, mut body) = Feed::new(Bytes::new(), false, None);
        let err = feed.accept(1, Bytes::from_static(b"x"), None).unwrap_err();
        assert!(err.contains("chunk 0 of the body was lost"), "{err}");
        let end = body.frame().await.unwrap().unwrap_err();
        assert!(end.to_string().contains("lost"), "{end}");

        // The inline part takes no credit: a window of chunks, then no more.
        let (mut feed, mut body) = Feed::new(Bytes::from_static(b"a"), false, None);
        for seq in 0..u64::from(WINDOW) {
            feed.accept(seq, Bytes::from_static(b"x"), None).unwrap();
        }
        let err = feed.accept(8, Bytes::from_static(b"x"), None).unwrap_err();
        assert!(err.contains("past its credit"), "{err}");
        for _ in 0..=WINDOW {
            body.frame().await.unwrap().unwrap();
        }
        assert!(body.frame().await.unwrap().is_err(), "ends with the error");

        // A bare end marker needs no credit, so its reason arrives.
        let (mut feed, mut body) = Feed::new(Bytes::new(), false, None);
        for seq in 0..u64::from(WINDOW) {
            feed.accept(seq, Bytes::from_static(b"x"), None).unwrap();
        }
        feed.accept(8, Bytes::new(), Some(End::Failed("trapped".into())))
            .unwrap();
        for _ in 0..WINDOW {
            body.frame().await.unwrap().unwrap();
        }
        let end = body.frame().await.unwrap().unwrap_err();
        assert_eq!(end.to_string(), "trapped");

        let (mut feed, mut body) = Feed::new(Bytes::from_static(b"abc"), false, Some(4));
        let err = feed.accept(0, Bytes::from_static(b"de"), None).unwrap_err();
        assert!(err.contains("limit of 4 bytes"), "{err}");
        body.frame().await.unwrap().unwrap();
        let end = body.frame().await.unwrap().unwrap_err();
        assert!(end.is::<BodyTooLarge>(), "{end}");
    }

    #[test]
    fn big_frames_split_into_chunks() {
        let sizes: Vec<_> = pieces(Bytes::from(vec![0; CHUNK_MAX * 2 + 1]))
            .map(|p| p.len())
            .collect();
        assert_eq!(sizes, [CHUNK_MAX, CHUNK_MAX, 1]);
    }
}
