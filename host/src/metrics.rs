//! Prometheus metrics of one host, served on `/metrics` when the host is
//! started with a metrics address (`lattice up --metrics-addr`).
//!
//! Counters and histograms are updated where the work happens (an actor call,
//! a contract call through a link, an HTTP request of the in-host HTTP
//! provider, a reconcile pass); gauges that describe state (replicas, warm
//! instances, pool slots, NATS connects) are read from the host when scraped,
//! so they cannot drift. Names and labels are listed in
//! `docs/observability.md`.
//!
//! A host started without a metrics address has no [`Metrics`] at all, so the
//! call path pays nothing for them.
//!
//! ```
//! use lattice_host::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! let hello = metrics.actor_call("hello");
//! hello.call("SayHello", std::time::Duration::from_micros(40), true);
//! assert!(metrics.encode().contains(r#"lattice_actor_calls_total{actor="hello",operation="SayHello"} 1"#));
//! ```

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, text::encode},
    metrics::{MetricType, TypedMetric, counter::Counter, family::Family, gauge::Gauge},
    registry::{Metric, Registry},
};

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which
/// Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    actor: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    actor: Arc<str>,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    actor: String,
    contract: String,
    link: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// Upper bounds of the latency buckets in nanoseconds: 10 µs × 4^k, k = 0..10,
/// so 10 µs to about 10 s. Calls in-process take microseconds, calls across
/// hosts and HTTP requests milliseconds.
const BOUNDS_NS: [u64; 11] = {
    let mut bounds = [0; 11];
    let (mut i, mut bound) = (0, 10_000);
    while i < bounds.len() {
        bounds[i] = bound;
        bound *= 4;
        i += 1;
    }
    bounds
};

/// A latency histogram updated with two atomic additions and no lock.
///
/// prometheus-client's own `Histogram` takes a mutex per observation, which
/// (with the per-call label lookups it needs) cost an in-process call at 16 in
/// flight on 2 cores 14 % of its calls/s in `scripts/bench.sh`.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    inner: Arc<LatencyBuckets>,
}

#[derive(Debug, Default)]
struct LatencyBuckets {
    /// Observations per bucket (not cumulative); the last is +Inf.
    counts: [AtomicU64; BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let bounds = BOUNDS_NS
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.inner.counts)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so a scrape during updates stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

struct Inner {
    registry: Registry,
    actor_calls: Family<OperationLabels, Counter>,
    actor_errors: Family<OperationLabels, Counter>,
    actor_duration: Family<ActorLabels, LatencyHistogram>,
    actor_in_flight: Family<ActorLabels, Gauge>,
    actor_refused: Family<ActorLabels, Counter>,
    actor_warm: Family<ActorLabels, Gauge>,
    actor_replicas: Family<ActorLabels, Gauge>,
    link_calls: Family<LinkLabels, Counter>,
    link_errors: Family<LinkLabels, Counter>,
    http_requests: Family<StatusLabels, Counter>,
    http_duration: LatencyHistogram,
    host_replicas: Gauge,
    host_calls_in_flight: Gauge,
    pool_slots_in_use: Gauge,
    pool_slots: Gauge,
    nats_reconnects: Counter,
    /// Connects seen at the last scrape, so reconnects count only new ones.
    nats_connects_seen: AtomicU64,
    reconciler_leader: Gauge,
    reconciler_passes: Counter,
    /// One scrape refreshes the state gauges at a time.
    refresh: Mutex<()>,
}

/// A new metric, registered in `r` under `name` (prefixed `lattice_`).
fn registered<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    r.register(name, help, metric.clone());
    metric
}

