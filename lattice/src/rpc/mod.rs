//! The data plane: invocations of actors and providers as msgpack.
//!
//! A call is a NATS request on the subject of its [`Target`]
//! (`lattice.{lid}.rpc.actor.{id}` or `lattice.{lid}.rpc.provider.{id}`) whose
//! body is an [`Invocation`] and whose reply is an [`InvocationResponse`], both
//! msgpack maps with named fields so SDKs in any language can read them. The trace
//! context and the request for progress messages ride in the invocation
//! ([`Invocation::traceparent`], [`Invocation::progress_ms`]), not in NATS
//! headers, which cost a call noticeably more (see [`crate::trace`]).
//!
//! * [`remote`]: sending an invocation over NATS (the CLI, hosts, providers);
//! * [`serve`]: answering invocations from a subscription, for actors and
//!   providers alike.

#[cfg(feature = "client")]
pub mod remote;
#[cfg(feature = "client")]
pub mod serve;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    id::{ActorId, ContractId, LatticeId, LinkName, ProviderId},
    subject,
    trace::TraceContext,
};

/// What an invocation is for, resolved once where the call enters the lattice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An actor, by id: any of its replicas in the lattice may answer.
    Actor(ActorId),
    /// A provider serving `contract` for the calling actor through its link `link`.
    Provider {
        /// The provider the link names.
        provider: ProviderId,
        /// The contract called.
        contract: ContractId,
        /// The caller's link name.
        link: LinkName,
    },
}

impl Target {
    /// The subject the invocation is sent to.
    pub fn subject(&self, lattice: &LatticeId) -> String {
        match self {
            Target::Actor(a) => subject::actor_rpc(lattice, a),
            Target::Provider { provider, .. } => subject::provider_rpc(lattice, provider),
        }
    }

    /// The id of the actor or provider.
    pub fn id(&self) -> &str {
        match self {
            Target::Actor(a) => a.as_str(),
            Target::Provider { provider, .. } => provider.as_str(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Actor(a) => write!(f, "actor {:?}", a.as_str()),
            Target::Provider {
                provider,
                contract,
                link,
            } => write!(
                f,
                "provider {provider} for contract {contract} (link {:?})",
                link.as_str()
            ),
        }
    }
}

/// Room for field names, ids and the trace context of an encoded
/// [`Invocation`] or [`InvocationResponse`] besides its payload.
const ENCODING_OVERHEAD: usize = 256;

/// One call of an operation on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Who calls: an actor id, or `cli`/`host:<id>` for calls from outside actors.
    pub origin: String,
    /// The actor (or provider) id being called.
    pub target: String,
    /// The operation, e.g. `SayHello` or `KeyValue.Get`.
    pub operation: String,
    /// The msgpack-encoded argument of the operation.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// For calls to a provider: the link name the actor used (its config applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_name: Option<String>,
    /// The caller's trace context, a W3C `traceparent` value. Carried in the
    /// body rather than a NATS header: a message with headers costs the
    /// client and the server enough to take some 20 % off calls/s. (The
    /// `traceparent` header is still read when this is absent.)
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::trace::as_traceparent"
    )]
    pub traceparent: Option<TraceContext>,
    /// Asks the serving side for progress messages every this many
    /// milliseconds while the call runs, as the `Lattice-Progress` header does
    /// for other requests ([`remote::PROGRESS_HEADER`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_ms: Option<u64>,
}

/// The answer to an [`Invocation`]: a payload, or an error message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InvocationResponse {
    /// The msgpack-encoded result (empty when `error` is set).
    #[serde(with = "serde_bytes", default)]
    pub payload: Vec<u8>,
    /// Set when the call failed; says what failed and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Invocation {
    /// An invocation of `target` from `origin`.
    pub fn new(
        origin: impl Into<String>,
        target: &Target,
        operation: impl Into<String>,
        payload: Vec<u8>,
    ) -> Self {
        Invocation {
            origin: origin.into(),
            target: target.id().to_string(),
            operation: operation.into(),
            payload,
            link_name: match target {
                Target::Actor(_) => None,
                Target::Provider { link, .. } => Some(link.to_string()),
            },
            traceparent: None,
            progress_ms: None,
        }
    }

    /// Encodes as msgpack with named fields.
    ///
    /// # Errors
    /// [`Error::Codec`] — practically unreachable for this plain struct.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        // Sized up front: grown from empty, the buffer was reallocated (and
        // copied) a few times on every call.
        let mut buf = Vec::with_capacity(ENCODING_OVERHEAD + self.payload.len());
        rmp_serde::encode::write_named(&mut buf, self)
            .map_err(|e| codec("encode", "invocation", e))?;
        Ok(buf)
    }

    /// Decodes from msgpack.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not an invocation.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        rmp_serde::from_slice(bytes).map_err(|e| codec("decode", "invocation", e))
    }
}

impl InvocationResponse {
    /// A successful response.
    pub fn ok(payload: Vec<u8>) -> Self {
        InvocationResponse {
            payload,
            error: None,
        }
    }

    /// A failed response.
    pub fn err(message: impl Into<String>) -> Self {
        InvocationResponse {
            payload: Vec::new(),
            error: Some(message.into()),
        }
    }

