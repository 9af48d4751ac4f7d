//! WASI 0.2 components as actors: the store they run in, the imports the host
//! gives them, and how a `lattice:httpserver` call becomes a
//! `wasi:http/incoming-handler` call.
//!
//! A component gets what `wasmtime serve -Scli` gives (the `wasi:cli`,
//! `wasi:io`, `wasi:clocks`, `wasi:random` interfaces and `wasi:http/types`),
//! with no preopened directories and no sockets, and `wasi:keyvalue`
//! ([`keyvalue`]) over its `lattice:keyvalue` links. Outgoing HTTP
//! (`wasi:http/outgoing-handler`) goes out only when the claims list
//! `lattice:httpclient` and the request's host is in the `allowed_hosts` of
//! that link; anything else is refused with `HTTP-request-denied` and the URL
//! logged. A component importing anything else is refused at start with the
//! missing interface named.
//!
//! An HTTP provider in the same host streams: it hands the component the
//! request as it arrives ([`ComponentInstance::serve_http`]) and gets the
//! response back once the component sets it and starts its body, the rest
//! following while the component writes it. Over NATS the provider sends a
//! whole request ([`HttpRequest`]) and takes back a whole response
//! ([`HttpResponse`]): a body is buffered up to [`MAX_RESPONSE_BODY`] on its
//! way out of the component.

pub mod keyvalue;
pub mod mesh;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use lattice::contracts::httpserver::{HttpRequest, HttpResponse};
use lattice_provider::{BoxError, HttpBody};
use wasmtime::{
    Engine, Store,
    component::{Component, Linker, Resource, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
    p2::{
        bindings::{Proxy, ProxyIndices, http::types::Scheme},
        body::HyperOutgoingBody,
    },
};

use lattice::trace::TraceContext;
use tokio::time::Instant;

use super::{
    abi::{HostCalls, MemoryLimiter},
    stdio::StderrTail,
};

/// Largest response body a component may send back through the HTTP
/// provider, in bytes; a longer one fails the call (500 at the provider,
/// naming the limit).
pub const MAX_RESPONSE_BODY: usize = 8 << 20;

/// What a component's store holds: WASI, wasi:http and its resources.
pub struct ComponentData {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: Hooks,
    pub(crate) limiter: MemoryLimiter,
    /// The end of what the guest wrote to stderr, for trap messages.
    pub(crate) stderr: StderrTail,
    /// Where contract calls (`wasi:keyvalue`) go.
    router: Arc<dyn HostCalls>,
    /// The call being served: its trace and deadline bound the contract
    /// calls it makes.
    pub(crate) trace: TraceContext,
    pub(crate) deadline: Instant,
    /// The `wasi:keyvalue` `list-keys` cursors handed out.
    key_cursors: keyvalue::KeyCursors,
}

impl ComponentData {
    /// The store data of one instance of `actor`.
    pub fn new(
        actor: Arc<str>,
        wasi: WasiCtx,
        limiter: MemoryLimiter,
        stderr: StderrTail,
        router: Arc<dyn HostCalls>,
    ) -> Self {
        ComponentData {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                actor,
                router: router.clone(),
                outgoing: Default::default(),
                refused: 0,
            },
            limiter,
            stderr,
            router,
            trace: TraceContext::new_root(),
            deadline: Instant::now(),
            key_cursors: keyvalue::KeyCursors::default(),
        }
    }
}

impl WasiView for ComponentData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// wasi:http behaviour of one instance: outgoing requests only where the
/// router allows them.
pub struct Hooks {
    actor: Arc<str>,
    router: Arc<dyn HostCalls>,
    /// Outgoing requests of this instance whose connection is still open.
    outgoing: Arc<std::sync::atomic::AtomicU32>,
    /// Requests refused so far: the first is logged as a warning, the rest
    /// at debug level (a guest looping on refusals must not flood the log).
    refused: u32,
}

/// Outgoing HTTP requests one instance may have open at once; more are
/// refused (each holds a socket until its response body is done).
pub const MAX_OUTGOING_REQUESTS: u32 = 16;

/// Gives back an outgoing-request place when the connection is done.
struct OutgoingSlot(Arc<std::sync::atomic::AtomicU32>);

