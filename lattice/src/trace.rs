//! Trace context carried across hosts.
//!
//! We use the W3C `traceparent` format (`00-{trace}-{span}-01`) so a request's
//! trace id stays the same from the CLI through every host it crosses. It
//! travels in an invocation's `traceparent` field, and as the `traceparent`
//! NATS header on control requests and streamed exchanges (read on
//! invocations too when the field is absent).
//! Hosts record the trace id as a field on their `tracing` spans. When a
//! process exports spans (OpenTelemetry, installed by the host crate through
//! `install_exporter`), each hop's [`CallSpan`] is the child of the span
//! named in the request and hands its own id to the next hop, so the spans
//! of one request form one connected trace across processes.
//!
//! Without the `client` feature (the actor SDK) only the types are here: an
//! [`Invocation`](crate::rpc::Invocation) carries a [`TraceContext`].

use std::fmt;
use std::num::{NonZeroU64, NonZeroU128};
#[cfg(feature = "client")]
use std::sync::OnceLock;

#[cfg(feature = "client")]
use async_nats::HeaderMap;

#[cfg(feature = "client")]
/// What a process that exports spans installs ([`install_exporter`]): it
/// starts the span of one call hop and hands back its context, for the next
/// hop, and the handle that ends it.
///
/// Per-call spans go to the exporter directly rather than through `tracing`:
/// a `tracing` span that is exported costs a registry slot, a lookup per
/// enter and exit of every poll and string-formatted fields on every call
/// (measured: docs/performance.md, "Per-call spans without `tracing`").
pub trait CallSpanExporter: Send + Sync + 'static {
    /// Starts `span`; `None` when it is not exported (export paused, the
    /// exporter shut down), and the caller uses ids of its own.
    fn start(&self, span: SpanStart<'_>) -> Option<(TraceContext, Box<dyn ExportedSpan>)>;
}

#[cfg(feature = "client")]
/// A started span, exported when ended (or dropped: a cancelled call's
/// span ends where it was dropped). Ending it after the exporter shut down
/// exports nothing.
pub trait ExportedSpan: Send {
    /// Ends the span, marked as failed with `error` when given.
    fn end(self: Box<Self>, error: Option<&str>);
}

#[cfg(feature = "client")]
/// What a span is, for [`CallSpanExporter::start`].
#[derive(Debug, Clone, Copy)]
pub struct SpanStart<'a> {
    /// `call`, `serve`, `host_call`.
    pub name: &'static str,
    /// Its role in the request.
    pub kind: SpanKind,
    /// The span of the caller, when the request carried one; else the span
    /// starts a trace.
    pub parent: Option<&'a TraceContext>,
    /// Whether `parent` is a span of another process (a request's
    /// `traceparent`) rather than of this one.
    pub remote_parent: bool,
    /// Attributes, as key and value.
    pub attributes: &'a [(&'static str, &'a str)],
}

#[cfg(feature = "client")]
impl<'a> SpanStart<'a> {
    /// The `serve` span of a request from another process: a server span,
    /// the child of the request's `traceparent` when it carried one.
    pub fn serve(
        parent: Option<&'a TraceContext>,
        attributes: &'a [(&'static str, &'a str)],
    ) -> Self {
        SpanStart {
            name: "serve",
            kind: SpanKind::Server,
            parent,
            remote_parent: true,
            attributes,
        }
    }
}

#[cfg(feature = "client")]
/// A span's role, as OpenTelemetry's span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Sends a request and waits for its answer (the CLI's `call`, an
    /// actor's `host_call`).
    Client,
    /// Answers a request (`serve`).
    Server,
}

#[cfg(feature = "client")]
static EXPORTER: OnceLock<Box<dyn CallSpanExporter>> = OnceLock::new();

#[cfg(feature = "client")]
/// Installs the process's [`CallSpanExporter`]; once per process (later calls
/// are ignored and return `false`).
pub fn install_exporter(exporter: Box<dyn CallSpanExporter>) -> bool {
    EXPORTER.set(exporter).is_ok()
}

#[cfg(feature = "client")]
/// The span of one call hop: its context goes to the next hop, and it is
/// exported when [`ended`](CallSpan::end) or dropped, if this process
/// exports spans.
#[must_use = "a span ends when dropped"]
pub struct CallSpan {
    context: TraceContext,
    exported: Option<Box<dyn ExportedSpan>>,
}

