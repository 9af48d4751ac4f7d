//! The error type returned by host calls and msgpack helpers.

use std::fmt;

/// What went wrong in a call to the host, or while encoding or decoding msgpack.
///
/// Handlers can return it directly (it implements [`fmt::Display`]) or turn it
/// into a `String` with `?`, since `String: From<Error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The host (or the actor or provider it routed the call to) answered with an error.
    Host {
        /// The namespace that was called: a contract id or an actor id.
        namespace: String,
        /// The operation that was called.
        operation: String,
        /// The error message the host returned.
        message: String,
    },
    /// The code is not running inside a Lattice host (for example in a native unit test),
    /// so there is no host to call.
    NoHost,
    /// A value could not be encoded as msgpack.
    Encode(String),
    /// Bytes could not be decoded as msgpack into the wanted type.
    Decode(String),
    /// An HTTP body was not what was asked for: not UTF-8 text, or not JSON
    /// of the wanted type.
    InvalidBody(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Host {
                namespace,
                operation,
                message,
            } => write!(f, "call to {namespace} {operation} failed: {message}"),
            Error::NoHost => f.write_str("host calls are only available inside a Lattice host"),
            Error::Encode(msg) => write!(f, "could not encode msgpack: {msg}"),
            Error::Decode(msg) => write!(f, "could not decode msgpack: {msg}"),
            Error::InvalidBody(msg) => write!(f, "invalid body: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(err: Error) -> Self {
        err.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_call() {
        let err = Error::Host {
            namespace: "lattice:keyvalue".into(),
            operation: "KeyValue.Get".into(),
            message: "no such key".into(),
        };
        assert_eq!(
            err.to_string(),
            "call to lattice:keyvalue KeyValue.Get failed: no such key"
        );
        let s: String = Error::NoHost.into();
        assert_eq!(s, "host calls are only available inside a Lattice host");
    }
}
