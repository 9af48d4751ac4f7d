//! Trace context carried across hosts.
//!
//! We use the W3C `traceparent` format (`00-{trace}-{span}-01`) so a request's
//! trace id stays the same from the CLI through every host it crosses. It
//! travels in an invocation's `traceparent` field, and as the `traceparent`
//! NATS header on control requests and streamed exchanges (read on
//! invocations too when the field is absent).
//! Hosts record the trace id as a field on their `tracing` spans. When a
//! process exports spans (OpenTelemetry, installed by the host crate through
//! [`install_linker`]), [`enter`] makes each serving span the child of the
//! span named in the request and hands its own id to the next hop, so the spans
//! of one request form one connected trace across processes.

use std::sync::OnceLock;

use async_nats::HeaderMap;

/// Joins `span` to the trace `incoming` (when the request carried one) and
/// returns the context of `span` itself, for the next hop; `None` when `span`
/// is not exported (filtered out), and the caller falls back to ids of its own.
pub type SpanLinker =
    fn(span: &tracing::Span, incoming: Option<&TraceContext>) -> Option<TraceContext>;

static LINKER: OnceLock<SpanLinker> = OnceLock::new();

/// Installs the process's [`SpanLinker`]; once per process (later calls are
/// ignored and return `false`).
pub fn install_linker(linker: SpanLinker) -> bool {
    LINKER.set(linker).is_ok()
}

/// The trace context a request served in `span` continues: `span`'s own
/// exported context when a linker is installed, else `incoming` with a fresh
/// span id (or a new trace when nothing came in).
pub fn enter(span: &tracing::Span, incoming: Option<&TraceContext>) -> TraceContext {
    if let Some(link) = LINKER.get()
        && let Some(own) = link(span, incoming)
    {
        return own;
    }
    match incoming {
        Some(t) => t.child(),
        None => TraceContext::new_root(),
    }
}

/// The header name, as in the W3C Trace Context spec.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id, the id of the span that sent the message, and whether the
/// trace is sampled (recorded and exported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 hex digits, shared by every hop of one request.
    pub trace_id: String,
    /// 16 hex digits, the sender's span.
    pub span_id: String,
    /// The W3C `sampled` flag: whether the sender records this trace. A
    /// receiver that samples by its parent (the default) records it too, so
    /// a sampling decision made where a trace starts holds on every host.
    pub sampled: bool,
}

impl TraceContext {
    /// Starts a new trace (sampled).
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            span_id: new_span_id(),
            sampled: true,
        }
    }

    /// The same trace, a new span: what a host uses for the next hop.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            sampled: self.sampled,
        }
    }

    /// Reads `traceparent` from headers; `None` when absent or malformed.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Option<Self> {
        Self::parse(headers?.get(TRACEPARENT)?.as_str())
    }

    /// Reads a W3C `traceparent` value (`00-{trace}-{span}-{flags}`); `None`
    /// when malformed. As the spec says: lowercase hex of the right lengths,
    /// ids not all zeros, a version other than `ff` (the values come from the
    /// network and end up in log lines and exported spans).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let id = |s: &str, len: usize| hex(s, len) && s.bytes().any(|b| b != b'0');
        if !hex(version, 2) || version == "ff" || !id(trace, 32) || !id(span, 16) {
            return None;
        }
        // Absent or unreadable flags: sampled, as before flags were read.
        let sampled = parts
            .next()
            .and_then(|f| u8::from_str_radix(f, 16).ok())
            .is_none_or(|f| f & 1 == 1);
        Some(TraceContext {
            trace_id: trace.to_string(),
            span_id: span.to_string(),
            sampled,
        })
    }

    /// The W3C `traceparent` value of this context.
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }

    /// Writes `traceparent` into headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent().as_str());
    }
}

fn new_span_id() -> String {
    let id = uuid::Uuid::new_v4().as_u128() as u64;
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let t = TraceContext::new_root();
        let mut h = HeaderMap::new();
        t.inject(&mut h);
        assert_eq!(TraceContext::from_headers(Some(&h)), Some(t.clone()));
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        assert_eq!(TraceContext::from_headers(None), None);
        let unsampled = TraceContext {
            sampled: false,
            ..t.child()
        };
        let mut h = HeaderMap::new();
        unsampled.inject(&mut h);
        assert_eq!(
            TraceContext::from_headers(Some(&h)),
            Some(unsampled.clone())
        );
        assert!(!unsampled.child().sampled);
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            format!("00-{}-{}", t.trace_id, t.span_id).as_str(),
        );
        assert!(TraceContext::from_headers(Some(&h)).is_some_and(|c| c.sampled));
    }

    #[test]
    fn only_hex_ids_of_the_right_length_are_read() {
        let t = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&t.traceparent()), Some(t.clone()));
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473\n-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba90\x1b[1-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }
}
