//! The `lattice:httpserver` capability provider.
//!
//! Each link to this provider names an address (`address=HOST:PORT` in the link
//! config); the provider listens there and turns every HTTP request (any method,
//! any path) into a call of `HttpServer.HandleRequest` on the linked actor, with an
//! [`HttpRequest`](lattice::contracts::httpserver::HttpRequest) as msgpack, and
//! answers with the actor's
//! [`HttpResponse`](lattice::contracts::httpserver::HttpResponse).
//!
//! It speaks HTTP/1.1 (keep-alive) and HTTP/2 over cleartext with prior knowledge
//! (h2c), on [hyper]. Link config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `address` | where to listen, `HOST:PORT` (`:PORT` = all interfaces, port `0` = any free port, see [`HttpServerProvider::bound_address`]) | required |
//! | `max_body_bytes` | largest request body accepted, at most [`MAX_BODY_BYTES_LIMIT`]; larger bodies get 413 | [`DEFAULT_MAX_BODY_BYTES`] |
//! | `max_connections` | connections open at once, at most [`MAX_CONNECTIONS_LIMIT`]; past it a new connection gets 503 with `retry-after` and is closed | [`DEFAULT_MAX_CONNECTIONS`] |
//! | `header_timeout` | time a new connection has to start speaking HTTP, and an HTTP/1 request to send its headers (`10s`, `500ms`) | [`DEFAULT_HEADER_TIMEOUT`] |
//! | `idle_timeout` | time a connection (HTTP/1 keep-alive or HTTP/2) may stay open with no request in flight | [`DEFAULT_IDLE_TIMEOUT`] |
//!
//! Listeners set `SO_REUSEPORT` (on unix): instances of this provider in several
//! hosts on one machine, each applying the same link, listen on the same port,
//! and the kernel spreads new connections over them and stops sending any to an
//! instance that stopped or died. Only sockets that set `SO_REUSEPORT` and
//! belong to the same user share a port; any other program's listener on it
//! still fails the link with "address in use". Within one instance, a link
//! whose address overlaps another link's (same port, same IP or all
//! interfaces) is refused naming that link. Across machines, put a load
//! balancer in front.
//!
//! What the HTTP client sees when things go wrong:
//!
//! | situation | status |
//! |---|---|
//! | request body over `max_body_bytes` | 413 |
//! | `max_connections` connections already open | 503 with `retry-after: 1`, connection closed |
//! | nothing sent within `header_timeout`, or idle past `idle_timeout` | connection closed |
//! | malformed HTTP | 400 (from hyper; the server keeps serving) |
//! | actor not running anywhere | 503 |
//! | actor did not answer in time, or the provider's request timeout passed | 504 |
//! | actor returned an error | 500 `actor error: ...` |
//! | actor's reply is not an `HttpResponse`, or its status is not 200–999 | 500 |
//!
//! Response headers the actor sends that HTTP cannot carry are dropped with a
//! warning; so are `transfer-encoding` and a `content-length` that does not match
//! the body (hyper frames the response itself).
//!
//! An actor the [`ActorCaller`] can stream to ([`ActorCaller::streams_http`]: a
//! `wasi:http` component in the same host) gets the request with its body
//! still arriving ([`ActorCaller::call_http`]), bounded by `max_body_bytes`,
//! and its response goes out with the first chunk of its body, the rest streaming; a body
//! that ends in an error (the component trapped mid-body) aborts the response.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeMap;
//!
//! use lattice::contracts::httpserver::{CONFIG_ADDRESS, CONTRACT};
//! use lattice_provider::{LinkDefinition, Provider, ProviderContext};
//! use lattice_provider_httpserver::HttpServerProvider;
//!
//! # async fn demo(ctx: ProviderContext) -> Result<(), Box<dyn std::error::Error>> {
//! let provider = HttpServerProvider::new();
//! provider.start(ctx).await?;
//!
//! let link = LinkDefinition {
//!     actor_id: "hello".parse()?,
//!     provider_id: "http".parse()?,
//!     contract: CONTRACT.parse()?,
//!     link_name: "default".parse()?,
//!     config: BTreeMap::from([(CONFIG_ADDRESS.into(), "127.0.0.1:8080".into())]),
//! };
//! provider.put_link(link.clone()).await?;
//! // Every request to http://127.0.0.1:8080/ is now a call to actor `hello`.
//!
//! provider.delete_link(link).await; // stops listening; in-flight requests finish
//! provider.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod codec;
mod remote;
mod server;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, atomic::AtomicUsize, atomic::Ordering},
    time::Duration,
};