impl Drop for OutgoingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The type `send_request` answers with.
type SendRequestFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                hyper::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl Hooks {
    /// Refuses a request: `HTTP-request-denied` for the guest, the URL
    /// (without its query, which may hold secrets) and `why` in the log.
    fn refuse(&mut self, uri: &hyper::Uri, why: &str) -> SendRequestFuture {
        self.refused = self.refused.saturating_add(1);
        let url = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        );
        if self.refused == 1 {
            tracing::warn!(actor = %self.actor, %url, "outgoing HTTP request refused: {why}");
        } else {
            tracing::debug!(actor = %self.actor, %url, refused = self.refused, "outgoing HTTP request refused: {why}");
        }
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendRequestFuture {
        use std::sync::atomic::Ordering;
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        if let Err(why) = self.router.outgoing_http(&self.actor, &authority) {
            return self.refuse(request.uri(), &why);
        }
        let taken = self
            .outgoing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OUTGOING_REQUESTS).then_some(n + 1)
            });
        if taken.is_err() {
            let why = format!("{MAX_OUTGOING_REQUESTS} requests of this instance are open already");
            return self.refuse(request.uri(), &why);
        }
        let slot = OutgoingSlot(self.outgoing.clone());
        tracing::debug!(actor = %self.actor, url = %request.uri().path(), "outgoing HTTP request");
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            // The connection lives as long as `io`: the place with it.
            let io = async move {
                let _slot = slot;
                io.await
            };
            Ok((
                response.map(http_body_util::BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            ))
        })
    }
}

/// The linker every component is linked with: WASI 0.2 (`-Scli`), wasi:http
/// and wasi:keyvalue.
///
/// # Errors
/// When wasmtime refuses a definition (a bug, not an input error).
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentData>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    keyvalue::add_to_linker(&mut linker)?;
    mesh::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Whether `bytes` is a component rather than a core module (by its header:
/// `\0asm` then the component version and layer).
pub fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}

/// A component linked against the host's imports, with the exports it
/// serves calls through.
pub struct ComponentPre {
    pre: wasmtime::component::InstancePre<ComponentData>,
    http: Option<ProxyIndices>,
    handler: Option<mesh::HandlerIndices>,
}

impl ComponentPre {
    /// Whether it exports `wasi:http/incoming-handler` (and so can take a
    /// streamed request: [`ComponentInstance::serve_http`]).
    pub fn serves_http(&self) -> bool {
        self.http.is_some()
    }
}

/// An HTTP request for a `wasi:http` component, its body streaming in, and
/// where the response goes the moment the component sets it (its body
/// streaming out while the component writes).
pub struct HttpExchange {
    /// The request. Its body fails (and the component's read with it) when
    /// the client fails or sends more than the provider's limit.
    pub request: hyper::Request<HttpBody>,
    /// Takes the response; dropped unsent when the component fails first.
    pub respond: tokio::sync::oneshot::Sender<hyper::Response<HttpBody>>,
}

/// One instance of a component: what it exports.
pub struct ComponentInstance {
    http: Option<Proxy>,
    handler: Option<mesh::Handler>,
}

/// Links `component` against the host's imports and finds its exports:
/// `wasi:http/incoming-handler`, `lattice:actor/handler`, or both.
///
/// # Errors
/// A message naming the import the host does not provide, or saying that
/// neither export is there.
pub fn prepare(
    linker: &Linker<ComponentData>,
    component: &Component,
) -> Result<ComponentPre, String> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        format!("the component imports something this host does not provide: {e:#}")
    })?;
    let http = ProxyIndices::new(&pre);
    let handler = mesh::HandlerIndices::new(&pre);
    match (http, handler) {
        (Err(http), Err(handler)) => Err(format!(
            "the component exports neither wasi:http/incoming-handler@0.2 ({http:#}) nor \
             lattice:actor/handler@0.1.0 ({handler:#}), so nothing could call it"
        )),
        (http, handler) => Ok(ComponentPre {
            pre,
            http: http.ok(),
            handler: handler.ok(),
        }),
    }
}