#[cfg(feature = "client")]
impl CallSpan {
    /// Starts a span, the child of `span.parent` when given. Without an
    /// exporter (or with export paused) it only makes the ids: `parent`'s
    /// trace with a new span id, or a new trace.
    pub fn start(span: SpanStart<'_>) -> Self {
        let parent = span.parent;
        match EXPORTER.get().and_then(|e| e.start(span)) {
            Some((context, exported)) => CallSpan {
                context,
                exported: Some(exported),
            },
            None => CallSpan {
                context: match parent {
                    Some(t) => t.child(),
                    None => TraceContext::new_root(),
                },
                exported: None,
            },
        }
    }

    /// The context the next hop continues.
    pub fn context(&self) -> TraceContext {
        self.context
    }

    /// Ends the span, marked as failed with `error` when given.
    pub fn end(mut self, error: Option<&str>) {
        if let Some(exported) = self.exported.take() {
            exported.end(error);
        }
    }

    /// Ends the span with the outcome of its call: failed with the error's
    /// text on `Err` (formatted only when the span is exported).
    pub fn end_with<T, E: fmt::Display>(self, result: &Result<T, E>) {
        if let Some(exported) = self.exported {
            match result {
                Ok(_) => exported.end(None),
                Err(e) => exported.end(Some(&e.to_string())),
            }
        }
    }
}

#[cfg(feature = "client")]
impl fmt::Debug for CallSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSpan")
            .field("context", &self.context)
            .field("exported", &self.exported.is_some())
            .finish()
    }
}

/// The header name, as in the W3C Trace Context spec.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace id: 16 bytes, never all zero, shown as 32 lowercase hex
/// digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// The id of these bytes (big-endian, as the hex reads); `None` for
    /// zero, which W3C reserves for "no trace".
    pub fn new(id: u128) -> Option<Self> {
        NonZeroU128::new(id).map(TraceId)
    }

    /// A new random id: 128 uniform bits from a thread-local generator (no
    /// syscall per id). Uniform, not a v4 uuid: OpenTelemetry's
    /// `traceidratio` sampler decides from the id's low 64 bits, which a v4
    /// uuid partly fixes, so a ratio below 3/4 would never sample its traces.
    pub fn random() -> Self {
        loop {
            if let Some(id) = NonZeroU128::new(rand::random()) {
                return TraceId(id);
            }
        }
    }

    /// The id as a number (big-endian bytes).
    pub fn get(self) -> u128 {
        self.0.get()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A W3C span id: 8 bytes, never all zero, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// The id of these bytes (big-endian); `None` for zero.
    pub fn new(id: u64) -> Option<Self> {
        NonZeroU64::new(id).map(SpanId)
    }

    /// A new random id (64 uniform bits, never zero).
    pub fn random() -> Self {
        loop {
            if let Some(id) = NonZeroU64::new(rand::random()) {
                return SpanId(id);
            }
        }
    }

    /// The id as a number (big-endian bytes).
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A trace id, the id of the span that sent the message, and whether the
/// trace is sampled (recorded and exported). `Copy`: ids are numbers, so
/// handing a context on costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// Shared by every hop of one request.
    pub trace_id: TraceId,
    /// The sender's span.
    pub span_id: SpanId,
    /// The W3C `sampled` flag: whether the sender records this trace. A
    /// receiver that samples by its parent (the default) records it too, so
    /// a sampling decision made where a trace starts holds on every host.
    pub sampled: bool,
}

/// The length of a `traceparent` value of version 00.
const TRACEPARENT_LEN: usize = 55;