use lattice::{
    contracts::httpserver::{
        CONFIG_ADDRESS, CONFIG_HEADER_TIMEOUT, CONFIG_IDLE_TIMEOUT, CONFIG_MAX_BODY,
        CONFIG_MAX_CONNECTIONS, CONTRACT,
    },
    id::{ActorId, LinkName},
};
use lattice_provider::{
    ActorCaller, BoxFuture, Health, LinkDefinition, LinkStatus, Provider, ProviderCall,
    ProviderContext, ProviderError,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{info, warn};

use server::{Limits, Route};

/// The request body limit when a link sets no `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest `max_body_bytes` a link may set: 64 MiB. Bodies are buffered
/// whole and travel as one message, so this bounds the memory one request takes.
pub const MAX_BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// Connections one listener keeps open when a link sets no `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The largest `max_connections` a link may set. Every connection is a file
/// descriptor of the process that also holds the host's NATS connection.
pub const MAX_CONNECTIONS_LIMIT: usize = 65_536;
/// Time to start speaking HTTP and to send HTTP/1 headers, by default: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may stay open with no request in flight, by default: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default overall deadline for one request (reading the body, the actor
/// call, decoding the reply): 30 s, then 504. A backstop behind the actor call's
/// own timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// (actor, link name)
type LinkKey = (ActorId, LinkName);

/// Told the status and duration of each response (see
/// [`HttpServerProvider::with_observer`]).
pub type ResponseObserver = Arc<dyn Fn(u16, Duration) + Send + Sync>;

/// The `lattice:httpserver` provider: one HTTP listener per link.
///
/// Cheap to create; listeners start with [`Provider::put_link`] and stop with
/// [`Provider::delete_link`] or [`Provider::shutdown`] (or when the provider is
/// dropped). See the [crate docs](crate) for the link config and error mapping.
pub struct HttpServerProvider {
    request_timeout: Duration,
    observer: Option<ResponseObserver>,
    actors: Mutex<Option<Arc<dyn ActorCaller>>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    listeners: HashMap<LinkKey, Listener>,
    /// Links whose last `put_link` failed, with the reason.
    errors: HashMap<LinkKey, String>,
    /// Listeners that stopped accepting and are letting requests finish.
    draining: Vec<JoinHandle<()>>,
}

struct Listener {
    /// The address from the link config.
    requested: SocketAddr,
    /// The address actually bound (differs when the port was 0).
    bound: SocketAddr,
    route: Arc<Route>,
    stop: oneshot::Sender<()>,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Closes the listening socket (returns once it is closed) and leaves the
    /// connections draining in `task`.
    async fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(());
        let _ = self.closed.await;
        self.task
    }
}

impl Default for HttpServerProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for HttpServerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("HttpServerProvider")
            .field("request_timeout", &self.request_timeout)
            .field(
                "listeners",
                &state
                    .listeners
                    .iter()
                    .map(|(k, l)| (k, l.bound))
                    .collect::<Vec<_>>(),
            )
            .field("errors", &state.errors)
            .finish_non_exhaustive()
    }
}