/// The metrics of one host. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family of `docs/observability.md`, all empty.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("lattice");
        let inner = Inner {
            actor_calls: registered(
                &mut r,
                "actor_calls",
                "Calls into an actor on this host, by operation",
            ),
            actor_errors: registered(
                &mut r,
                "actor_errors",
                "Calls into an actor on this host that failed (guest error, trap, deadline, busy while queued)",
            ),
            actor_duration: registered(
                &mut r,
                "actor_call_duration_seconds",
                "Time from admitting a call to its result, queueing included",
            ),
            actor_refused: registered(
                &mut r,
                "actor_refused",
                "Calls refused at once, before their operation was read: the actor or the host was busy, or the actor stopping",
            ),
            actor_in_flight: registered(
                &mut r,
                "actor_calls_in_flight",
                "Calls into an actor running or queued now",
            ),
            actor_warm: registered(
                &mut r,
                "actor_warm_instances",
                "Instantiated, idle instances of an actor ready for the next call",
            ),
            actor_replicas: registered(
                &mut r,
                "actor_replicas",
                "Replicas of an actor on this host",
            ),
            link_calls: registered(
                &mut r,
                "link_calls",
                "Contract calls from actors on this host through a link to a provider",
            ),
            link_errors: registered(
                &mut r,
                "link_errors",
                "Contract calls through a link that failed",
            ),
            http_requests: registered(
                &mut r,
                "http_requests",
                "Requests answered by the in-host HTTP server provider, by status",
            ),
            http_duration: registered(
                &mut r,
                "http_request_duration_seconds",
                "Time from a request's head to the response of the in-host HTTP server provider",
            ),
            host_replicas: registered(
                &mut r,
                "host_replicas",
                "Actor replicas on this host, all actors",
            ),
            host_calls_in_flight: registered(
                &mut r,
                "host_calls_in_flight",
                "Calls running or queued on this host, all actors (bounded by max-calls-per-host)",
            ),
            pool_slots_in_use: registered(
                &mut r,
                "pool_slots_in_use",
                "Instance slots of the pooling allocator holding an instance",
            ),
            pool_slots: registered(
                &mut r,
                "pool_slots",
                "Instance slots of the pooling allocator (max-instances)",
            ),
            nats_reconnects: registered(
                &mut r,
                "nats_reconnects",
                "Times the host's NATS connection was re-established",
            ),
            reconciler_leader: registered(
                &mut r,
                "reconciler_leader",
                "1 while this host holds the reconciler lease, else 0",
            ),
            reconciler_passes: registered(
                &mut r,
                "reconciler_passes",
                "Reconcile passes this host ran as leader",
            ),
            nats_connects_seen: AtomicU64::new(1),
            refresh: Mutex::new(()),
            // Last: every field above registers its metric in `r` first.
            registry: r,
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// The handles one actor's calls update, looked up once per actor so a
    /// call touches its own counters without a registry lookup for them.
    pub fn actor_call(&self, actor: &str) -> ActorCallMetrics {
        let labels = ActorLabels {
            actor: actor.into(),
        };
        ActorCallMetrics {
            duration: self.inner.actor_duration.get_or_create_owned(&labels),
            refused: self.inner.actor_refused.get_or_create_owned(&labels),
            actor: labels.actor,
            operations: Default::default(),
            metrics: self.clone(),
        }
    }

    /// Counts one contract call from `actor` through a link, and its failure.
    pub fn link_call(&self, actor: &str, contract: &str, link: &str, provider: &str, ok: bool) {
        let labels = LinkLabels {
            actor: actor.to_string(),
            contract: contract.to_string(),
            link: link.to_string(),
            provider: provider.to_string(),
        };
        self.inner.link_calls.get_or_create(&labels).inc();
        if !ok {
            self.inner.link_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts one HTTP response of the in-host HTTP server provider.
    pub fn http_request(&self, status: u16, took: Duration) {
        self.inner
            .http_requests
            .get_or_create(&StatusLabels { status })
            .inc();
        self.inner.http_duration.observe(took);
    }

    /// Records whether this host holds the reconciler lease now.
    pub fn reconciler_leading(&self, leading: bool) {
        self.inner.reconciler_leader.set(i64::from(leading));
    }

    /// Counts one reconcile pass.
    pub fn reconcile_pass(&self) {
        self.inner.reconciler_passes.inc();
    }

    /// Sets the gauges that describe the host's state; called on each scrape.
    pub(crate) fn refresh(&self, state: &HostState) {
        let _one = self.inner.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let i = &self.inner;
        // Actors stopped since the last scrape must vanish from the gauges.
        i.actor_warm.clear();
        i.actor_replicas.clear();
        i.actor_in_flight.clear();
        let mut replicas = 0i64;
        for a in &state.actors {
            let labels = ActorLabels {
                actor: a.id.as_str().into(),
            };
            i.actor_warm
                .get_or_create(&labels)
                .set(a.warm_instances as i64);
            i.actor_replicas
                .get_or_create(&labels)
                .set(i64::from(a.replicas));
            i.actor_in_flight
                .get_or_create(&labels)
                .set(i64::from(a.in_flight));
            replicas += i64::from(a.replicas);
        }
        i.host_replicas.set(replicas);
        i.host_calls_in_flight.set(i64::from(state.calls_in_flight));
        i.pool_slots_in_use.set(state.slots_in_use as i64);
        i.pool_slots.set(i64::from(state.slots));
        let connects = state.nats_connects.max(1);
        let seen = i.nats_connects_seen.swap(connects, Ordering::Relaxed);
        if connects > seen {
            i.nats_reconnects.inc_by(connects - seen);
        }
    }

    /// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

/// What a scrape reads from the host for the state gauges.
pub(crate) struct HostState {
    pub actors: Vec<ActorState>,
    pub calls_in_flight: u32,
    pub slots_in_use: usize,
    pub slots: u32,
    pub nats_connects: u64,
}

/// Distinct operation names counted per actor. Operation names come from
/// callers, so without a bound a caller could add series (and memory) without
/// end by calling made-up operations; past it, calls count under
/// [`OTHER_OPERATIONS`].
pub const MAX_OPERATIONS_PER_ACTOR: usize = 64;

/// The `operation` label of calls past [`MAX_OPERATIONS_PER_ACTOR`].
pub const OTHER_OPERATIONS: &str = "other";

/// One actor's state, read when scraped.
pub(crate) struct ActorState {
    pub id: lattice::id::ActorId,
    pub replicas: u32,
    pub warm_instances: usize,
    /// Calls running or waiting for an instance.
    pub in_flight: u32,
}

/// The metrics of one actor's calls (see [`Metrics::actor_call`]).
pub struct ActorCallMetrics {
    actor: Arc<str>,
    duration: LatencyHistogram,
    refused: Counter,
    /// Calls and errors by operation: the registry's counters, found once
    /// per operation so a call neither builds labels nor takes the family's lock.
    operations: RwLock<HashMap<Box<str>, (Counter, Counter)>>,
    metrics: Metrics,
}

impl ActorCallMetrics {
    /// Counts one call (and its failure) by operation and observes how long
    /// it took.
    pub fn call(&self, operation: &str, took: Duration, ok: bool) {
        self.duration.observe(took);
        let known = self
            .operations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(operation)
            .cloned();
        let (calls, errors) = known.unwrap_or_else(|| self.operation(operation));
        calls.inc();
        if !ok {
            errors.inc();
        }
    }

    /// Counts one call refused before it was read (busy, stopping).
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// The counters of an operation not seen before: its own up to
    /// [`MAX_OPERATIONS_PER_ACTOR`], then those of `operation="other"`.
    #[cold]
    fn operation(&self, operation: &str) -> (Counter, Counter) {
        let mut known = self.operations.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pair) = known.get(operation) {
            return pair.clone();
        }
        let full = known.len() >= MAX_OPERATIONS_PER_ACTOR;
        let labels = OperationLabels {
            actor: self.actor.clone(),
            operation: if full { OTHER_OPERATIONS } else { operation }.to_string(),
        };
        let pair = (
            self.metrics.inner.actor_calls.get_or_create_owned(&labels),
            self.metrics.inner.actor_errors.get_or_create_owned(&labels),
        );
        if !full {
            known.insert(operation.into(), pair.clone());
        }
        pair
    }
}

/// Binds the metrics listener, so a taken address fails the host's start;
/// returns it with the address bound (the port chosen for port 0).
///
/// # Errors
/// The bind error, naming the address.
pub(crate) async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), std::io::Error> {
    let named = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("cannot serve metrics on {addr} (--metrics-addr): {e}"),
        )
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(named)?;
    let bound = listener.local_addr().map_err(named)?;
    Ok((listener, bound))
}

