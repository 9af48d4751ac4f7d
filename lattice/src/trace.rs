//! Trace context carried in NATS headers across hosts.
//!
//! We use the W3C `traceparent` header format (`00-{trace}-{span}-01`) so a
//! request's trace id stays the same from the CLI through every host it crosses.
//! Hosts record the trace id as a field on their `tracing` spans; an OpenTelemetry
//! exporter can pick the same header up later without a protocol change.

use async_nats::HeaderMap;

/// The header name, as in the W3C Trace Context spec.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id and the id of the span that sent the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 hex digits, shared by every hop of one request.
    pub trace_id: String,
    /// 16 hex digits, the sender's span.
    pub span_id: String,
}

impl TraceContext {
    /// Starts a new trace.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            span_id: new_span_id(),
        }
    }

    /// The same trace, a new span: what a host uses for the next hop.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
        }
    }

    /// Reads `traceparent` from headers; `None` when absent or malformed.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Option<Self> {
        let value = headers?.get(TRACEPARENT)?.as_str();
        let mut parts = value.split('-');
        let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        if trace.len() != 32 || span.len() != 16 {
            return None;
        }
        Some(TraceContext {
            trace_id: trace.to_string(),
            span_id: span.to_string(),
        })
    }

    /// Writes `traceparent` into headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(
            TRACEPARENT,
            format!("00-{}-{}-01", self.trace_id, self.span_id).as_str(),
        );
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
    }
}