impl HttpServerProvider {
    /// A provider with the default request timeout ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn new() -> Self {
        HttpServerProvider {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            observer: None,
            actors: Mutex::new(None),
            state: Mutex::new(State::default()),
        }
    }

    /// Sets the overall deadline for one request; past it the client gets 504.
    /// Applies to listeners started afterwards.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Calls `observer` with the status and the time taken of every response
    /// (a host counts them in its metrics). It runs on the request path, so it
    /// must be quick. Applies to listeners started afterwards.
    #[must_use]
    pub fn with_observer(mut self, observer: ResponseObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The address the listener of link (`actor`, `link_name`) is bound to, e.g.
    /// the port picked for `address=127.0.0.1:0`; `None` when that link has no
    /// listener.
    pub fn bound_address(&self, actor: &str, link_name: &str) -> Option<SocketAddr> {
        self.state()
            .listeners
            .iter()
            .find(|((a, l), _)| a.as_str() == actor && l.as_str() == link_name)
            .map(|(_, l)| l.bound)
    }

    /// Every link this provider knows: serving ones without an error, failed
    /// ones (e.g. address in use) with the reason.
    pub fn link_statuses(&self) -> Vec<LinkStatus> {
        let state = self.state();
        let mut out: Vec<LinkStatus> = state
            .listeners
            .keys()
            .map(|(actor, link)| LinkStatus {
                actor_id: actor.clone(),
                link_name: link.clone(),
                error: None,
            })
            .chain(
                state
                    .errors
                    .iter()
                    .map(|((actor, link), error)| LinkStatus {
                        actor_id: actor.clone(),
                        link_name: link.clone(),
                        error: Some(error.clone()),
                    }),
            )
            .collect();
        out.sort_by(|a, b| (&a.actor_id, &a.link_name).cmp(&(&b.actor_id, &b.link_name)));
        out
    }

    /// The links whose last `put_link` failed, with the reason.
    pub fn link_errors(&self) -> Vec<LinkStatus> {
        self.link_statuses()
            .into_iter()
            .filter(|s| s.error.is_some())
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Never held across an await, nothing panics under it: poisoning would be
        // a bug elsewhere; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the listener of `key` out, recording `error` for it (or clearing
    /// any).
    fn take(&self, key: &LinkKey, error: Option<String>) -> Option<Listener> {
        let mut state = self.state();
        match error {
            Some(e) => state.errors.insert(key.clone(), e),
            None => state.errors.remove(key),
        };
        state.listeners.remove(key)
    }

    async fn stop_listener(&self, listener: Listener) {
        let task = listener.stop().await;
        let mut state = self.state();
        state.draining.retain(|t| !t.is_finished());
        state.draining.push(task);
    }

    async fn put(&self, link: LinkDefinition) -> Result<(), ProviderError> {
        let key: LinkKey = (link.actor_id.clone(), link.link_name.clone());
        let fail = |reason: String| ProviderError::Link {
            actor_id: link.actor_id.to_string(),
            link_name: link.link_name.to_string(),
            reason,
        };

        let config = match LinkConfig::parse(&link).await {
            Ok(c) => c,
            Err(reason) => {
                // The link's config is the truth: it no longer names a usable
                // address, so whatever served it before stops.
                if let Some(old) = self.take(&key, Some(reason.clone())) {
                    self.stop_listener(old).await;
                }
                return Err(fail(reason));
            }
        };
        let actors = self
            .actors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(actors) = actors else {
            let reason = "the provider has not been started".to_string();
            self.state().errors.insert(key, reason.clone());
            return Err(fail(reason));
        };

        // Same address: update in place, keep connections.
        let old = {
            let mut state = self.state();
            if let Some(l) = state.listeners.get(&key)
                && l.requested == config.address
                && l.route.limits == config.limits
                && Arc::ptr_eq(&l.route.actors, &actors)
            {
                l.route
                    .max_body
                    .store(config.max_body_bytes, Ordering::Relaxed);
                state.errors.remove(&key);
                return Ok(());
            }
            state.listeners.remove(&key)
        };
        // A changed address or limits: free the old listener first (the new
        // address may overlap it, e.g. 127.0.0.1:8080 → 0.0.0.0:8080).
        if let Some(old) = old {
            self.stop_listener(old).await;
        }

        let replaced = {
            let mut state = self.state();
            let listener = match self.bind(&state, &key, &config) {
                Ok(l) => l,
                Err(reason) => {
                    state.errors.insert(key, reason.clone());
                    return Err(fail(reason));
                }
            };
            let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
            let route = Arc::new(Route {
                actor: link.actor_id.to_string(),
                actors,
                max_body: AtomicUsize::new(config.max_body_bytes),
                request_timeout: self.request_timeout,
                limits: config.limits,
                observer: self.observer.clone(),
            });
            let (stop, stop_rx) = oneshot::channel();
            let (closed_tx, closed) = oneshot::channel();
            let task = tokio::spawn(server::run(
                listener,
                route.clone(),
                Arc::new(server::builder(&config.limits)),
                stop_rx,
                closed_tx,
                self.request_timeout + Duration::from_secs(1),
            ));
            info!(
                actor = %link.actor_id,
                link_name = %link.link_name,
                %bound,
                "HTTP server listening"
            );
            state.errors.remove(&key);
            state.listeners.insert(
                key,
                Listener {
                    requested: config.address,
                    bound,
                    route,
                    stop,
                    closed,
                    task,
                },
            )
        };
        // Only when two puts of one link raced.
        if let Some(replaced) = replaced {
            self.stop_listener(replaced).await;
        }
        Ok(())
    }

    fn bind(
        &self,
        state: &State,
        key: &LinkKey,
        config: &LinkConfig,
    ) -> Result<tokio::net::TcpListener, String> {
        let addr = config.address;
        // With SO_REUSEPORT the kernel would let a second listener of this very
        // provider share the port (and split its connections between two
        // actors): refuse an address that overlaps another link's first. Ports
        // 0 never overlap; 0.0.0.0 overlaps every IPv4 address, [::] (dual
        // stack) every address.
        let covers = |wide: SocketAddr, narrow: SocketAddr| {
            wide.ip().is_unspecified() && (wide.is_ipv6() || narrow.is_ipv4())
        };
        let overlaps = |other: SocketAddr| {
            other.port() == addr.port()
                && (other.ip() == addr.ip() || covers(other, addr) || covers(addr, other))
        };
        if addr.port() != 0
            && let Some(((actor, link), _)) = state
                .listeners
                .iter()
                .find(|(k, l)| *k != key && (overlaps(l.requested) || overlaps(l.bound)))
        {
            return Err(format!(
                "address {addr} is in use (by link {link:?} of actor {actor} on this provider)"
            ));
        }
        server::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!("address {addr} is in use"),
            std::io::ErrorKind::AddrNotAvailable => {
                format!("address {addr} is not available on this machine")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied to listen on {addr}")
            }
            _ => format!("cannot listen on {addr}: {e}"),
        })
    }

    async fn delete(&self, link: LinkDefinition) {
        let key: LinkKey = (link.actor_id, link.link_name);
        if let Some(old) = self.take(&key, None) {
            info!(actor = %key.0, link_name = %key.1, bound = %old.bound, "HTTP server stopping");
            self.stop_listener(old).await;
        }
    }

    async fn stop_all(&self) {
        let listeners: Vec<Listener> = {
            let mut state = self.state();
            state.errors.clear();
            state.listeners.drain().map(|(_, l)| l).collect()
        };
        for l in listeners {
            self.stop_listener(l).await;
        }
        let draining = std::mem::take(&mut self.state().draining);
        for task in draining {
            if let Err(e) = task.await
                && e.is_panic()
            {
                warn!("an HTTP listener task panicked");
            }
        }
    }
}

