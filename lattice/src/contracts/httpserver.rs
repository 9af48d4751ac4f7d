//! `lattice:httpserver`: an HTTP server that turns requests into actor calls.
//!
//! A link's config `address=HOST:PORT` makes the provider listen there for that
//! actor. Each request becomes a call of [`HANDLE_REQUEST`] on the actor with an
//! [`HttpRequest`]; the actor answers an [`HttpResponse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The contract id.
pub const CONTRACT: &str = "lattice:httpserver";

/// The operation the provider calls on the actor: [`HttpRequest`] → [`HttpResponse`].
pub const HANDLE_REQUEST: &str = "HttpServer.HandleRequest";

/// Link config key: where to listen, `HOST:PORT`.
pub const CONFIG_ADDRESS: &str = "address";
/// Link config key: largest request body accepted, in bytes (413 beyond).
pub const CONFIG_MAX_BODY: &str = "max_body_bytes";
/// Link config key: connections the listener keeps open at once (more get 503).
pub const CONFIG_MAX_CONNECTIONS: &str = "max_connections";
/// Link config key: how long a client has to send a request's headers (and to
/// start speaking HTTP at all), e.g. `10s`.
pub const CONFIG_HEADER_TIMEOUT: &str = "header_timeout";
/// Link config key: how long a connection may stay open with no request in
/// flight, e.g. `60s`.
pub const CONFIG_IDLE_TIMEOUT: &str = "idle_timeout";

/// An HTTP request, as the actor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-encoded as received, e.g. `/items/42`.
    pub path: String,
    /// The raw query string without `?`; empty when none.
    #[serde(default)]
    pub query: String,
    /// Header names in lowercase, each with all its values in order.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body bytes.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
}

/// The actor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code, 200–999 (1xx cannot be a final response; the HTTP provider answers 500 for them).
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body bytes.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
}

impl Default for HttpResponse {
    fn default() -> Self {
        HttpResponse {
            status: 200,
            headers: BTreeMap::new(),
            body: Vec::new(),
        }
    }
}

impl HttpResponse {
    /// A response with `status` and a body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// Adds a header value.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_response_decodes() {
        #[derive(Serialize)]
        struct Min {
            status: u16,
        }
        let bytes = rmp_serde::to_vec_named(&Min { status: 204 }).unwrap();
        let r: HttpResponse = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    #[test]
    fn body_is_bin() {
        let r = HttpResponse::new(200, vec![0u8, 255]);
        let bytes = rmp_serde::to_vec_named(&r).unwrap();
        // 0xc4 = bin8 marker followed by length 2
        assert!(bytes.windows(4).any(|w| w == [0xc4, 2, 0, 255]));
    }
}
