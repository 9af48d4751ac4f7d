//! One listener per link: accept loop, per-connection hyper tasks with their
//! limits (connection cap, protocol-detection and idle timeouts), and the
//! request → actor call → response path.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode, Version,
    body::{Body, Incoming},
    header::{self, HeaderValue},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use lattice::contracts::httpserver::HANDLE_REQUEST;
use lattice_provider::{ActorCaller, CallError, HttpBody};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Semaphore, oneshot, watch},
    task::JoinSet,
};
use tracing::{debug, warn};

use crate::codec::{self, HeadersRef, RequestRef};

/// The response body type: whole (from a reply over NATS, or the
/// provider's own), or streamed from a component in this host.
pub(crate) type ResBody = Either<Full<Bytes>, HttpBody>;

/// Listen backlog.
const BACKLOG: u32 = 1024;
/// Requests one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 256;
/// How long a client refused for the connection cap gets to read its 503.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// What an HTTP/2 prior-knowledge client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits of one listener, from its link config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections open at once; past it a new one gets 503 and is closed.
    pub(crate) max_connections: usize,
    /// How long a client has to say which protocol it speaks and, on HTTP/1, to
    /// send a request's headers.
    pub(crate) header_timeout: Duration,
    /// How long a connection may stay open with no request in flight (HTTP/1
    /// keep-alive and HTTP/2 alike) before it is closed.
    pub(crate) idle_timeout: Duration,
}

/// The HTTP/1 + HTTP/2 (prior knowledge) connection builder of one listener.
pub(crate) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_timeout);
    // Pings find peers that vanished without a FIN; idle but live peers are
    // closed by the connection's idle timer.
    let ping = (limits.idle_timeout / 2).max(Duration::from_secs(1));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(ping)
        .keep_alive_timeout(ping);
    b
}

/// Everything the request path needs, captured per listener: no lookups, no locks.
pub(crate) struct Route {
    pub(crate) actor: String,
    pub(crate) actors: Arc<dyn ActorCaller>,
    /// Largest body accepted; updated in place when the link is put again.
    pub(crate) max_body: AtomicUsize,
    pub(crate) request_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) observer: Option<crate::ResponseObserver>,
}

