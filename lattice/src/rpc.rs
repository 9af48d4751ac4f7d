//! The data plane: invocations of actors (and later providers) as msgpack.
//!
//! A call is a NATS request on `lattice.{lid}.rpc.{target}` whose body is an
//! [`Invocation`] and whose reply is an [`InvocationResponse`], both msgpack maps
//! with named fields so SDKs in any language can read them. The trace context rides
//! in the `traceparent` header (see [`crate::trace`]).

use serde::{Deserialize, Serialize};

use crate::Error;

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
    /// Encodes as msgpack with named fields.
    ///
    /// # Errors
    /// [`Error::Codec`] — practically unreachable for this plain struct.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        rmp_serde::to_vec_named(self).map_err(|e| codec("encode", "invocation", e))
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
        rmp_serde::to_vec_named(self).map_err(|e| codec("encode", "invocation response", e))
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
        };
        let bytes = inv.encode().unwrap();
        assert_eq!(Invocation::decode(&bytes).unwrap(), inv);
        // named fields: the map carries the key "operation"
        assert!(bytes.windows(9).any(|w| w == b"operation"));
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
