//! One actor on one host: an `InstancePre`, warm instances, limits on calls
//! in flight and queued.
//!
//! A call is first *admitted* ([`Actor::admit`]), synchronously and without
//! waiting: it takes one of the host's `max_calls_per_host` slots
//! ([`HostLoad`]), then a free instance permit, else a place in the actor's
//! queue (`replicas × max_queued_per_replica`). Past any of these it is refused
//! at once with [`InvokeError::Busy`] or [`InvokeError::HostBusy`]. So the
//! calls a host holds (each with its payload) never exceed its limits, whatever
//! arrives.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use http_body_util::BodyExt;
use lattice::{digest::Digest, id::ActorId, trace::TraceContext};
use lattice_provider::{BoxError, HttpBody};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError},
    time::Instant,
};
use wasmtime::{InstancePre, Store, Trap, TypedFunc, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::{
    Code, Runtime,
    abi::{CallState, HostCalls, MemoryLimiter, StoreData},
    component::{self, CallError, ComponentData, ComponentInstance, ComponentPre},
    engine::ticks_until,
    stdio::{LogStream, StderrTail, Stdio},
};
use crate::error::{InvokeError, RuntimeError};

/// Epoch ticks (10 ms each) a call runs before it yields to other tasks.
const YIELD_TICKS: u64 = 2;

/// Lets the guest in `store` run until `deadline`, yielding to the scheduler
/// every [`YIELD_TICKS`] epoch ticks: a CPU-bound guest (a call or a slow
/// `_initialize`) shares the host's threads with other work, and the task
/// serving it can still send progress to its caller. Past the deadline the
/// guest traps with [`Trap::Interrupt`].
fn yield_until<T>(store: &mut Store<T>, deadline: Instant) {
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(YIELD_TICKS)
        })
    });
    store.set_epoch_deadline(YIELD_TICKS.min(ticks_until(deadline)));
}

/// How long an instance's init functions may run.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls in flight plus queued across all actors of one host, against its
/// `max_calls_per_host`. One per [`Runtime`].
#[derive(Debug)]
pub struct HostLoad {
    limit: u32,
    used: AtomicU32,
    host: OnceLock<String>,
}

impl HostLoad {
    /// A host allowing `limit` calls at once (at least 1).
    pub fn new(limit: u32) -> Self {
        HostLoad {
            limit: limit.max(1),
            used: AtomicU32::new(0),
            host: OnceLock::new(),
        }
    }

    /// Names the host in busy errors (once; later names are ignored).
    pub fn name_host(&self, name: &str) {
        let _ = self.host.set(name.to_string());
    }

    /// The host's name, as busy errors give it.
    pub fn host(&self) -> &str {
        self.host.get().map(String::as_str).unwrap_or("(unnamed)")
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Calls admitted now (in flight or queued).
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    fn enter(self: &Arc<Self>) -> Option<HostSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| HostSlot(self.clone()))
    }
}

/// One of the host's call slots; given back when dropped.
struct HostSlot(Arc<HostLoad>);

impl Drop for HostSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in an actor's queue; given back when dropped.
struct QueueTicket {
    queued: Arc<AtomicU32>,
    emptied: Arc<tokio::sync::Notify>,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        if self.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.emptied.notify_waiters();
        }
    }
}

enum Stage {
    /// Holds an instance permit: runs at once.
    Running(OwnedSemaphorePermit),
    /// Waits (up to its deadline) for a permit.
    Queued(QueueTicket),
}

/// A call let in by [`Actor::admit`]: it holds a host slot and either an
/// instance permit or a place in the queue until it is done (or dropped).
pub struct Admission {
    _host: HostSlot,
    stage: Stage,
}

impl Admission {
    /// Whether the call must wait for an instance.
    pub fn queued(&self) -> bool {
        matches!(self.stage, Stage::Queued(_))
    }
}

enum WarmInstance {
    Module {
        store: Store<StoreData>,
        guest_call: TypedFunc<(i32, i32), i32>,
    },
    Component {
        store: Store<ComponentData>,
        instance: ComponentInstance,
    },
}

/// An actor's code, linked against the host's imports.
enum Prepared {
    Module(InstancePre<StoreData>),
    Component(ComponentPre),
}