impl ComponentPre {
    /// Instantiates the component in `store` (running its start functions).
    ///
    /// # Errors
    /// wasmtime's error (a full instance pool among them).
    pub async fn instantiate(
        &self,
        store: &mut Store<ComponentData>,
    ) -> wasmtime::Result<ComponentInstance> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let http = match &self.http {
            Some(i) => Some(i.load(&mut *store, &instance)?),
            None => None,
        };
        let handler = match &self.handler {
            Some(i) => Some(i.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(ComponentInstance { http, handler })
    }
}

/// Why a call to a component failed.
#[derive(Debug)]
pub enum CallError {
    /// The request could not be decoded or turned into a wasi:http request.
    BadRequest(String),
    /// The guest trapped (the instance must be thrown away).
    Trap(wasmtime::Error),
    /// The guest answered something the provider cannot pass on.
    BadResponse(String),
    /// `lattice:actor/handler` answered an error (the instance is fine).
    Failed(String),
    /// The component exports nothing that answers this operation.
    Unsupported(String),
}

impl ComponentInstance {
    /// Calls `operation` with `payload`: `HttpServer.HandleRequest` goes to
    /// `wasi:http/incoming-handler` when exported, anything else to
    /// `lattice:actor/handler`. The caller bounds the time.
    pub async fn call(
        &self,
        store: &mut Store<ComponentData>,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        use lattice::contracts::httpserver::HANDLE_REQUEST;
        match (&self.http, &self.handler) {
            (Some(proxy), _) if operation == HANDLE_REQUEST => {
                handle_http(store, proxy, payload).await
            }
            (_, Some(handler)) => handler
                .call_handle(&mut *store, operation, payload)
                .await
                .map_err(CallError::Trap)?
                .map_err(CallError::Failed),
            (Some(_), None) => Err(CallError::Unsupported(format!(
                "a wasi:http component answers only {HANDLE_REQUEST} (through the \
                 lattice:httpserver provider); export lattice:actor/handler to answer others"
            ))),
            (None, None) => Err(CallError::Unsupported(
                "the component exports no handler".into(),
            )),
        }
    }
}

impl ComponentInstance {
    /// Serves `exchange` through `wasi:http/incoming-handler`: the request
    /// body streams in, the response goes to `exchange.respond` as soon as
    /// the guest sets it, and its body streams out while the guest writes
    /// (bounded by wasi:http's own small channel, so a slow client slows the
    /// guest rather than filling memory). Returns when `handle` returns.
    ///
    /// # Errors
    /// [`CallError::Trap`] when the guest traps (the response body, if
    /// already sent, then ends without finishing); [`CallError::BadResponse`]
    /// when it sets an error, no response, or a header value that is not
    /// visible ASCII (nothing is sent then); [`CallError::Unsupported`]
    /// without a wasi:http export.
    pub async fn serve_http(
        &self,
        store: &mut Store<ComponentData>,
        exchange: HttpExchange,
    ) -> Result<(), CallError> {
        let Some(proxy) = &self.http else {
            return Err(CallError::Unsupported(
                "the component does not export wasi:http/incoming-handler".into(),
            ));
        };
        let HttpExchange { request, respond } = exchange;
        let (req, out, rx) = incoming(store, request.map(|b| b.map_err(request_body_error)))?;
        let forward = async move {
            let response = response_set(rx).await?;
            for (name, value) in response.headers() {
                header_str(name, value)?;
            }
            // Nobody takes it when the client is gone: the guest's writes
            // then fail, and it ends.
            let _ = respond.send(response.map(|body| body.map_err(BoxError::from).boxed_unsync()));
            Ok(())
        };
        let call = proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, req, out);
        drive(call, forward).await
    }
}

/// Calls `handle` on `proxy` with `request` (msgpack [`HttpRequest`]) and
/// returns the msgpack [`HttpResponse`]. The caller bounds the time.
async fn handle_http(
    store: &mut Store<ComponentData>,
    proxy: &Proxy,
    request: &[u8],
) -> Result<Vec<u8>, CallError> {
    let mut request: HttpRequest = rmp_serde::from_slice(request)
        .map_err(|e| CallError::BadRequest(format!("not an HttpRequest: {e}")))?;
    let body = Full::new(Bytes::from(std::mem::take(&mut request.body)));
    let hyper_request = to_hyper(&request, body).map_err(CallError::BadRequest)?;
    let (req, out, rx) = incoming(store, hyper_request)?;
    // The guest writes the body after handing over the response, through a
    // bounded channel: read it while `handle` runs.
    let collect = async move { from_hyper(response_set(rx).await?).await };
    let call = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, req, out);
    drive(call, collect).await
}

/// Runs the guest's `handle` (`call`) and `take`, which waits for the
/// response it sets, side by side, and returns what `take` returned once both
/// are done. A trap ends the call at once: the body's sender lives in the
/// store, so a body the guest left open would otherwise never end.
async fn drive<T>(
    call: impl Future<Output = wasmtime::Result<()>>,
    take: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    tokio::pin!(call, take);
    let mut taken = None;
    loop {
        tokio::select! {
            called = &mut call => {
                if let Err(trap) = called {
                    // A body past the limit makes the guest's next write
                    // fail, and the guest may trap on that: the limit is
                    // the cause worth reporting.
                    return Err(match taken {
                        Some(Err(CallError::BadResponse(why))) => CallError::BadResponse(why),
                        _ => CallError::Trap(trap),
                    });
                }
                break;
            }
            got = &mut take, if taken.is_none() => taken = Some(got),
        }
    }
    match taken {
        Some(taken) => taken,
        None => take.await,
    }
}

