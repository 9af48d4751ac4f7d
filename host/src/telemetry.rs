//! Logging (`tracing-subscriber` with an env filter, `LATTICE_LOG`, human or
//! JSON) and, when an OTLP endpoint is configured, span export over
//! OpenTelemetry.
//!
//! Exported are the `serve` span of every request a process answers over NATS
//! (actors on hosts, providers), the `host_call` span of every call an actor
//! makes (in-process or not), the CLI's `call` span, and Lattice's other
//! spans at INFO or above; the log filter does not apply to them. The
//! per-call spans go to the OpenTelemetry tracer directly
//! ([`lattice::trace::CallSpan`]), the others through
//! `tracing-opentelemetry`. Each serving span is made the
//! child of the span named in the request's `traceparent`, so one request is
//! one trace across processes.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    trace::{
        Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    },
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Level, level_filters::LevelFilter, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{DynFilterFn, FilterExt, dynamic_filter_fn, filter_fn},
    fmt,
    layer::Context,
    prelude::*,
};

use crate::config::LogConfig;

/// The standard variable naming the collector when no Lattice setting does.
pub const OTEL_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The standard variable naming a PEM file of certificates to trust for the
/// collector when no Lattice setting does.
pub const OTEL_CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";

/// How long one export may take (the OTLP default, `OTEL_EXPORTER_OTLP_TIMEOUT`).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Telemetry::shutdown`] waits for the last spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// What went wrong setting up trace export.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` or `https://` URL the exporter can use.
    #[error(
        "invalid OTLP endpoint {endpoint:?}: {reason} (expected e.g. http://127.0.0.1:4318; set --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)"
    )]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The certificates to trust for the collector cannot be read or used.
    #[error(
        "cannot use the OTLP certificate file {path:?}: {reason} (set --otlp-certificate, LATTICE_OTLP_CERTIFICATE or OTEL_EXPORTER_OTLP_CERTIFICATE to a PEM file of CA certificates)"
    )]
    Certificate {
        /// The file as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

/// The installed exporter, if any: shut it down before the process exits so
/// the last spans are sent.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered (waiting at most a few seconds) and stops
    /// the exporter. Failures are logged: telemetry never fails a command.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!(error = %e, "could not send the last spans");
        }
    }
}

/// Log lines of the OpenTelemetry SDK and exporter not shown: those said per
/// failed export (by the batch processor and the exporter's retries), which
/// [`ExportClient`] says once when exports start failing and once when they
/// work again. Its other lines are: spans dropped because the export queue
/// is full (`OTEL_BSP_MAX_QUEUE_SIZE`), once when it starts and with the
/// count at shutdown; spans a collector rejected.
const REPEATED_SDK_LINES: &[&str] = &[
    "BatchSpanProcessor.ExportError",
    "Export.Failed.DeadlineExceeded",
    "Export.Failed.NonRetryable",
    "Export.Failed.Exhausted",
    "Export.InProgress.Throttled",
];

/// Installs the global subscriber. `default_filter` applies when `LATTICE_LOG`
/// (or the config's `log`) is unset. Logs go to stderr so stdout stays for
/// output. With an OTLP endpoint (the config's, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`), spans are exported under `service`'s name;
/// an `https://` collector is checked against Mozilla's root certificates, or
/// only those of `otlp_certificate` (else `OTEL_EXPORTER_OTLP_CERTIFICATE`)
/// when given.
///
/// # Errors
/// [`TelemetryError::Endpoint`] when the endpoint is not a usable `http://`
/// or `https://` URL, [`TelemetryError::Certificate`] when the certificate
/// file cannot be read, holds no PEM certificate or an unusable one. (An unreachable or
/// untrusted collector is not an error: export failures are logged and the
/// spans dropped.)
pub fn init(
    cfg: &LogConfig,
    default_filter: &str,
    service: &str,
) -> Result<Telemetry, TelemetryError> {
    let endpoint = cfg
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var(OTEL_ENDPOINT_ENV).ok())
        .filter(|e| !e.trim().is_empty());
    let provider = endpoint
        .map(|e| {
            let certificate = cfg
                .otlp_certificate
                .clone()
                .or_else(|| std::env::var_os(OTEL_CERTIFICATE_ENV).map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty());
            tracer_provider(e.trim(), certificate.as_deref(), service)
        })
        .transpose()?;

    let filter = cfg
        .log
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter))
        // The hint keeps the EnvFilter's: without one, `And` has none, and
        // every disabled `trace!` (cranelift logs per instruction) would be
        // filtered the slow way.
        .and(
            filter_fn(|m| !REPEATED_SDK_LINES.contains(&m.name()))
                .with_max_level_hint(LevelFilter::TRACE),
        );
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    layers.push(if cfg.log_json {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    });
    if let Some(p) = &provider {
        layers.push(export_layer(p, "lattice"));
        lattice::trace::install_exporter(Box::new(CallSpans(p.tracer("lattice"))));
    }
    // Already installed (tests, embedding): keep the existing one.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(Telemetry { provider })
}