/// A running actor on this host.
pub struct Actor {
    id: ActorId,
    label: Arc<str>,
    digest: Digest,
    runtime: Runtime,
    pre: Prepared,
    router: Arc<dyn HostCalls>,
    warm: Mutex<Vec<WarmInstance>>,
    permits: Arc<Semaphore>,
    /// Calls admitted and waiting for a permit.
    queued: Arc<AtomicU32>,
    /// Signalled when the last queued call got its instance (or gave up):
    /// [`Actor::stop`] lets the queue through before it takes every permit.
    queue_emptied: Arc<tokio::sync::Notify>,
    replicas: AtomicU32,
    /// Per-actor configuration, seen by the guest as environment variables.
    config: std::collections::BTreeMap<String, String>,
    calls: AtomicU64,
    errors: AtomicU64,
    /// Nanoseconds spent in calls since start (with what earlier modules of
    /// the actor counted, [`Actor::add_counts`]): with `calls`, the mean latency
    /// an inventory reader (the dashboard) sees between two reads.
    call_ns: AtomicU64,
    /// When a call last took or gave back a warm instance, in milliseconds
    /// since the process started: which actor gives up an instance first when
    /// the pooling allocator is full.
    last_used: AtomicU64,
    /// This actor's call metrics, when the host serves metrics.
    metrics: Option<crate::metrics::ActorCallMetrics>,
}

/// An actor's call counters at one moment ([`Actor::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls admitted or refused.
    pub calls: u64,
    /// Calls that failed or were refused.
    pub errors: u64,
    /// Nanoseconds spent in calls.
    pub call_ns: u64,
}

impl CallCounts {
    /// What was counted between `earlier` and this reading of the same
    /// counters.
    pub fn since(self, earlier: CallCounts) -> CallCounts {
        CallCounts {
            calls: self.calls.saturating_sub(earlier.calls),
            errors: self.errors.saturating_sub(earlier.errors),
            call_ns: self.call_ns.saturating_sub(earlier.call_ns),
        }
    }
}

/// Idle instances one instantiation may take from other actors before it
/// gives up (each frees one slot; more than one is needed only when several
/// instantiations race for the freed slots).
const MAX_EVICTIONS_PER_INSTANCE: u32 = 16;

/// Calls `replicas` replicas may serve at once: `max_concurrency_per_replica`
/// each, at most the actor's share of instance slots.
fn concurrency_for(cfg: &crate::config::RuntimeConfig, replicas: u32) -> u32 {
    replicas
        .saturating_mul(cfg.max_concurrency_per_replica.max(1))
        .min(cfg.instance_share())
}

