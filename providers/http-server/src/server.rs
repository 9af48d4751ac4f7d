//! One listener per link: accept loop, per-connection hyper tasks, and the
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
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode, Version,
    body::{Body, Incoming},
    header::{self, HeaderValue},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use lattice::contracts::httpserver::HANDLE_REQUEST;
use lattice_provider::{ActorCaller, CallError};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::oneshot,
    task::JoinSet,
};
use tracing::{debug, warn};

use crate::codec::{self, HeadersRef, RequestRef};

/// The response body type.
type ResBody = Full<Bytes>;

/// How long the server waits for a client to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Listen backlog.
const BACKLOG: u32 = 1024;

/// The HTTP/1 + HTTP/2 (prior knowledge) connection builder, shared by all
/// listeners of a provider.
pub(crate) fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2().timer(TokioTimer::new());
    b
}

/// Everything the request path needs, captured per listener: no lookups, no locks.
pub(crate) struct Route {
    pub(crate) actor: String,
    pub(crate) actors: Arc<dyn ActorCaller>,
    /// Largest body accepted; updated in place when the link is put again.
    pub(crate) max_body: AtomicUsize,
    pub(crate) request_timeout: Duration,
}

/// Binds `addr` with `SO_REUSEADDR` (so a port freed by a stopped listener can be
/// taken again at once) and a generous backlog.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
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
    let graceful = GracefulShutdown::new();
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
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, "TCP_NODELAY: {e}");
                    }
                    let watcher = graceful.watcher();
                    let builder = builder.clone();
                    let svc = Handler(route.clone());
                    conns.spawn(async move {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = watcher.watch(conn).await {
                            // Includes malformed requests, which hyper has answered 400.
                            debug!(%peer, "HTTP connection ended: {e}");
                        }
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
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            actor = %route.actor,
            ?local,
            "connections still open {grace:?} after the listener stopped; closing them"
        );
    }
    conns.shutdown().await;
    debug!(actor = %route.actor, ?local, "HTTP listener stopped");
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
struct Handler(Arc<Route>);

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let route = self.0.clone();
        Box::pin(async move {
            // No panic crosses a request boundary: a panicking actor caller costs
            // this request a 500, not the connection.
            match AssertUnwindSafe(route.serve(req)).catch_unwind().await {
                Ok(resp) => Ok(resp),
                Err(_) => {
                    warn!(actor = %route.actor, "the request handler panicked");
                    Ok(text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error while handling the request\n".to_string(),
                    ))
                }
            }
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
        let (parts, body) = req.into_parts();
        let max = self.max_body.load(Ordering::Relaxed);
        let body = match read_body(body, max).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                let mut resp = text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body exceeds the limit of {max} bytes\n"),
                );
                if parts.version <= Version::HTTP_11 {
                    // The rest of the body is not read; the connection cannot be reused.
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return resp;
            }
            Err(BodyError::Read(e)) => {
                debug!(actor = %self.actor, "reading request body: {e}");
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}\n"),
                );
            }
        };

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
            body: &body,
        };
        let mut payload = Vec::with_capacity(body.len() + 256 + 64 * parts.headers.len());
        if let Err(e) = rmp_serde::encode::write_named(&mut payload, &request) {
            // Unreachable for these types; answer rather than panic.
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the request: {e}\n"),
            );
        }
        drop(body);

        let reply = match self
            .actors
            .call_actor(&self.actor, HANDLE_REQUEST, payload)
            .await
        {
            Ok(reply) => reply,
            Err(CallError::NotRunning(_)) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("actor {} is not running\n", self.actor),
                );
            }
            Err(CallError::Timeout(_)) => {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("actor {} did not answer in time\n", self.actor),
                );
            }
            Err(CallError::Failed(msg)) => {
                debug!(actor = %self.actor, "actor error: {msg}");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("actor error: {}\n", codec::truncate(&msg, 200)),
                );
            }
        };

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
        // 1xx cannot be a final response; anything outside 100..=999 is not HTTP.
        let status = match StatusCode::from_u16(decoded.status) {
            Ok(s) if !s.is_informational() => s,
            _ => {
                warn!(actor = %self.actor, status = decoded.status, "invalid response status");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("actor returned an invalid status code {}\n", decoded.status),
                );
            }
        };
        let mut headers = decoded.headers;
        sanitize_framing(
            &mut headers,
            decoded.body.len(),
            &parts.method,
            status,
            &self.actor,
        );
        let mut resp = Response::new(Full::new(decoded.body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
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

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<ResBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