fn tracer_provider(
    endpoint: &str,
    certificate: Option<&Path>,
    service: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let bad = |reason: String| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
        return Err(bad("the scheme must be http:// or https://".into()));
    }
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    url.parse::<hyper::Uri>().map_err(|e| bad(e.to_string()))?;
    let client = http_client(certificate)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: blocking, as the SDK exports from a thread of
/// its own; TLS trusts Mozilla's roots, or only the CA certificates of
/// `certificate` when given (as `OTEL_EXPORTER_OTLP_CERTIFICATE` means).
fn http_client(certificate: Option<&Path>) -> Result<ExportClient, TelemetryError> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = certificate {
        let bad = |reason: String| TelemetryError::Certificate {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            // Keys beside the certificates are skipped: this file is only read
            // for whom to trust.
            if let ureq::tls::PemItem::Certificate(cert) =
                item.map_err(|e| bad(format!("not PEM certificates: {e}")))?
            {
                // What TLS would otherwise skip in silence, leaving nobody trusted.
                rustls::RootCertStore::empty()
                    .add(cert.der().to_vec().into())
                    .map_err(|e| {
                        bad(format!("certificate {} is unusable: {e}", certs.len() + 1))
                    })?;
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(EXPORT_TIMEOUT))
        .tls_config(tls.build())
        .build()
        .new_agent();
    Ok(ExportClient {
        agent,
        failing: AtomicBool::new(false),
    })
}

/// The most of a collector's answer read: it is short (a status, maybe a
/// partial-success message); the limit keeps a wrong server from filling
/// memory.
const MAX_ANSWER: u64 = 1 << 20;

/// [`opentelemetry_http::HttpClient`] over a blocking `ureq` agent.
/// Says so once when exports start failing (an untrusted certificate, an
/// unreachable collector, an error status), and once when they work again;
/// the SDK itself drops failed batches silently.
#[derive(Debug)]
struct ExportClient {
    agent: ureq::Agent,
    /// The last export failed.
    failing: AtomicBool,
}

impl ExportClient {
    fn note(&self, url: &http::Uri, failure: Option<String>) {
        let was = self.failing.swap(failure.is_some(), Ordering::Relaxed);
        match failure {
            Some(why) if !was => {
                let hint = if why.contains("certificate") || why.contains("UnknownIssuer") {
                    " (a collector with a private CA: --otlp-certificate CA.pem)"
                } else {
                    ""
                };
                tracing::warn!(collector = %url, error = %why, "could not export spans, dropped until the collector takes them{hint}");
            }
            None if was => tracing::warn!(collector = %url, "exporting spans again"),
            _ => {}
        }
    }

    /// One export: the request sent, the answer read.
    fn send(
        &self,
        request: http::Request<&[u8]>,
    ) -> Result<http::Response<bytes::Bytes>, ureq::Error> {
        let (parts, mut body) = self.agent.run(request)?.into_parts();
        let body = body.with_config().limit(MAX_ANSWER).read_to_vec()?;
        Ok(http::Response::from_parts(parts, body.into()))
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        // Blocking: the SDK's batch processor exports from a thread of its
        // own (a processor on an async runtime would need another client).
        let (parts, body) = request.into_parts();
        let url = parts.uri.clone();
        let result = self.send(http::Request::from_parts(parts, &body[..]));
        self.note(
            &url,
            match &result {
                Err(e) => Some(e.to_string()),
                Ok(r) if !r.status().is_success() => {
                    Some(format!("the collector answered {}", r.status()))
                }
                Ok(_) => None,
            },
        );
        Ok(result?)
    }
}

static EXPORTING: AtomicBool = AtomicBool::new(true);

/// Pauses (`false`) or resumes span export of this process; spans started
/// while paused are not exported. For benchmarks that compare calls with and
/// without export in one process.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// The layer that hands `tracing` spans to `provider`'s tracer named `name`:
/// Lattice's at INFO and above (control requests and the like). The per-call
/// spans do not go through it: [`CallSpans`].
fn export_layer(
    provider: &SdkTracerProvider,
    name: &'static str,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(name))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(export_filter())
        .boxed()
}

/// Which `tracing` spans are exported: Lattice's own at INFO and above,
/// while [`set_exporting`] has not paused export. Not other crates': with
/// the per-call spans off `tracing`, theirs (wasmtime-wasi's span per WASI
/// call, at INFO) would have no exported parent and each become a trace of
/// its own. Spans only: events would become span events.
/// Decided per callsite once (events and other spans: never, so they cost
/// nothing here), then per span only the pause flag.
fn export_filter<S>() -> DynFilterFn<
    S,
    impl Fn(&tracing::Metadata<'_>, &Context<'_, S>) -> bool,
    impl Fn(&'static tracing::Metadata<'static>) -> Interest,
> {
    dynamic_filter_fn(|_: &tracing::Metadata<'_>, _: &Context<'_, S>| {
        EXPORTING.load(Ordering::Relaxed)
    })
    .with_callsite_filter(|m| {
        if m.is_span() && *m.level() <= Level::INFO && m.target().starts_with("lattice") {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    })
}

/// The [`lattice::trace::CallSpanExporter`] of an exporting process: each call
/// hop's span (`call`, `serve`, `host_call`) made with the OpenTelemetry
/// tracer itself, not through `tracing`, as the child of the span named in
/// the request.
struct CallSpans(opentelemetry_sdk::trace::SdkTracer);

impl lattice::trace::CallSpanExporter for CallSpans {
    fn start(
        &self,
        span: lattice::trace::SpanStart<'_>,
    ) -> Option<(
        lattice::trace::TraceContext,
        Box<dyn lattice::trace::ExportedSpan>,
    )> {
        if !EXPORTING.load(Ordering::Relaxed) {
            return None;
        }
        let parent = match span.parent {
            Some(t) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(t.trace_id.get()),
                SpanId::from(t.span_id.get()),
                if t.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                span.remote_parent,
                TraceState::default(),
            )),
            None => opentelemetry::Context::new(),
        };
        let started = self
            .0
            .span_builder(span.name)
            .with_kind(match span.kind {
                lattice::trace::SpanKind::Client => opentelemetry::trace::SpanKind::Client,
                lattice::trace::SpanKind::Server => opentelemetry::trace::SpanKind::Server,
            })
            .with_attributes(
                span.attributes
                    .iter()
                    .map(|&(k, v)| KeyValue::new(k, v.to_string())),
            )
            .start_with_context(&self.0, &parent);
        let own = started.span_context();
        let context = lattice::trace::TraceContext {
            trace_id: lattice::trace::TraceId::new(u128::from_be_bytes(own.trace_id().to_bytes()))?,
            span_id: lattice::trace::SpanId::new(u64::from_be_bytes(own.span_id().to_bytes()))?,
            sampled: own.is_sampled(),
        };
        Some((context, Box::new(Exported(started))))
    }
}