    /// Encodes as msgpack with named fields.
    ///
    /// # Errors
    /// [`Error::Codec`] — practically unreachable for this plain struct.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let error = self.error.as_ref().map_or(0, String::len);
        let mut buf = Vec::with_capacity(ENCODING_OVERHEAD + self.payload.len() + error);
        rmp_serde::encode::write_named(&mut buf, self)
            .map_err(|e| codec("encode", "invocation response", e))?;
        Ok(buf)
    }

    /// Decodes from msgpack.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes are not a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        rmp_serde::from_slice(bytes).map_err(|e| codec("decode", "invocation response", e))
    }

    /// Turns the response into the payload or an [`Error::Remote`].
    ///
    /// # Errors
    /// [`Error::Remote`] carrying the callee's message.
    pub fn into_result(self) -> Result<Vec<u8>, Error> {
        match self.error {
            Some(e) => Err(Error::Remote(e)),
            None => Ok(self.payload),
        }
    }
}

fn codec(action: &'static str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Codec {
        action,
        what: what.to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_round_trip_uses_named_fields() {
        let inv = Invocation {
            origin: "cli".into(),
            target: "hello".into(),
            operation: "SayHello".into(),
            payload: vec![0xa5, b'w', b'o', b'r', b'l', b'd'],
            link_name: None,
            traceparent: None,
            progress_ms: None,
        };
        let bytes = inv.encode().unwrap();
        assert_eq!(Invocation::decode(&bytes).unwrap(), inv);
        // named fields: the map carries the key "operation"
        assert!(bytes.windows(9).any(|w| w == b"operation"));
        // Unset optional fields are left out, so older readers see nothing new.
        assert!(!bytes.windows(11).any(|w| w == b"traceparent"));
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let traced = Invocation {
            traceparent: TraceContext::parse(value),
            progress_ms: Some(250),
            ..inv.clone()
        };
        let bytes = traced.encode().unwrap();
        // On the wire: the W3C string, as before the field was typed.
        assert!(bytes.windows(value.len()).any(|w| w == value.as_bytes()));
        assert_eq!(Invocation::decode(&bytes).unwrap(), traced);

        // A malformed traceparent from the network is no trace, not an
        // undecodable call; a nil one too.
        #[derive(Serialize)]
        struct Raw<'a> {
            origin: &'a str,
            target: &'a str,
            operation: &'a str,
            #[serde(with = "serde_bytes")]
            payload: &'a [u8],
            traceparent: Option<&'a str>,
        }
        // Sent as msgpack bin (valid UTF-8): read as the string would be.
        #[derive(Serialize)]
        struct RawBin<'a> {
            origin: &'a str,
            target: &'a str,
            operation: &'a str,
            #[serde(with = "serde_bytes")]
            payload: &'a [u8],
            #[serde(with = "serde_bytes")]
            traceparent: &'a [u8],
        }
        let bin = RawBin {
            origin: "cli",
            target: "hello",
            operation: "SayHello",
            payload: &inv.payload,
            traceparent: value.as_bytes(),
        };
        let decoded = Invocation::decode(&rmp_serde::to_vec_named(&bin).unwrap()).unwrap();
        assert_eq!(decoded.traceparent, TraceContext::parse(value));
        for sent in [Some("00-nonsense"), Some(""), None] {
            let raw = Raw {
                origin: "cli",
                target: "hello",
                operation: "SayHello",
                payload: &inv.payload,
                traceparent: sent,
            };
            let decoded = Invocation::decode(&rmp_serde::to_vec_named(&raw).unwrap()).unwrap();
            assert_eq!(decoded, inv, "{sent:?}");
        }
    }

    #[test]
    fn targets_name_their_subject_and_kind() {
        let l = LatticeId::new("prod").unwrap();
        let actor = Target::Actor(ActorId::new("kv").unwrap());
        let provider = Target::Provider {
            provider: ProviderId::new("kv").unwrap(),
            contract: ContractId::new("lattice:keyvalue").unwrap(),
            link: LinkName::default_name(),
        };
        // The same id, two subjects: an actor named like a provider is not it.
        assert_eq!(actor.subject(&l), "lattice.prod.rpc.actor.kv");
        assert_eq!(provider.subject(&l), "lattice.prod.rpc.provider.kv");
        assert_eq!(actor.to_string(), "actor \"kv\"");
        assert_eq!(
            provider.to_string(),
            "provider kv for contract lattice:keyvalue (link \"default\")"
        );
        let inv = Invocation::new("probe", &provider, "KeyValue.Get", vec![]);
        assert_eq!(inv.link_name.as_deref(), Some("default"));
        assert_eq!(Invocation::new("cli", &actor, "X", vec![]).link_name, None);
    }

    #[test]
    fn response_into_result() {
        assert_eq!(
            InvocationResponse::ok(vec![1]).into_result().unwrap(),
            vec![1]
        );
        let err = InvocationResponse::err("boom").into_result().unwrap_err();
        assert_eq!(err.to_string(), "boom");
        let r =
            InvocationResponse::decode(&InvocationResponse::err("x").encode().unwrap()).unwrap();
        assert_eq!(r.error.as_deref(), Some("x"));
    }

    #[test]
    fn garbage_is_a_codec_error() {
        let err = Invocation::decode(b"\xc1nope").unwrap_err().to_string();
        assert!(err.contains("could not decode invocation"), "{err}");
    }
}