impl TraceContext {
    /// Starts a new trace (sampled).
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            sampled: true,
        }
    }

    /// The same trace, a new span: what a host uses for the next hop.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: SpanId::random(),
            ..*self
        }
    }

    #[cfg(feature = "client")]
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
        if !lower_hex(version, 2)
            || version == "ff"
            || !lower_hex(trace, 32)
            || !lower_hex(span, 16)
        {
            return None;
        }
        // All zeros: W3C's "no id", refused by `new`.
        let trace_id = TraceId::new(u128::from_str_radix(trace, 16).ok()?)?;
        let span_id = SpanId::new(u64::from_str_radix(span, 16).ok()?)?;
        // Absent or unreadable flags: sampled, as before flags were read.
        let sampled = parts
            .next()
            .and_then(|f| u8::from_str_radix(f, 16).ok())
            .is_none_or(|f| f & 1 == 1);
        Some(TraceContext {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// The W3C `traceparent` value of this context.
    pub fn traceparent(&self) -> String {
        self.to_string()
    }

    #[cfg(feature = "client")]
    /// Writes `traceparent` into headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent().as_str());
    }

    /// The `traceparent` value written into `buf`, without allocating.
    fn write_traceparent<'b>(&self, buf: &'b mut [u8; TRACEPARENT_LEN]) -> &'b str {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let written = std::io::Write::write_fmt(&mut cursor, format_args!("{self}"));
        let end = cursor.position() as usize;
        // Always 55 ASCII bytes (fixed-width hex); anything else is a bug
        // here, not input: fail loudly in tests, never send a cut value.
        debug_assert!(
            written.is_ok() && end == TRACEPARENT_LEN,
            "traceparent of {end} bytes"
        );
        std::str::from_utf8(&buf[..end]).unwrap_or_default()
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` value: `00-{trace}-{span}-{flags}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = if self.sampled { "01" } else { "00" };
        write!(f, "00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// Lowercase hex of exactly `len` digits.
fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Serde for an optional [`TraceContext`] carried as its `traceparent`
/// string (`#[serde(with = "crate::trace::as_traceparent")]`): written
/// without allocating, and read leniently, a malformed value being no
/// context rather than an undecodable message (it comes from the network;
/// the receiver then starts a trace of its own).
pub mod as_traceparent {
    use serde::{Deserializer, Serializer, de};

    use super::{TRACEPARENT_LEN, TraceContext};

    /// Writes `Some` as its `traceparent` string, `None` as nil.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(
        trace: &Option<TraceContext>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match trace {
            Some(t) => serializer.serialize_str(t.write_traceparent(&mut [0; TRACEPARENT_LEN])),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a `traceparent` string (or nil); a malformed one reads as `None`.
    ///
    /// # Errors
    /// A value that is neither a string nor nil.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<TraceContext>, D::Error> {
        deserializer.deserialize_option(Lenient)
    }

    struct Lenient;

    impl<'de> de::Visitor<'de> for Lenient {
        type Value = Option<TraceContext>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a W3C traceparent string or nil")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(TraceContext::parse(value))
        }

        // msgpack `bin` holding the text: read as `Option<String>` did.
        fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Self::Value, E> {
            Ok(std::str::from_utf8(value)
                .ok()
                .and_then(TraceContext::parse))
        }
    }
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;

    #[test]
    fn a_call_span_without_an_exporter_continues_the_trace_with_a_new_span() {
        let parent = TraceContext::new_root();
        let span = CallSpan::start(SpanStart {
            name: "serve",
            kind: SpanKind::Server,
            parent: Some(&parent),
            remote_parent: true,
            attributes: &[("operation", "SayHello")],
        });
        let own = span.context();
        assert_eq!(own.trace_id, parent.trace_id);
        assert_ne!(own.span_id, parent.span_id);
        span.end(Some("failed"));
        let root = CallSpan::start(SpanStart {
            name: "call",
            kind: SpanKind::Client,
            parent: None,
            remote_parent: false,
            attributes: &[],
        });
        assert_ne!(root.context().trace_id, parent.trace_id);
    }

    #[test]
    fn header_round_trip() {
        let t = TraceContext::new_root();
        let mut h = HeaderMap::new();
        t.inject(&mut h);
        assert_eq!(TraceContext::from_headers(Some(&h)), Some(t));
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
        assert_eq!(TraceContext::from_headers(Some(&h)), Some(unsampled));
        assert!(!unsampled.child().sampled);
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            format!("00-{}-{}", t.trace_id, t.span_id).as_str(),
        );
        assert!(TraceContext::from_headers(Some(&h)).is_some_and(|c| c.sampled));
    }

    #[test]
    fn random_ids_use_every_bit() {
        // OpenTelemetry's ratio sampler reads the low 64 bits of a trace id:
        // they must vary fully (a v4 uuid fixes bits 62 and 63 of them).
        let (mut ones, mut zeros) = (0u128, 0u128);
        for _ in 0..256 {
            let id = TraceId::random().get();
            ones |= id;
            zeros |= !id;
        }
        assert_eq!(
            (ones, zeros),
            (u128::MAX, u128::MAX),
            "some bit never varied"
        );
        let (mut ones, mut zeros) = (0u64, 0u64);
        for _ in 0..256 {
            let id = SpanId::random().get();
            ones |= id;
            zeros |= !id;
        }
        assert_eq!((ones, zeros), (u64::MAX, u64::MAX));
    }

    #[test]
    fn only_hex_ids_of_the_right_length_are_read() {
        let t = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&t.traceparent()), Some(t));
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