/// Binds `addr` with `SO_REUSEADDR` (so a port freed by a stopped listener can be
/// taken again at once), `SO_REUSEPORT` on unix (so instances of the provider in
/// several hosts on one machine share the port: the kernel spreads new
/// connections over the live listeners and stops sending them to a closed or
/// dead one) and a generous backlog.
///
/// `SO_REUSEPORT` shares a port only among sockets that all set it and belong
/// to the same user; a socket of any other program (which does not set it)
/// still makes this bind fail with "address in use". Within one provider
/// instance, two links on one address are refused before binding (see
/// `HttpServerProvider::bind`).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    {
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The accept loop of one listener. Returns after `stop` fires (or its sender is
/// dropped) and every connection has finished, or `grace` has passed.
///
/// `closed` is signalled as soon as the listening socket is closed, before the
/// connections drain.
pub(crate) async fn run(
    listener: TcpListener,
    route: Arc<Route>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: oneshot::Receiver<()>,
    closed: oneshot::Sender<()>,
    grace: Duration,
) {
    let local = listener.local_addr().ok();
    let (drain, draining) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(route.limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    warn!(actor = %route.actor, "an HTTP connection task panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        debug!(%peer, actor = %route.actor, "connection cap reached; answering 503");
                        conns.spawn(refuse_busy(stream, route.limits.max_connections));
                        continue;
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, "TCP_NODELAY: {e}");
                    }
                    let conn = Connection {
                        route: route.clone(),
                        builder: builder.clone(),
                        draining: draining.clone(),
                    };
                    conns.spawn(async move {
                        conn.serve(stream, peer).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    if !is_per_connection(&e) {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(actor = %route.actor, ?local, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = closed.send(());
    // Idle keep-alive connections close now; in-flight requests get to finish.
    let _ = drain.send(true);
    let all_done = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        warn!(
            actor = %route.actor,
            ?local,
            "connections still open {grace:?} after the listener stopped; closing them"
        );
    }
    conns.shutdown().await;
    debug!(actor = %route.actor, ?local, "HTTP listener stopped");
}

/// Answers a connection over the cap with 503 and closes it, without reading
/// its request (an HTTP/2 client sees the connection close).
async fn refuse_busy(mut stream: TcpStream, cap: usize) {
    let body = format!("the server has {cap} connections open, its limit; retry shortly\n");
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(BUSY_WRITE_TIMEOUT, async {
        stream.write_all(resp.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// One accepted connection and what it needs to serve it.
struct Connection {
    route: Arc<Route>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Becomes `true` when the listener stops: finish in-flight requests, close.
    draining: watch::Receiver<bool>,
}

/// Requests of one connection, for its idle timer.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
}

/// Counts a request as in flight while alive, so dropping a request's future
/// (timeout, client gone) cannot leave the count high.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr) {
        let limits = self.route.limits;
        // hyper's protocol detection waits for the first bytes without a timer:
        // a client that connects and says nothing would hold a slot for ever.
        match tokio::time::timeout(limits.header_timeout, wait_for_protocol(&stream)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, "HTTP connection failed before a request: {e}");
                return;
            }
            Err(_) => {
                debug!(%peer, timeout = ?limits.header_timeout, "closing a connection that sent no request");
                return;
            }
        }
        let activity = Arc::new(Activity::default());
        let svc = Handler {
            route: self.route.clone(),
            activity: activity.clone(),
        };
        let conn = self.builder.serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        let mut closing = *self.draining.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let seen = activity.started.load(Ordering::Relaxed);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        // Includes malformed requests, which hyper has answered 400.
                        debug!(%peer, "HTTP connection ended: {e}");
                    }
                    return;
                }
                _ = self.draining.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep(limits.idle_timeout), if !closing => {
                    let idle = activity.in_flight.load(Ordering::Relaxed) == 0
                        && activity.started.load(Ordering::Relaxed) == seen;
                    if idle {
                        debug!(%peer, timeout = ?limits.idle_timeout, "closing an idle connection");
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Returns once the first bytes tell HTTP/1 from an HTTP/2 preface (or the
/// client closed), without consuming them.
async fn wait_for_protocol(stream: &TcpStream) -> io::Result<()> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return Ok(());
        }
        // Part of an HTTP/2 preface: rare (it fits one segment), and bounded by
        // the caller's timeout. `peek` returns at once while bytes are buffered.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The hyper service: every request, whatever its method or path, goes to the
/// listener's actor.
#[derive(Clone)]
struct Handler {
    route: Arc<Route>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let route = self.route.clone();
        let in_flight = InFlight::start(&self.activity);
        Box::pin(async move {
            let _in_flight = in_flight;
            // No panic crosses a request boundary: a panicking actor caller costs
            // this request a 500, not the connection.
            let began = route.observer.as_ref().map(|_| std::time::Instant::now());
            let resp = match AssertUnwindSafe(route.serve(req)).catch_unwind().await {
                Ok(resp) => resp,
                Err(_) => {
                    warn!(actor = %route.actor, "the request handler panicked");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error while handling the request\n".to_string(),
                    )
                }
            };
            if let (Some(observe), Some(began)) = (&route.observer, began) {
                observe(resp.status().as_u16(), began.elapsed());
            }
            Ok(resp)
        })
    }
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

impl Route {
    async fn serve(&self, req: Request<Incoming>) -> Response<ResBody> {
        match tokio::time::timeout(self.request_timeout, self.serve_inner(req)).await {
            Ok(resp) => resp,
            Err(_) => {
                debug!(actor = %self.actor, "request timed out");
                text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "request to actor {} timed out after {:?}\n",
                        self.actor, self.request_timeout
                    ),
                )
            }
        }
    }

    async fn serve_inner(&self, req: Request<Incoming>) -> Response<ResBody> {
        if self.actors.streams_http(&self.actor) {
            return self.serve_streamed(req).await;
        }
        if let Some(remote) = self.actors.remote(&self.actor) {
            return self.serve_remote(remote, req).await;
        }
        let (parts, body) = req.into_parts();
        let max = self.max_body.load(Ordering::Relaxed);
        let body = match read_body(body, max).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return too_large(parts.version, max),
            Err(BodyError::Read(e)) => {
                debug!(actor = %self.actor, "reading request body: {e}");
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}\n"),
                );
            }
        };

        let payload = match encode_request(&parts, &body) {
            Ok(payload) => payload,
            Err(e) => return unencodable(e),
        };
        drop(body);

        // A request the client may repeat (GET, HEAD, PUT, DELETE, ...) is
        // sent once more when the host serving it died mid-call: the queue
        // group gives it to another replica. Others get 502: they may have run.
        let again = parts.method.is_idempotent().then(|| payload.clone());
        let mut result = self
            .actors
            .call_actor(&self.actor, HANDLE_REQUEST, payload)
            .await;
        if let (Err(CallError::Lost(msg)), Some(payload)) = (&result, again) {
            debug!(actor = %self.actor, method = %parts.method, "retrying once: {msg}");
            result = self
                .actors
                .call_actor(&self.actor, HANDLE_REQUEST, payload)
                .await;
        }
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => return self.failed(e),
        };

        self.whole_response(reply, &parts.method)
    }

    /// The response to pass on for an actor's whole `HttpResponse` (msgpack).
    pub(crate) fn whole_response(&self, reply: Vec<u8>, method: &Method) -> Response<ResBody> {
        let decoded = match codec::decode_response(reply) {
            Ok(d) => d,
            Err(e) => {
                warn!(actor = %self.actor, "malformed HttpResponse: {e}");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "actor returned a malformed response: {}\n",
                        codec::truncate(&e.to_string(), 200)
                    ),
                );
            }
        };
        for what in &decoded.dropped {
            warn!(actor = %self.actor, "dropped a response header: {what}");
        }
        let Some(status) = final_status(decoded.status) else {
            return self.invalid_status(decoded.status);
        };
        let mut headers = decoded.headers;
        sanitize_framing(
            &mut headers,
            decoded.body.len(),
            method,
            status,
            &self.actor,
        );
        let mut resp = Response::new(Either::Left(Full::new(decoded.body)));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// The 500 for an actor's response whose status cannot be final (see
    /// [`final_status`]).
    pub(crate) fn invalid_status(&self, code: u16) -> Response<ResBody> {
        warn!(actor = %self.actor, status = code, "invalid response status");
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("actor returned an invalid status code {code}\n"),
        )
    }

    /// The response to a call that failed: 502 lost, 503 not running or busy
    /// (with `Retry-After`), 504 timed out, 500 the actor's error.
    pub(crate) fn failed(&self, error: CallError) -> Response<ResBody> {
        match error {
            CallError::Lost(msg) => text(
                StatusCode::BAD_GATEWAY,
                format!("{}\n", codec::truncate(&msg, 200)),
            ),
            CallError::NotRunning(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("actor {} is not running\n", self.actor),
            ),
            CallError::Busy(msg) => {
                // Refused at once by a limit: the client may retry soon.
                debug!(actor = %self.actor, "actor busy: {msg}");
                let mut resp = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", codec::truncate(&msg, 200)),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
            CallError::Timeout(_) => text(
                StatusCode::GATEWAY_TIMEOUT,
                format!("actor {} did not answer in time\n", self.actor),
            ),
            CallError::Failed(msg) => {
                debug!(actor = %self.actor, "actor error: {msg}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("actor error: {}\n", codec::truncate(&msg, 200)),
                )
            }
        }
    }

    /// Serves a request to a component in this host: the body streams to it
    /// as it arrives (refused past `max_body`, the component's read failing),
    /// and the response streams back while the component writes it.
    async fn serve_streamed(&self, req: Request<Incoming>) -> Response<ResBody> {
        let (parts, body) = req.into_parts();
        let max = self.max_body.load(Ordering::Relaxed);
        if body.size_hint().lower() > max as u64 {
            return too_large(parts.version, max);
        }
        let body = Limited::new(body, max).boxed_unsync();
        let response = match self
            .actors
            .call_http(&self.actor, Request::from_parts(parts, body))
            .await
        {
            Ok(response) => response,
            Err(e) => return self.failed(e),
        };
        let (mut parts, body) = response.into_parts();
        if final_status(parts.status.as_u16()).is_none() {
            return self.invalid_status(parts.status.as_u16());
        }
        // hyper frames a streamed body itself (chunked, or by a
        // `content-length` it then holds the body to).
        if parts.headers.remove(header::TRANSFER_ENCODING).is_some() {
            debug!(actor = %self.actor, "dropped transfer-encoding from the actor's response");
        }
        Response::from_parts(parts, Either::Right(body))
    }
}