/// Serves `GET /metrics` on `listener` until the returned task is aborted;
/// `scrape` gives the text of each answer.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    scrape: impl Fn() -> String + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    use http_body_util::Full;
    use hyper::{Response, StatusCode, body::Bytes, header, service::service_fn};

    let scrape = Arc::new(scrape);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = (req.uri().path() == "/metrics").then(|| scrape());
                        async move {
                            match body {
                                Some(text) => Response::builder()
                                    .header(header::CONTENT_TYPE, CONTENT_TYPE)
                                    .body(Full::new(Bytes::from(text))),
                                None => Response::builder().status(StatusCode::NOT_FOUND).body(
                                    Full::new(Bytes::from_static(
                                        b"not found: metrics are served on /metrics\n",
                                    )),
                                ),
                            }
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                // A scraper that stops sending cannot hold a connection forever.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(io, service)
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        let hello = m.actor_call("hello");
        hello.call("SayHello", Duration::from_micros(50), false);
        hello.call("SayHello", Duration::from_millis(3), true);
        m.link_call("hello", "lattice:keyvalue", "default", "kv", true);
        m.http_request(200, Duration::from_millis(1));
        m.reconcile_pass();
        let text = m.encode();
        for line in [
            r#"lattice_actor_calls_total{actor="hello",operation="SayHello"} 2"#,
            r#"lattice_actor_errors_total{actor="hello",operation="SayHello"} 1"#,
            r#"lattice_actor_call_duration_seconds_count{actor="hello"} 2"#,
            r#"lattice_actor_call_duration_seconds_sum{actor="hello"} 0.00305"#,
            r#"lattice_actor_call_duration_seconds_bucket{le="0.00001",actor="hello"} 0"#,
            r#"lattice_actor_call_duration_seconds_bucket{le="0.00016",actor="hello"} 1"#,
            r#"lattice_actor_call_duration_seconds_bucket{le="0.00256",actor="hello"} 1"#,
            r#"lattice_actor_call_duration_seconds_bucket{le="0.01024",actor="hello"} 2"#,
            r#"lattice_actor_call_duration_seconds_bucket{le="+Inf",actor="hello"} 2"#,
            r#"lattice_link_calls_total{actor="hello",contract="lattice:keyvalue",link="default",provider="kv"} 1"#,
            r#"lattice_http_requests_total{status="200"} 1"#,
            "lattice_http_request_duration_seconds_count 1",
            "lattice_reconciler_passes_total 1",
            "# TYPE lattice_nats_reconnects counter",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn operations_past_the_bound_count_as_other() {
        let m = Metrics::new();
        let probe = m.actor_call("probe");
        for i in 0..MAX_OPERATIONS_PER_ACTOR + 6 {
            probe.call(&format!("Op{i}"), Duration::from_micros(5), true);
        }
        probe.call("Op0", Duration::from_micros(5), true);
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("lattice_actor_calls_total{"))
            .count();
        assert_eq!(series, MAX_OPERATIONS_PER_ACTOR + 1, "{text}");
        assert!(
            text.contains(r#"lattice_actor_calls_total{actor="probe",operation="other"} 6"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lattice_actor_calls_total{actor="probe",operation="Op0"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_stopped_actor_leaves_the_state_gauges() {
        let m = Metrics::new();
        let actor = |id: &str| ActorState {
            id: lattice::id::ActorId::new(id).unwrap(),
            replicas: 2,
            warm_instances: 1,
            in_flight: 3,
        };
        let state = |actors| HostState {
            actors,
            calls_in_flight: 0,
            slots_in_use: 1,
            slots: 1000,
            nats_connects: 3,
        };
        m.refresh(&state(vec![actor("a"), actor("b")]));
        let text = m.encode();
        assert!(
            text.contains(r#"lattice_actor_replicas{actor="b"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lattice_actor_calls_in_flight{actor="b"} 3"#),
            "{text}"
        );
        assert!(text.contains("lattice_host_replicas 4"), "{text}");
        assert!(text.contains("lattice_nats_reconnects_total 2"), "{text}");
        m.refresh(&state(vec![actor("a")]));
        let text = m.encode();
        assert!(!text.contains(r#"actor="b""#), "{text}");
        assert!(text.contains("lattice_nats_reconnects_total 2"), "{text}");
    }
}