/// A link's parsed config.
struct LinkConfig {
    address: SocketAddr,
    max_body_bytes: usize,
    limits: Limits,
}

impl LinkConfig {
    async fn parse(link: &LinkDefinition) -> Result<Self, String> {
        let Some(raw) = link.config.get(CONFIG_ADDRESS) else {
            return Err(format!(
                "config {CONFIG_ADDRESS}=HOST:PORT is required (e.g. {CONFIG_ADDRESS}=0.0.0.0:8080)"
            ));
        };
        let address = parse_address(raw).await?;
        let count = |key: &str, default: usize, max: usize, what: &str| match link.config.get(key) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                Ok(_) => Err(format!(
                    "config {key}={v:?} is out of range: 1 to {max} {what}"
                )),
                Err(_) => Err(format!("config {key}={v:?} is not a number of {what}")),
            },
        };
        let duration = |key: &str, default: Duration| match link.config.get(key) {
            None => Ok(default),
            Some(v) => match humantime::parse_duration(v.trim()) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(24 * 3600) => Ok(d),
                Ok(_) => Err(format!(
                    "config {key}={v:?} is out of range: more than 0 and at most 24h"
                )),
                Err(e) => Err(format!(
                    "config {key}={v:?} is not a duration such as 10s or 500ms: {e}"
                )),
            },
        };
        Ok(LinkConfig {
            address,
            max_body_bytes: count(
                CONFIG_MAX_BODY,
                DEFAULT_MAX_BODY_BYTES,
                MAX_BODY_BYTES_LIMIT,
                "bytes",
            )?,
            limits: Limits {
                max_connections: count(
                    CONFIG_MAX_CONNECTIONS,
                    DEFAULT_MAX_CONNECTIONS,
                    MAX_CONNECTIONS_LIMIT,
                    "connections",
                )?,
                header_timeout: duration(CONFIG_HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT)?,
                idle_timeout: duration(CONFIG_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT)?,
            },
        })
    }
}