/// Milliseconds since the first call of this function: a cheap, monotonic clock.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Actor {
    /// The configuration it was started with (its guests' environment).
    pub fn config(&self) -> &std::collections::BTreeMap<String, String> {
        &self.config
    }

    /// Links a validated module or component and creates one instance
    /// eagerly, so code whose init traps is refused at start rather than at
    /// its first call.
    ///
    /// # Errors
    /// [`RuntimeError::Instantiate`] when linking (a component importing what
    /// the host does not provide, named) or the guest's init fails.
    pub async fn start(
        runtime: &Runtime,
        id: ActorId,
        digest: Digest,
        code: &Code,
        replicas: u32,
        config: std::collections::BTreeMap<String, String>,
        router: Arc<dyn HostCalls>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let refused = |reason: String| RuntimeError::Instantiate {
            actor: id.to_string(),
            reason,
        };
        let pre = match code {
            Code::Module(module) => Prepared::Module(
                runtime
                    .linker()
                    .instantiate_pre(module)
                    .map_err(|e| refused(format!("{e:#}")))?,
            ),
            Code::Component(c) => Prepared::Component(
                component::prepare(runtime.component_linker(), c).map_err(refused)?,
            ),
        };
        let metrics = runtime.metrics().map(|m| m.actor_call(id.as_str()));
        let actor = Arc::new(Actor {
            label: Arc::from(id.as_str()),
            id,
            digest,
            runtime: runtime.clone(),
            pre,
            router,
            warm: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(
                concurrency_for(runtime.config(), replicas) as usize
            )),
            queued: Arc::new(AtomicU32::new(0)),
            queue_emptied: Arc::new(tokio::sync::Notify::new()),
            replicas: AtomicU32::new(replicas),
            config,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            call_ns: AtomicU64::new(0),
            last_used: AtomicU64::new(now_ms()),
            metrics,
        });
        runtime.register(&actor);
        let first = actor.instantiate().await.map_err(|e| match e {
            // Already says "could not instantiate actor X": keep it once.
            InvokeError::Instantiate { actor, reason } => {
                RuntimeError::Instantiate { actor, reason }
            }
            other => RuntimeError::Instantiate {
                actor: actor.id.to_string(),
                reason: other.to_string(),
            },
        })?;
        actor.lock_warm().push(first);
        Ok(actor)
    }

    /// The actor id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// The module digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// A waPC module or a component.
    pub fn kind(&self) -> lattice::ctl::ActorKind {
        match self.pre {
            Prepared::Module(_) => lattice::ctl::ActorKind::Module,
            Prepared::Component(_) => lattice::ctl::ActorKind::Component,
        }
    }

    /// Replicas on this host.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Most calls served at once: replicas × `max_concurrency_per_replica`,
    /// at most the actor's share of instance slots
    /// ([`RuntimeConfig::instance_share`](crate::config::RuntimeConfig::instance_share)).
    pub fn max_concurrency(&self) -> u32 {
        concurrency_for(self.runtime.config(), self.replicas())
    }

    /// Most calls waiting for an instance: replicas × `max_queued_per_replica`.
    pub fn max_queued(&self) -> u32 {
        self.replicas()
            .saturating_mul(self.runtime.config().max_queued_per_replica)
    }

    /// Calls waiting for an instance now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Acquire)
    }

    /// Calls running or waiting for an instance now.
    pub fn in_flight(&self) -> u32 {
        let free = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        self.max_concurrency().saturating_sub(free) + self.queued()
    }

    /// Lets a call in, at once and without waiting: a host slot, then an
    /// instance permit or else a place in the queue.
    ///
    /// # Errors
    /// [`InvokeError::HostBusy`] when the host holds `max_calls_per_host`
    /// calls, [`InvokeError::Busy`] when every instance is busy and the queue
    /// is full, [`InvokeError::Stopped`] when the actor is stopping. Each
    /// counts as a failed call.
    pub fn admit(&self) -> Result<Admission, InvokeError> {
        let result = self.try_admit();
        if result.is_err() {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.refused();
            }
        }
        result
    }

    fn try_admit(&self) -> Result<Admission, InvokeError> {
        let load = self.runtime.host_load();
        let Some(host) = load.enter() else {
            return Err(InvokeError::HostBusy {
                actor: self.id.to_string(),
                host: load.host().to_string(),
                limit: load.limit(),
            });
        };
        let stage = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Stage::Running(permit),
            Err(TryAcquireError::Closed) => {
                return Err(InvokeError::Stopped {
                    actor: self.id.to_string(),
                });
            }
            Err(TryAcquireError::NoPermits) => {
                let max = self.max_queued();
                let entered = self
                    .queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    });
                if entered.is_err() {
                    return Err(InvokeError::Busy {
                        actor: self.id.to_string(),
                        host: load.host().to_string(),
                        in_flight: self.max_concurrency(),
                        queued: max,
                    });
                }
                Stage::Queued(QueueTicket {
                    queued: self.queued.clone(),
                    emptied: self.queue_emptied.clone(),
                })
            }
        };
        Ok(Admission { _host: host, stage })
    }

    /// Adds replicas (raising the concurrency limit up to the actor's share).
    pub fn add_replicas(&self, n: u32) -> u32 {
        let cfg = self.runtime.config();
        let before = self.replicas.fetch_add(n, Ordering::Relaxed);
        let after = before.saturating_add(n);
        // Each caller adds the difference its own step makes, so concurrent
        // additions sum to the limit of the final count.
        let more = concurrency_for(cfg, after) - concurrency_for(cfg, before);
        self.permits.add_permits(more as usize);
        after
    }

    /// Sets the replicas to `n` (at least 1), up or down; returns the count
    /// before. Scaling down takes the freed call slots away at once when they
    /// are idle, otherwise as the calls holding them finish: calls running now
    /// are never cut short.
    pub fn set_replicas(&self, n: u32) -> u32 {
        let n = n.max(1);
        let cfg = self.runtime.config();
        let before = self.replicas.swap(n, Ordering::Relaxed);
        let (was, now) = (concurrency_for(cfg, before), concurrency_for(cfg, n));
        if now >= was {
            self.permits.add_permits((now - was) as usize);
            return before;
        }
        let fewer = (was - now) as usize;
        // Idle instances past the new limit would only hold pool slots.
        self.lock_warm().truncate(now as usize);
        let gone = self.permits.forget_permits(fewer);
        if gone < fewer {
            // The rest are held by running calls: take them as they come back.
            // A stop closes the semaphore, which ends this wait too.
            let permits = self.permits.clone();
            let rest = u32::try_from(fewer - gone).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(rest).await {
                    p.forget();
                }
            });
        }
        before
    }

    /// Warm instances ready now.
    pub fn warm_instances(&self) -> usize {
        self.lock_warm().len()
    }

    /// Calls served and calls failed.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// Time spent in calls since start, with what earlier modules counted
    /// (admitted calls, from admission to answer).
    pub fn call_time(&self) -> Duration {
        Duration::from_nanos(self.call_ns.load(Ordering::Relaxed))
    }

    /// Its counters now: what an update carries over to the next module
    /// ([`Actor::add_counts`]).
    pub fn counts(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            call_ns: self.call_ns.load(Ordering::Relaxed),
        }
    }

    /// Adds `counts` (another module's, for the same actor id) to its own,
    /// so an actor's calls and errors do not go back to zero when its module
    /// is replaced.
    pub fn add_counts(&self, counts: CallCounts) {
        self.calls.fetch_add(counts.calls, Ordering::Relaxed);
        self.errors.fetch_add(counts.errors, Ordering::Relaxed);
        self.call_ns.fetch_add(counts.call_ns, Ordering::Relaxed);
    }

    /// Refuses new calls, waits (up to `timeout`) for in-flight ones, and drops
    /// the warm instances. Returns whether everything drained in time.
    pub async fn stop(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        // The queued calls first: the semaphore is fair, so taking every
        // permit now would put this stop ahead of them, and they would be
        // refused as "stopped" once it closes. (Nothing is admitted here any
        // more when this runs: the actor left the table, or an update sent
        // new calls to another module, so the queue only shrinks.)
        loop {
            let emptied = self.queue_emptied.notified();
            let mut emptied = std::pin::pin!(emptied);
            emptied.as_mut().enable();
            if self.queued() == 0 || tokio::time::timeout_at(until, emptied).await.is_err() {
                break;
            }
        }
        let total = self.max_concurrency();
        let drained = tokio::time::timeout_at(until, self.permits.acquire_many(total))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        self.permits.close();
        self.lock_warm().clear();
        drained
    }

    /// Calls `operation` with a msgpack `payload`, within `deadline`: admits
    /// the call ([`Actor::admit`]), then [`Actor::invoke_admitted`].
    ///
    /// # Errors
    /// [`InvokeError`] naming the actor and the operation; a busy actor or host
    /// answers at once.
    pub async fn invoke(
        &self,
        operation: &str,
        payload: Vec<u8>,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<Vec<u8>, InvokeError> {
        let admission = self.admit()?;
        self.invoke_admitted(admission, operation, payload, trace, deadline)
            .await
    }

    /// Runs an admitted call: waits (up to `deadline`) for an instance when it
    /// was queued, then calls. A warm instance is reused when one is free; a
    /// trapped instance is thrown away, so the next call starts clean.
    ///
    /// # Errors
    /// [`InvokeError`] naming the actor and the operation.
    pub async fn invoke_admitted(
        &self,
        admission: Admission,
        operation: &str,
        payload: Vec<u8>,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<Vec<u8>, InvokeError> {
        self.run_admitted(
            admission,
            operation,
            Input::Payload(payload),
            trace,
            deadline,
        )
        .await
    }

    /// Whether calls to it can stream HTTP ([`Actor::invoke_http`]): a
    /// component exporting `wasi:http/incoming-handler`.
    pub fn streams_http(&self) -> bool {
        matches!(&self.pre, Prepared::Component(c) if c.serves_http())
    }

    /// Serves an HTTP request through the component's `wasi:http` export
    /// with bodies streamed both ways, admitted like any call: returns the
    /// response once the component has set it and written the first chunk of
    /// its body (or ended it); the rest follows while the component writes.
    /// The call runs in a task of its own so that the response can leave
    /// before `handle` returns. Its end decides how the
    /// body ends: cleanly, or with an error frame when the component trapped
    /// or ran out of time mid-body, so a server aborts the response instead of
    /// passing a truncated one off as whole. Once the response is out the call
    /// runs to its end even when the body is dropped (a server drops it as
    /// soon as it has sent what `content-length` promised; a gone client makes
    /// the guest's next write fail); dropping this future before then aborts
    /// it.
    ///
    /// # Errors
    /// [`InvokeError`] when the call fails before a response is set (busy,
    /// deadline, trap, a response the provider cannot pass on, not a wasi:http
    /// component).
    pub async fn invoke_http(
        self: &Arc<Self>,
        request: hyper::Request<HttpBody>,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<hyper::Response<HttpBody>, InvokeError> {
        let admission = self.admit()?;
        self.invoke_http_admitted(admission, request, trace, deadline)
            .await
    }

    /// [`Actor::invoke_http`] of a call already admitted ([`Actor::admit`]).
    ///
    /// # Errors
    /// As [`Actor::invoke_http`].
    pub async fn invoke_http_admitted(
        self: &Arc<Self>,
        admission: Admission,
        request: hyper::Request<HttpBody>,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<hyper::Response<HttpBody>, InvokeError> {
        use lattice::contracts::httpserver::HANDLE_REQUEST;
        let failed = |message: String| InvokeError::Guest {
            actor: self.id.to_string(),
            operation: HANDLE_REQUEST.to_string(),
            message,
        };
        let (respond, head) = tokio::sync::oneshot::channel();
        let call = Arc::clone(self).http_call(admission, request, respond, trace, deadline);
        let mut call = AbortOnDrop(Some(tokio::spawn(call)));
        match head.await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let mut body = CallBody {
                    body,
                    first: None,
                    call: Some(call.disarm()),
                    open_past_return: None,
                    deadline,
                };
                // A server sends the head with the first chunk; one whose body
                // fails before that closes the connection without a word. So
                // wait for that chunk: a call that fails before writing any of
                // its body answers with its error (500, 504) instead.
                match body.frame().await {
                    Some(Ok(frame)) => body.first = Some(frame),
                    Some(Err(e)) => {
                        return Err(match e.downcast::<InvokeError>() {
                            Ok(e) => *e,
                            Err(e) => failed(e.to_string()),
                        });
                    }
                    None => {}
                }
                Ok(hyper::Response::from_parts(parts, body.boxed_unsync()))
            }
            Err(_) => match (&mut call).await {
                Ok(Err(e)) => Err(e),
                // `serve_http` fails when it sends nothing.
                Ok(Ok(())) => Err(failed(
                    "the component returned without setting a response".into(),
                )),
                Err(e) => Err(failed(format!("the call's task failed: {e}"))),
            },
        }
    }

    /// An admitted streamed HTTP call, as a future its caller drives: the
    /// component gets `request`, its response goes to `respond` as soon as it
    /// is set, and the future ends when `handle` returns. The response body
    /// must be read while the future is polled (the component waits for room
    /// to write), so a caller drives both side by side, as
    /// [`Actor::invoke_http`] does from a task of its own.
    ///
    /// # Errors
    /// As [`Actor::invoke_http`], and when the component fails after its
    /// response was set (its body is then cut short).
    pub fn http_call(
        self: Arc<Self>,
        admission: Admission,
        request: hyper::Request<HttpBody>,
        respond: tokio::sync::oneshot::Sender<hyper::Response<HttpBody>>,
        trace: TraceContext,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), InvokeError>> + Send + 'static {
        use lattice::contracts::httpserver::HANDLE_REQUEST;
        async move {
            let exchange = Box::new(component::HttpExchange { request, respond });
            self.run_admitted(
                admission,
                HANDLE_REQUEST,
                Input::Http(exchange),
                trace,
                deadline,
            )
            .await
            .map(drop)
        }
    }

    /// [`Actor::invoke_admitted`] for any [`Input`].
    async fn run_admitted(
        &self,
        admission: Admission,
        operation: &str,
        input: Input,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<Vec<u8>, InvokeError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // The host slot is held until the call is done.
        let Admission { _host, stage } = admission;
        let mut accounting = Accounting {
            actor: self,
            operation,
            began: Instant::now(),
            settled: false,
        };
        // The instance permit is given back only after the call is counted
        // (it outlives `account` below): a stop, which takes every permit,
        // then finds the counters final, and an update carries them over whole.
        let (result, _permit) = match self.instance_permit(stage, operation, deadline).await {
            Ok(permit) => (
                self.invoke_inner(operation, input, trace, deadline).await,
                Some(permit),
            ),
            Err(e) => (Err(e), None),
        };
        accounting.settled = true;
        self.account(
            operation,
            accounting.began.elapsed(),
            match &result {
                Ok(reply) => Ok(reply.len()),
                Err(e) => Err(e),
            },
        );
        result
    }

    /// Counts a finished call: its error if any, its time, its metrics, and
    /// the line `lattice dev` prints (LATTICE_LOG=lattice::call=debug; a
    /// disabled callsite costs a load).
    fn account(
        &self,
        operation: &str,
        took: Duration,
        outcome: Result<usize, &dyn std::fmt::Display>,
    ) {
        if outcome.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.call_ns.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(metrics) = &self.metrics {
            metrics.call(operation, took, outcome.is_ok());
        }
        match outcome {
            Ok(reply_bytes) => {
                tracing::debug!(target: "lattice::call", actor = %self.label, operation, took_us = took.as_micros() as u64, reply_bytes, "call")
            }
            Err(e) => {
                tracing::debug!(target: "lattice::call", actor = %self.label, operation, took_us = took.as_micros() as u64, error = %e, "call failed")
            }
        }
    }

    /// The error of a call past its deadline; `detail` says where it was.
    fn deadline_error(&self, operation: &str, detail: &str) -> InvokeError {
        InvokeError::Deadline {
            actor: self.id.to_string(),
            operation: operation.to_string(),
            deadline_ms: self.runtime.config().call_timeout.as_millis() as u64,
            detail: detail.to_string(),
        }
    }

    /// The instance permit of an admitted call: at once when it holds one,
    /// else once one is free (up to `deadline`).
    async fn instance_permit(
        &self,
        stage: Stage,
        operation: &str,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, InvokeError> {
        match stage {
            Stage::Running(permit) => Ok(permit),
            Stage::Queued(ticket) => {
                let waited =
                    tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
                drop(ticket);
                match waited {
                    Ok(Ok(p)) => Ok(p),
                    Ok(Err(_)) => Err(InvokeError::Stopped {
                        actor: self.id.to_string(),
                    }),
                    Err(_) => {
                        Err(self.deadline_error(operation, " while waiting for a free instance"))
                    }
                }
            }
        }
    }

    /// Runs a call that holds an instance permit.
    async fn invoke_inner(
        &self,
        operation: &str,
        input: Input,
        trace: TraceContext,
        deadline: Instant,
    ) -> Result<Vec<u8>, InvokeError> {
        let deadline_err = |detail: &str| self.deadline_error(operation, detail);
        self.last_used.store(now_ms(), Ordering::Relaxed);
        let warm = self.lock_warm().pop();
        let inst = match warm {
            Some(i) => i,
            None => Box::pin(self.instantiate()).await?,
        };
        // The epoch trap is the real deadline; the timer is a backstop for a guest
        // stuck in a host call, and a little later so the trap wins when both fire.
        let backstop = deadline + Duration::from_millis(250);
        let trapped = |err: wasmtime::Error, stderr: &StderrTail| {
            if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                return deadline_err("");
            }
            let mut message = format!("{}", err.root_cause());
            if let Some(tail) = stderr.get() {
                message.push_str(&format!(" (actor stderr: {tail})"));
            }
            tracing::warn!(actor = %self.id, operation, error = %message, "instance trapped; discarded");
            InvokeError::Trap {
                actor: self.id.to_string(),
                operation: operation.to_string(),
                message,
            }
        };
        let guest_err = |message: String| InvokeError::Guest {
            actor: self.id.to_string(),
            operation: operation.to_string(),
            message,
        };
        let (result, inst) = match inst {
            WarmInstance::Module {
                mut store,
                guest_call,
            } => {
                let Input::Payload(payload) = input else {
                    return Err(guest_err(
                        "a waPC module takes HTTP requests as HttpRequest payloads, not streamed"
                            .into(),
                    ));
                };
                let (op_len, msg_len) = (operation.len() as i32, payload.len() as i32);
                store.data_mut().stderr.clear();
                store.data_mut().call = Some(CallState::new(
                    operation.to_string(),
                    payload,
                    trace,
                    deadline,
                ));
                yield_until(&mut store, deadline);
                let outcome = tokio::time::timeout_at(
                    backstop,
                    guest_call.call_async(&mut store, (op_len, msg_len)),
                )
                .await;
                let code = match outcome {
                    Err(_) => return Err(deadline_err("")),
                    Ok(Err(err)) => return Err(trapped(err, &store.data().stderr)),
                    Ok(Ok(code)) => code,
                };
                let call = store.data_mut().call.take();
                let result = match (code, call) {
                    (1, Some(call)) => Ok(call.response.unwrap_or_default()),
                    (0, Some(call)) => Err(guest_err(call.guest_error.unwrap_or_else(|| {
                        "the actor reported an error without a message".into()
                    }))),
                    (other, _) => Err(guest_err(format!(
                        "__guest_call returned {other}; the waPC ABI allows only 1 (ok) or 0 (error)"
                    ))),
                };
                (result, WarmInstance::Module { store, guest_call })
            }
            WarmInstance::Component {
                mut store,
                instance,
            } => {
                let data = store.data_mut();
                data.stderr.clear();
                data.trace = trace;
                data.deadline = deadline;
                yield_until(&mut store, deadline);
                let call = Box::pin(async {
                    match input {
                        Input::Payload(payload) => {
                            instance.call(&mut store, operation, &payload).await
                        }
                        Input::Http(exchange) => instance
                            .serve_http(&mut store, *exchange)
                            .await
                            .map(|()| Vec::new()),
                    }
                });
                let outcome = tokio::time::timeout_at(backstop, call).await;
                // Only a whole answer (or the handler's own error) leaves the
                // instance in a known state; after anything else (a body half
                // read, a handler still running) it is not reused.
                let result = match outcome {
                    Err(_) => return Err(deadline_err("")),
                    Ok(Err(CallError::Trap(err))) => {
                        return Err(trapped(err, &store.data().stderr));
                    }
                    Ok(Err(CallError::BadRequest(m))) => {
                        return Err(guest_err(format!("bad request: {m}")));
                    }
                    Ok(Err(CallError::BadResponse(m))) => return Err(guest_err(m)),
                    Ok(Err(CallError::Failed(m) | CallError::Unsupported(m))) => Err(guest_err(m)),
                    Ok(Ok(reply)) => Ok(reply),
                };
                if !self.runtime.config().reuse_component_instances {
                    // A fresh instance per request: this one goes (its pool
                    // slot is free again once the store drops).
                    return result;
                }
                (result, WarmInstance::Component { store, instance })
            }
        };
        self.last_used.store(now_ms(), Ordering::Relaxed);
        self.lock_warm().push(inst);
        result
    }

    /// Creates a fresh instance from the `InstancePre` (running the guest's init
    /// functions) and drops it: what a cold call pays. For benchmarks.
    ///
    /// # Errors
    /// [`InvokeError::Instantiate`] when instantiation or init fails.
    pub async fn instantiate_cold(&self) -> Result<(), InvokeError> {
        self.instantiate().await.map(drop)
    }

    async fn instantiate(&self) -> Result<WarmInstance, InvokeError> {
        let fail = |reason: String| InvokeError::Instantiate {
            actor: self.id.to_string(),
            reason,
        };
        let cfg = self.runtime.config();
        let stderr = StderrTail::default();
        // A builder makes one context; a retry below needs a new one.
        let wasi_ctx = || {
            let mut wasi = WasiCtxBuilder::new();
            wasi.stdout(LogStream::new(self.label.clone(), Stdio::Stdout, None))
                .stderr(LogStream::new(
                    self.label.clone(),
                    Stdio::Stderr,
                    Some(stderr.clone()),
                ))
                .arg(self.id.as_str())
                // No sockets: a contract grants network access, not WASI.
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
            for (k, v) in cfg.actor_env.iter().chain(self.config.iter()) {
                wasi.env(k, v);
            }
            wasi
        };
        let limiter = || MemoryLimiter {
            max_bytes: cfg.max_memory_bytes(),
            max_table_elements: super::validate::MAX_TABLE_ELEMENTS,
            used: 0,
        };
        // The epoch bounds a start function only while it runs wasm; one
        // waiting in a host call is bounded here.
        let init_bound = INIT_TIMEOUT + Duration::from_millis(250);
        let timed_out = || format!("instantiation did not finish within {INIT_TIMEOUT:?}");
        let pre = match &self.pre {
            Prepared::Module(pre) => pre,
            Prepared::Component(pre) => {
                let mut evicted = 0u32;
                return loop {
                    let data = ComponentData::new(
                        self.label.clone(),
                        wasi_ctx().build(),
                        limiter(),
                        stderr.clone(),
                        self.router.clone(),
                    );
                    let mut store = Store::new(self.runtime.engine(), data);
                    store.limiter(|d| &mut d.limiter);
                    yield_until(&mut store, Instant::now() + INIT_TIMEOUT);
                    match tokio::time::timeout(init_bound, pre.instantiate(&mut store)).await {
                        Err(_) => return Err(fail(timed_out())),
                        Ok(Ok(instance)) => break Ok(WarmInstance::Component { store, instance }),
                        Ok(Err(e)) => self.make_room(e, &mut evicted).map_err(fail)?,
                    }
                };
            }
        };
        // The pooling allocator has a fixed number of slots: when they are all
        // taken, an idle instance of the least recently used actor is given
        // back and the instantiation tried again, so the number of actors is
        // bounded by memory, not by slots.
        let mut evicted = 0u32;
        let (mut store, instance) = loop {
            let data = StoreData {
                wasi: wasi_ctx().build_p1(),
                limiter: limiter(),
                actor: self.label.clone(),
                router: self.router.clone(),
                stderr: stderr.clone(),
                call: None,
            };
            let mut store = Store::new(self.runtime.engine(), data);
            store.limiter(|d| &mut d.limiter);
            yield_until(&mut store, Instant::now() + INIT_TIMEOUT);
            match tokio::time::timeout(init_bound, pre.instantiate_async(&mut store)).await {
                Err(_) => return Err(fail(timed_out())),
                Ok(Ok(instance)) => break (store, instance),
                Ok(Err(e)) => self.make_room(e, &mut evicted).map_err(fail)?,
            }
        };
        // Reactors (Go c-shared, C, Rust cdylib) initialise their runtime in
        // `_initialize`; waPC guests then register handlers in `wapc_init`, or in
        // `main` for TinyGo-style commands.
        for name in ["_initialize", "wapc_init", "_start"] {
            if name == "_start" && instance.get_export(&mut store, "wapc_init").is_some() {
                break;
            }
            let Ok(f) = instance.get_typed_func::<(), ()>(&mut store, name) else {
                continue;
            };
            if let Err(e) = f.call_async(&mut store, ()).await {
                let clean_exit = matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0)));
                if !clean_exit {
                    let mut msg = format!("`{name}` failed: {}", e.root_cause());
                    if let Some(tail) = stderr.get() {
                        msg.push_str(&format!(" (actor stderr: {tail})"));
                    }
                    return Err(fail(msg));
                }
            }
        }
        let guest_call = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "__guest_call")
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(WarmInstance::Module { store, guest_call })
    }

    /// After a failed instantiation: when the pooling allocator was full,
    /// gives back an idle instance of another actor so the caller can try
    /// again (`Ok`); otherwise the reason to fail with.
    fn make_room(&self, e: wasmtime::Error, evicted: &mut u32) -> Result<(), String> {
        let full = e
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some();
        if !full || *evicted >= MAX_EVICTIONS_PER_INSTANCE {
            return Err(format!("{e:#}"));
        }
        if !self.runtime.give_back_idle_instance(self) {
            return Err(format!(
                "{e:#}: every instance slot of this host is in use by a call in flight \
                 (raise max_instances); retry later"
            ));
        }
        *evicted += 1;
        Ok(())
    }

    /// When this actor last used an instance (see [`Actor::give_back_instance`]).
    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Drops one warm (idle) instance, freeing its pooling-allocator slot;
    /// `false` when the actor has none idle. The next call creates one again.
    pub(crate) fn give_back_instance(&self) -> bool {
        let dropped = self.lock_warm().pop();
        dropped.is_some()
    }

    /// Drops every warm instance when the actor has not used one for `idle`;
    /// returns how many were dropped.
    pub(crate) fn trim_if_idle(&self, idle: Duration) -> usize {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        if now_ms().saturating_sub(self.last_used()) < idle_ms {
            return 0;
        }
        // Dropped outside the lock: freeing a store unmaps its memory.
        let dropped = std::mem::take(&mut *self.lock_warm());
        dropped.len()
    }

    fn lock_warm(&self) -> std::sync::MutexGuard<'_, Vec<WarmInstance>> {
        self.warm.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a call hands the guest.
