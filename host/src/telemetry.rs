//! Logging (`tracing-subscriber` with an env filter, `LATTICE_LOG`, human or
//! JSON) and, when an OTLP endpoint is configured, span export over
//! OpenTelemetry.
//!
//! Exported are the `serve` span of every request a process answers over NATS
//! (actors on hosts, providers), the `host_call` span of every call an actor
//! makes (in-process or not), the CLI's `call` span, and other spans at INFO
//! or above; the log filter does not apply to them. Each serving
//! span is made the child of the span named in the request's `traceparent`
//! ([`lattice::trace::enter`]), so one request is one trace across
//! processes.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Level, level_filters::LevelFilter, subscriber::Interest};
use tracing_opentelemetry::OpenTelemetrySpanExt;
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
        lattice::trace::install_linker(link);
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

/// The layer that hands spans to `provider`'s tracer named `name`.
fn export_layer(
    provider: &SdkTracerProvider,
    name: &'static str,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(name))
        // Every call makes spans: only the fields the code gives them.
        // (Ids travel in `TraceContext`s, not in OTel's current
        // context, so entering a span need not activate one.)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(export_filter())
        .boxed()
}

/// Which spans are exported: INFO and above, and Lattice's own DEBUG spans
/// (the per-call ones: `serve`, `call`, `host_call`), while
/// [`set_exporting`] has not paused export. Spans only: events would become span events, costing every call. Decided
/// per callsite once (events and other spans: never, so they cost nothing
/// here), then per span only the pause flag.
fn export_filter<S>() -> DynFilterFn<
    S,
    impl Fn(&tracing::Metadata<'_>, &Context<'_, S>) -> bool,
    impl Fn(&'static tracing::Metadata<'static>) -> Interest,
> {
    dynamic_filter_fn(|_: &tracing::Metadata<'_>, _: &Context<'_, S>| {
        EXPORTING.load(Ordering::Relaxed)
    })
    .with_callsite_filter(|m| {
        if m.is_span() && (*m.level() <= Level::INFO || m.target().starts_with("lattice")) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    })
}

/// The [`lattice::trace::SpanLinker`] of an exporting process.
fn link(
    span: &tracing::Span,
    incoming: Option<&lattice::trace::TraceContext>,
) -> Option<lattice::trace::TraceContext> {
    if let Some(t) = incoming {
        let trace_id = TraceId::from(t.trace_id.get());
        let span_id = SpanId::from(t.span_id.get());
        let flags = if t.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    Some(lattice::trace::TraceContext {
        trace_id: lattice::trace::TraceId::new(u128::from_be_bytes(own.trace_id().to_bytes()))?,
        span_id: lattice::trace::SpanId::new(u64::from_be_bytes(own.span_id().to_bytes()))?,
        sampled: own.is_sampled(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_gets_its_own_context_and_its_parent_from_the_header() {
        let provider = SdkTracerProvider::builder().build();
        let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(EnvFilter::new("warn,async_nats=off"))
                .boxed(),
            export_layer(&provider, "test"),
        ];
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let own = link(&root, None).expect("an exported span has a context");
            let child = tracing::info_span!("child");
            let next = link(&child, Some(&own)).expect("a context");
            assert_eq!(next.trace_id, own.trace_id);
            assert_ne!(next.span_id, own.span_id);
            // Paused: spans are not exported, so they have no context.
            set_exporting(false);
            let paused = link(&tracing::info_span!("paused"), Some(&own));
            set_exporting(true);
            assert_eq!(paused, None);
            assert!(link(&tracing::info_span!("resumed"), None).is_some());
            // Events and spans of other crates below INFO are never exported.
            assert!(link(&tracing::debug_span!(target: "hyper", "other"), None).is_none());
        });
    }
}