/// `HOST:PORT` → a socket address. `HOST` may be an IP (`[::1]` for IPv6), a
/// name (resolved, first address wins) or empty (all IPv4 interfaces).
async fn parse_address(raw: &str) -> Result<SocketAddr, String> {
    let s = raw.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: &str| format!("config {CONFIG_ADDRESS}={raw:?} is not HOST:PORT: {why}");
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad("write IPv6 addresses in brackets, e.g. [::1]:8080"));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(&e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("the host name resolves to no address"))
}

impl Provider for HttpServerProvider {
    fn contract(&self) -> &'static str {
        CONTRACT
    }

    fn start(&self, ctx: ProviderContext) -> BoxFuture<'_, Result<(), ProviderError>> {
        *self.actors.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.actors);
        Box::pin(async { Ok(()) })
    }

    fn put_link(&self, link: LinkDefinition) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.put(link))
    }

    fn delete_link(&self, link: LinkDefinition) -> BoxFuture<'_, ()> {
        Box::pin(self.delete(link))
    }

    fn handle(&self, call: ProviderCall) -> BoxFuture<'_, Result<Vec<u8>, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::UnknownOperation {
                operation: call.operation,
                known: "none (lattice:httpserver calls actors; actors do not call it)".into(),
            })
        })
    }

    fn health(&self) -> Health {
        let state = self.state();
        if state.errors.is_empty() {
            return Health {
                healthy: true,
                message: format!("serving {} link(s)", state.listeners.len()),
            };
        }
        let mut failed: Vec<String> = state
            .errors
            .iter()
            .map(|((actor, link), e)| format!("link {link:?} of actor {actor}: {e}"))
            .collect();
        failed.sort();
        Health {
            healthy: false,
            message: format!("{} link(s) failed: {}", failed.len(), failed.join("; ")),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.stop_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:8080").await.unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_address("[::1]:80").await.unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_address(":9000").await.unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert!(
            parse_address("localhost:8080")
                .await
                .unwrap()
                .ip()
                .is_loopback()
        );
        for bad in [
            "",
            "8080",
            "127.0.0.1",
            "127.0.0.1:x",
            "::1:80",
            "1.2.3.4:70000",
        ] {
            let e = parse_address(bad).await.unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
