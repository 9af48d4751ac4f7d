//! `--otlp-endpoint`: spans exported over OTLP/HTTP by the CLI and by two host
//! processes, received by a collector the test runs, form one connected trace
//! for one call that crosses both hosts; an `https://` collector is reached
//! with the CA given by `--otlp-certificate` or `OTEL_EXPORTER_OTLP_CERTIFICATE`;
//! spans dropped on a full export queue are said.

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
    /// OTLP's span kind: 2 server, 3 client.
    kind: i32,
    /// The error status's message, when the span has one.
    error: Option<String>,
}

/// An OTLP/HTTP trace receiver on a free port of 127.0.0.1: every
/// `POST /v1/traces` body is decoded and its spans kept.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    /// With `tls`, the collector speaks only HTTPS.
    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, tls) = (kept.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, kept).await,
                        // A client that does not trust the certificate
                        // ends the handshake: nothing is received.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve_connection(stream, kept).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Collector { url, spans })
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

/// Answers the OTLP requests of one connection.
async fn serve_connection<IO>(io: IO, kept: Arc<Mutex<Vec<Span>>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
        .serve_connection(TokioIo::new(io), service)
        .await;
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
                    kind: s.kind,
                    // Code 2 is "error".
                    error: s.status.filter(|st| st.code == 2).map(|st| st.message),
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

    let call_probe = async |request: &str| {
        t.cli(&[
            "--otlp-endpoint",
            &collector.url,
            "call",
            "probe",
            "Call",
            request,
        ])
        .await
    };
    // msgpack of "traces" is a1 + the bytes: the probe passes it through.
    let call = r#"{"target":"hello","operation":"SayHello","payload":[166,116,114,97,99,101,115]}"#;
    let out = call_probe(call).await?.success()?;
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
    // Callers are clients, servers servers; nothing failed.
    ensure!(
        (root.kind, hop.kind, on_a.kind, on_b.kind) == (3, 3, 2, 2),
        "span kinds: call {}, host_call {}, serve {} and {}",
        root.kind,
        hop.kind,
        on_a.kind,
        on_b.kind
    );
    ensure!(
        [&root, hop, &on_a, &on_b].iter().all(|s| s.error.is_none()),
        "no span of a successful call has an error status: {spans:#?}"
    );

    // A call the probe cannot make: its host call's span says why.
    let bad = r#"{"target":"nobody","operation":"SayHello","payload":[]}"#;
    let out = call_probe(bad).await?;
    ensure!(
        !out.status.success(),
        "calling nobody failed: {}",
        out.stdout
    );
    let failed = wait_until("the failed host call's span", WAIT, || {
        let spans = collector.spans();
        async move {
            Ok(spans
                .iter()
                .find(|s| {
                    s.name == "host_call"
                        && s.attributes.get("namespace").map(String::as_str) == Some("nobody")
                })
                .cloned())
        }
    })
    .await
    .with_context(|| format!("spans received: {:#?}", collector.spans()))?;
    ensure!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("nobody")),
        "the failed host call has an error status naming its target: {failed:?}"
    );
    // Only Lattice's spans: no span per WASI call of the actors, say.
    let names: std::collections::BTreeSet<String> =
        collector.spans().into_iter().map(|s| s.name).collect();
    ensure!(
        names
            .iter()
            .all(|n| ["call", "serve", "host_call", "ctl"].contains(&n.as_str())),
        "spans of other names were exported: {names:?}"
    );
    Ok(())
}

