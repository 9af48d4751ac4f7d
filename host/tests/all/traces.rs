//! `--otlp-endpoint`: spans exported over OTLP/HTTP by the CLI and by two host
//! processes, received by a collector the test runs, form one connected trace
//! for one call that crosses both hosts.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use lattice_harness::{HostProcess, wait_until};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value,
};
use prost::Message;

use crate::common::{BIN, TestLattice, actor_wasm};

const WAIT: Duration = Duration::from_secs(30);

/// One received span, reduced to what the test checks.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    service: String,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/HTTP trace receiver on a free port of 127.0.0.1: every
/// `POST /v1/traces` body is decoded and its spans kept.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let status = receive(req, &kept).await;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .expect("a valid response"),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Collector { url, spans })
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

async fn receive(req: Request<hyper::body::Incoming>, kept: &Mutex<Vec<Span>>) -> u16 {
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return 404;
    }
    let Ok(body) = req.into_body().collect().await else {
        return 400;
    };
    let export = match ExportTraceServiceRequest::decode(body.to_bytes()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("collector: undecodable export: {e}");
            return 400;
        }
    };
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    let mut out = kept.lock().expect("not poisoned");
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for s in scope.spans {
                out.push(Span {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    name: s.name,
                    service: service.clone(),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                });
            }
        }
    }
    200
}

/// The CLI calls `probe` on host A, which calls `hello` on host B: the
/// collector receives the CLI's `call` span (the root), A's `serve` span as
/// its child, the probe's `host_call` span under that, and B's `serve` span
/// under the host call, all in one trace.
#[tokio::test(flavor = "multi_thread")]
async fn one_call_across_two_hosts_is_one_connected_trace() -> Result<()> {
    let collector = Collector::start().await?;
    let t = TestLattice::start().await?;
    let opts = |name: &str| {
        t.host_options(name, &[("--otlp-endpoint", collector.url.as_str())])
            // Export within 100 ms instead of the SDK's 5 s.
            .env_var("OTEL_BSP_SCHEDULE_DELAY", "100")
    };
    let a = HostProcess::spawn(BIN, &opts("trace-a")).await?;
    let b = HostProcess::spawn(BIN, &opts("trace-b")).await?;
    t.start_actor(&a, &actor_wasm("probe-actor")?, "probe", 1)
        .await?;
    t.start_actor(&b, &actor_wasm("hello")?, "hello", 1).await?;

    // msgpack of "traces" is a1 + the bytes: the probe passes it through.
    let call = r#"{"target":"hello","operation":"SayHello","payload":[166,116,114,97,99,101,115]}"#;
    let out = t
        .cli(&[
            "--otlp-endpoint",
            &collector.url,
            "call",
            "probe",
            "Call",
            call,
        ])
        .await?
        .success()?;
    ensure!(out.stdout.contains("Hello, traces!"), "{}", out.stdout);

    let (root, on_a, on_b) = wait_until("the three spans of the call", WAIT, || {
        let spans = collector.spans();
        async move {
            let Some(root) = spans
                .iter()
                .find(|s| s.service == "lattice-cli" && s.name == "call")
            else {
                return Ok(None);
            };
            let in_trace = |target: &str| {
                spans.iter().find(|s| {
                    s.trace_id == root.trace_id
                        && s.name == "serve"
                        && s.attributes
                            .get("target")
                            .is_some_and(|t| t.contains(target))
                })
            };
            Ok(
                match (
                    in_trace("actor probe on host trace-a"),
                    in_trace("actor hello on host trace-b"),
                ) {
                    (Some(a), Some(b)) => Some((root.clone(), a.clone(), b.clone())),
                    _ => None,
                },
            )
        }
    })
    .await
    .with_context(|| format!("spans received: {:#?}", collector.spans()))?;
    ensure!(
        root.parent_span_id.is_empty(),
        "the CLI's span is the root: {root:?}"
    );
    ensure!(
        on_a.parent_span_id == root.span_id && on_a.service == "lattice-host",
        "host A's span is the child of the CLI's: {on_a:?} (root {root:?})"
    );
    // Between them, the probe's host call on host A.
    let spans = collector.spans();
    let hop = spans
        .iter()
        .find(|s| s.span_id == on_b.parent_span_id)
        .with_context(|| format!("the parent of host B's span: {spans:#?}"))?;
    ensure!(
        hop.name == "host_call"
            && hop.parent_span_id == on_a.span_id
            && hop.trace_id == root.trace_id
            && hop.attributes.get("namespace").map(String::as_str) == Some("hello"),
        "host B's span is the child of the probe's host call on host A: {hop:?} (A {on_a:?})"
    );
    ensure!(
        on_a.attributes.get("operation").map(String::as_str) == Some("Call")
            && on_b.attributes.get("operation").map(String::as_str) == Some("SayHello"),
        "{on_a:?} {on_b:?}"
    );
    Ok(())
}

/// An endpoint the exporter cannot use is refused at start, named, with the
/// flag that sets it; an unreachable collector is not an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_endpoint_is_refused_and_an_absent_collector_is_not_an_error() -> Result<()> {
    let t = TestLattice::start().await?;
    for bad in ["https://collector:4318", "not a url", "http://bad host:1"] {
        let out = t
            .cli(&["--otlp-endpoint", bad, "ctl", "get", "hosts"])
            .await?
            .failure()?;
        out.stderr_has(&["invalid OTLP endpoint", bad, "--otlp-endpoint"])?;
    }
    // Nothing listens there: the command works, the spans are dropped.
    let port = lattice_harness::free_port();
    let nobody = format!("http://127.0.0.1:{port}");
    t.cli(&["--otlp-endpoint", &nobody, "ctl", "get", "hosts"])
        .await?
        .success()?;
    Ok(())
}