/// The msgpack `HttpRequest` of a request with head `parts` and `body`.
///
/// # Errors
/// The encoder's, practically unreachable for these types.
pub(crate) fn encode_request(
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let host = if parts.headers.contains_key(header::HOST) {
        None
    } else {
        parts.uri.authority().map(|a| a.as_str())
    };
    let request = RequestRef {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: HeadersRef {
            map: &parts.headers,
            host,
        },
        body,
    };
    let mut payload = Vec::with_capacity(body.len() + 256 + 64 * parts.headers.len());
    rmp_serde::encode::write_named(&mut payload, &request)?;
    Ok(payload)
}

/// The body length is known, so hyper frames the response itself: a
/// `transfer-encoding` from the actor, or a `content-length` that contradicts the
/// body, would corrupt the connection.
fn sanitize_framing(
    headers: &mut HeaderMap,
    body_len: usize,
    method: &Method,
    status: StatusCode,
    actor: &str,
) {
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        debug!(actor, "dropped transfer-encoding from the actor's response");
    }
    let keep_length = *method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
    if keep_length || !headers.contains_key(header::CONTENT_LENGTH) {
        return;
    }
    let matches = {
        let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
        let first = values.next();
        values.next().is_none()
            && first
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                == Some(body_len)
    };
    if !matches {
        warn!(
            actor,
            "dropped a content-length that does not match the body ({body_len} bytes)"
        );
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Reads the whole body, refusing (without buffering further) as soon as it
/// exceeds `max` bytes.
async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    let hint = body.size_hint();
    if hint.lower() > max as u64 {
        return Err(BodyError::TooLarge);
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > max {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                let expected = usize::try_from(hint.lower()).unwrap_or(0).min(max);
                buf.reserve(expected.max(f.len() + data.len()));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

/// `code` as the status of a final response: not 1xx (informational, never
/// final), and within 100..=999 (else not HTTP).
pub(crate) fn final_status(code: u16) -> Option<StatusCode> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| !s.is_informational())
}

/// 413 for a body past `max` bytes.
pub(crate) fn too_large(version: Version, max: usize) -> Response<ResBody> {
    let mut resp = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the limit of {max} bytes\n"),
    );
    if version <= Version::HTTP_11 {
        // The rest of the body is not read; the connection cannot be reused.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The 500 for a request that could not be encoded (unreachable for the
/// types encoded; answered rather than panicked on).
pub(crate) fn unencodable(e: rmp_serde::encode::Error) -> Response<ResBody> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("could not encode the request: {e}\n"),
    )
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: String) -> Response<ResBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