/// An endpoint the exporter cannot use is refused at start, named, with the
/// flag that sets it; an unreachable collector is not an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_endpoint_is_refused_and_an_absent_collector_is_not_an_error() -> Result<()> {
    let t = TestLattice::start().await?;
    for bad in ["ftp://collector:4318", "not a url", "http://bad host:1"] {
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

/// Spans the SDK drops because its export queue is full are said in the
/// host's log, once, while calls go on being answered. Here the queue holds
/// one span (`OTEL_BSP_MAX_QUEUE_SIZE`) and the collector takes connections
/// and never answers, so the first export holds the exporter up.
#[tokio::test(flavor = "multi_thread")]
async fn spans_dropped_on_a_full_export_queue_are_said() -> Result<()> {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", silent.local_addr()?);
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let t = TestLattice::start().await?;
    let opts = t
        .host_options("drops", &[("--otlp-endpoint", url.as_str())])
        .env_var("OTEL_BSP_MAX_QUEUE_SIZE", "1");
    let host = HostProcess::spawn(BIN, &opts).await?;
    t.start_actor(&host, &actor_wasm("hello")?, "hello", 1)
        .await?;
    // Three spans or more (the start's, one per call): one exported (held
    // up), one queued, the rest dropped.
    for name in ["one", "two", "three"] {
        let out = t
            .cli(&["call", "hello", "SayHello", &format!("{name:?}")])
            .await?
            .success()?;
        ensure!(
            out.stdout.contains(&format!("Hello, {name}!")),
            "{}",
            out.stdout
        );
    }
    const DROPPED: &str = "dropped a Span due to queue full";
    wait_until("the host to say spans were dropped", WAIT, || {
        let said = host.log().contains(DROPPED);
        async move { Ok(said.then_some(())) }
    })
    .await
    .with_context(|| host.log_tail(30))?;
    let log = host.log();
    ensure!(
        log.matches(DROPPED).count() == 1,
        "said once, not per span: {log}"
    );
    Ok(())
}

/// A test CA's PEM and a TLS acceptor serving a server certificate it signed.
fn test_ca() -> Result<(String, tokio_rustls::TlsAcceptor)> {
    use tokio_rustls::rustls::{
        self,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    };
    let ca = crate::common::TestCa::new()?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![ca.server_der.into()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.server_key_der)),
    )?;
    Ok((ca.ca_pem, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// An `https://` collector signed by a test CA receives the CLI's spans when
/// the CA is given by `--otlp-certificate` or by the standard
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`; without it the command still works and
/// the export is refused by TLS. A certificate file that is missing, empty of
/// certificates, not PEM or holding something else than a certificate is
/// refused at start, named, with the flag.
#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_https_collector_signed_by_the_given_ca() -> Result<()> {
    let (ca_pem, acceptor) = test_ca()?;
    let collector = Collector::start_with(Some(acceptor)).await?;
    let dir = tempfile::Builder::new().prefix("lattice-otlp-").tempdir()?;
    let ca = crate::common::write_file(dir.path(), "ca.pem", ca_pem.as_bytes())?;
    let ca = ca.display().to_string();
    let t = TestLattice::start().await?;
    let host = t.host("otlp-tls", &[]).await?;
    t.start_actor(&host, &actor_wasm("hello")?, "hello", 1)
        .await?;
    let endpoint = collector.url.as_str();
    let hello = ["call", "hello", "SayHello", r#""tls""#];
    let with_flag = [&["--otlp-certificate", ca.as_str()][..], &hello].concat();

    let out = cli_exporting(&t, endpoint, &with_flag, &[])
        .await?
        .success()?;
    ensure!(out.stdout.contains("Hello, tls!"), "{}", out.stdout);
    calls_received(&collector, 1).await?;
    // Not trusted: the command works, its export fails the handshake, said
    // on stderr.
    let out = cli_exporting(&t, endpoint, &hello, &[]).await?.success()?;
    ensure!(
        out.stderr.contains("could not export spans") && out.stderr.contains("UnknownIssuer"),
        "the refused export is logged: {}",
        out.stderr
    );
    // Once, in Lattice's words: not again by the SDK's batch processor or the
    // exporter's retries.
    ensure!(
        out.stderr.matches("WARN").count() == 1 && !out.stderr.contains("Export.Failed"),
        "one line for the failure: {}",
        out.stderr
    );
    // The CA by the standard variable: only this one more arrives.
    let by_env = [("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str())];
    cli_exporting(&t, endpoint, &hello, &by_env)
        .await?
        .success()?;
    calls_received(&collector, 2).await?;

    // Certificate files that cannot be used.
    let missing = dir.path().join("missing.pem").display().to_string();
    let empty = crate::common::write_file(dir.path(), "empty.pem", b"no certificate here\n")?;
    let garbled = crate::common::write_file(
        dir.path(),
        "garbled.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )?;
    let not_a_certificate = crate::common::write_file(
        dir.path(),
        "zeros.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )?;
    for (file, why) in [
        (missing, "No such file"),
        (empty.display().to_string(), "no PEM certificate in it"),
        (garbled.display().to_string(), "not PEM certificates"),
        (
            not_a_certificate.display().to_string(),
            "certificate 1 is unusable",
        ),
    ] {
        let env = [("OTEL_EXPORTER_OTLP_CERTIFICATE", file.as_str())];
        let out = cli_exporting(&t, endpoint, &hello, &env).await?.failure()?;
        out.stderr_has(&[
            "cannot use the OTLP certificate file",
            &file,
            why,
            "--otlp-certificate",
        ])?;
    }
    Ok(())
}

/// `lattice ARGS...` on `t`'s lattice, exporting to `endpoint`, with `env`.
async fn cli_exporting(
    t: &TestLattice,
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<crate::common::CliOutput> {
    let full = [&["--otlp-endpoint", endpoint][..], args].concat();
    t.cli_env(&full, env, crate::common::CLI_TIMEOUT).await
}

/// Waits until `collector` has received exactly `n` spans of CLI calls.
async fn calls_received(collector: &Collector, n: usize) -> Result<()> {
    wait_until("the CLI's call spans at the collector", WAIT, || {
        let calls = collector
            .spans()
            .iter()
            .filter(|s| s.service == "lattice-cli" && s.name == "call")
            .count();
        async move {
            ensure!(calls <= n, "{calls} call spans received, expected {n}");
            Ok((calls == n).then_some(()))
        }
    })
    .await
}