/// An OpenTelemetry span as a [`lattice::trace::ExportedSpan`] (ended when
/// dropped, too).
struct Exported(opentelemetry_sdk::trace::Span);

impl lattice::trace::ExportedSpan for Exported {
    fn end(mut self: Box<Self>, error: Option<&str>) {
        if let Some(e) = error {
            self.0.set_status(Status::error(e.to_string()));
        }
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use lattice::trace::{CallSpanExporter as _, SpanKind, SpanStart};
    use opentelemetry_sdk::trace::SpanData;

    use super::*;

    /// Keeps what the SDK exports.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn start(
        spans: &CallSpans,
        name: &'static str,
        parent: Option<&lattice::trace::TraceContext>,
    ) -> Option<(
        lattice::trace::TraceContext,
        Box<dyn lattice::trace::ExportedSpan>,
    )> {
        spans.start(SpanStart {
            name,
            kind: SpanKind::Server,
            parent,
            remote_parent: true,
            attributes: &[("operation", "SayHello")],
        })
    }

    #[test]
    fn a_call_span_gets_its_own_context_and_its_parent_from_the_request() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let spans = CallSpans(provider.tracer("test"));

        let (root, root_span) = start(&spans, "call", None).expect("exporting");
        let (child, child_span) = start(&spans, "serve", Some(&root)).expect("exporting");
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert!(child.sampled);
        child_span.end(Some("actor \"hello\" trapped"));
        root_span.end(None);

        // Paused: not exported, so no context of its own.
        set_exporting(false);
        let paused = start(&spans, "paused", Some(&root));
        set_exporting(true);
        assert!(paused.is_none());
        // Dropped without `end` (a cancelled call): exported all the same.
        drop(start(&spans, "dropped", None).expect("exporting"));
        only_spans_at_info_and_above_go_through_tracing();

        let kept = kept.0.lock().unwrap();
        let names: Vec<&str> = kept.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["serve", "call", "dropped"]);
        let serve = &kept[0];
        assert_eq!(serve.parent_span_id, SpanId::from(root.span_id.get()));
        assert_eq!(serve.span_kind, opentelemetry::trace::SpanKind::Server);
        assert_eq!(
            serve.status,
            Status::error("actor \"hello\" trapped".to_string())
        );
        assert_eq!(
            serve.attributes,
            [KeyValue::new("operation", "SayHello".to_string())]
        );
        assert_eq!(kept[1].status, Status::Unset);
        assert!(!kept[1].parent_span_is_remote);
        assert!(serve.parent_span_is_remote);
    }

    /// Beside the per-call spans, and in one test with them: both use the
    /// process-wide pause flag.
    fn only_spans_at_info_and_above_go_through_tracing() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(export_layer(&provider, "test"));
        tracing::subscriber::with_default(subscriber, || {
            drop(tracing::info_span!("ctl").entered());
            drop(tracing::debug_span!("serve").entered());
            drop(tracing::info_span!(target: "wasmtime_wasi::p1", "fd_write").entered());
            tracing::info!("an event");
        });
        let kept = kept.0.lock().unwrap();
        let names: Vec<&str> = kept.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["ctl"]);
    }
}