/// Where the response the guest sets arrives.
type ResponseRx = tokio::sync::oneshot::Receiver<
    Result<
        hyper::Response<HyperOutgoingBody>,
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
    >,
>;

/// Puts `request` and a response outparam into the store's table: the two
/// arguments of `handle`, and where the response it sets will arrive. A
/// request with neither an authority nor a `host` header gets `host:
/// localhost`: wasi:http requires an authority.
fn incoming<B>(
    store: &mut Store<ComponentData>,
    mut request: hyper::Request<B>,
) -> Result<
    (
        Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
        ResponseRx,
    ),
    CallError,
>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    if request.uri().authority().is_none() && !request.headers().contains_key(hyper::header::HOST) {
        request.headers_mut().insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_static("localhost"),
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let req = http
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| CallError::BadRequest(format!("{e:#}")))?;
    let out = http
        .new_response_outparam(tx)
        .map_err(|e| CallError::BadRequest(format!("{e:#}")))?;
    Ok((req, out, rx))
}

/// The response the guest set through its `response-outparam`, or why there
/// is none.
async fn response_set(rx: ResponseRx) -> Result<hyper::Response<HyperOutgoingBody>, CallError> {
    match rx.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(CallError::BadResponse(format!(
            "the component answered with an error: {code:?}"
        ))),
        Err(_) => Err(CallError::BadResponse(
            "the component returned without setting a response".into(),
        )),
    }
}

/// A response header value as the string the contract carries: visible
/// ASCII only, so every provider (and HTTP/1 client) can pass it on.
fn header_str<'v>(
    name: &hyper::header::HeaderName,
    value: &'v hyper::header::HeaderValue,
) -> Result<&'v str, CallError> {
    value.to_str().map_err(|_| {
        CallError::BadResponse(format!(
            "response header {name} is not visible ASCII: {:?}",
            value.as_bytes()
        ))
    })
}

/// What a failed request body tells the guest: its size limit, or the failure.
fn request_body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<http_body_util::LengthLimitError>()
        || e.is::<lattice_provider::http_stream::BodyTooLarge>()
    {
        wasmtime_wasi_http::Error::HttpRequestBodySize(None)
    } else {
        wasmtime_wasi_http::Error::InternalError(Some(format!("reading the request body: {e}")))
    }
}

/// `request`'s head with `body` as a hyper request.
///
/// # Errors
/// Naming the method and URI, when they or a header are not valid HTTP.
pub(crate) fn to_hyper<B>(request: &HttpRequest, body: B) -> Result<hyper::Request<B>, String> {
    let mut uri = request.path.clone();
    if !request.query.is_empty() {
        uri.push('?');
        uri.push_str(&request.query);
    }
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(&uri);
    for (name, values) in &request.headers {
        for value in values {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(body)
        .map_err(|e| format!("invalid request ({} {uri}): {e}", request.method))
}

/// A response's headers as the contract carries them.
///
/// # Errors
/// [`CallError::BadResponse`] for a value that is not visible ASCII.
pub(crate) fn header_map(
    headers: &hyper::HeaderMap,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, CallError> {
    let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        let value = header_str(name, value)?;
        map.entry(name.as_str().to_string())
            .or_default()
            .push(value.to_string());
    }
    Ok(map)
}

async fn from_hyper(response: hyper::Response<HyperOutgoingBody>) -> Result<Vec<u8>, CallError> {
    let (parts, body) = response.into_parts();
    let headers = header_map(&parts.headers)?;
    let body = Limited::new(body, MAX_RESPONSE_BODY)
        .collect()
        .await
        .map_err(|e| {
            CallError::BadResponse(if e.is::<http_body_util::LengthLimitError>() {
                format!("the response body exceeds {MAX_RESPONSE_BODY} bytes")
            } else {
                format!("the response body failed: {e}")
            })
        })?
        .to_bytes();
    let response = HttpResponse {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
    };
    rmp_serde::to_vec_named(&response)
        .map_err(|e| CallError::BadResponse(format!("could not encode the response: {e}")))
}