enum Input {
    /// A msgpack payload: every call to a module; a component's
    /// `lattice:actor/handler` call or whole-message HTTP request.
    Payload(Vec<u8>),
    /// A streamed HTTP request for a `wasi:http` component.
    Http(Box<component::HttpExchange>),
}

/// The task of a streamed call.
type CallTask = tokio::task::JoinHandle<Result<(), InvokeError>>;

/// A call's task, aborted when dropped before its response is set (the
/// caller gave up). Once the response is out the task runs on ([`disarm`]):
/// a server drops a body as soon as it has sent what the headers promised,
/// and `handle` may still have work to do; a task whose client is gone ends
/// when its next write fails, or at the deadline.
///
/// [`disarm`]: AbortOnDrop::disarm
struct AbortOnDrop(Option<CallTask>);

impl AbortOnDrop {
    fn disarm(mut self) -> CallTask {
        self.0.take().expect("armed until disarmed")
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Future for AbortOnDrop {
    type Output = Result<Result<(), InvokeError>, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            Some(task) => Pin::new(task).poll(cx),
            None => Poll::Pending,
        }
    }
}

/// A streamed response body that ends the way its call ended.
struct CallBody {
    body: HttpBody,
    /// A chunk read ahead, sent before the rest.
    first: Option<http_body::Frame<bytes::Bytes>>,
    /// The call, until it has ended well.
    call: Option<CallTask>,
    /// Set when `handle` returned while the body was still open: a guest
    /// that keeps its body open in a reused instance must not hold the
    /// response open past the call's deadline.
    open_past_return: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: Instant,
}

impl http_body::Body for CallBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            if frame.is_some() {
                return Poll::Ready(frame);
            }
            // The body's sender is gone: whole only if the call went well.
            return match this.call.as_mut() {
                None => Poll::Ready(None),
                Some(call) => {
                    let ended = ready!(Pin::new(call).poll(cx));
                    this.call = None;
                    Poll::Ready(call_failure(ended).map(Err))
                }
            };
        }
        if let Some(call) = this.call.as_mut() {
            let ended = ready!(Pin::new(call).poll(cx));
            this.call = None;
            if let Some(failure) = call_failure(ended) {
                return Poll::Ready(Some(Err(failure)));
            }
            this.open_past_return = Some(Box::pin(tokio::time::sleep_until(this.deadline)));
        }
        if let Some(cutoff) = this.open_past_return.as_mut() {
            ready!(cutoff.as_mut().poll(cx));
            this.open_past_return = None;
            return Poll::Ready(Some(Err(
                "the component returned with its response body unfinished".into(),
            )));
        }
        Poll::Pending
    }
}

/// Why a streamed call failed, if it did.
fn call_failure(
    ended: Result<Result<(), InvokeError>, tokio::task::JoinError>,
) -> Option<BoxError> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.into()),
        Err(e) => Some(e.into()),
    }
}

/// A call being run, counted when it ends: by [`Actor::account`] when it
/// returns, or here when it is dropped unfinished (given up because its
/// caller went away), as a failure with the time it had run, so the errors,
/// the latency sum and the metrics hold every call that started.
struct Accounting<'a> {
    actor: &'a Actor,
    operation: &'a str,
    began: Instant,
    settled: bool,
}

impl Drop for Accounting<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let why = "given up before it ended: its caller went away";
            self.actor
                .account(self.operation, self.began.elapsed(), Err(&why));
        }
    }
}
