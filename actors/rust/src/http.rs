//! Serving HTTP through the `lattice:httpserver` contract.
//!
//! The HTTP server provider calls [`HANDLE_REQUEST`] on the actor with a
//! [`Request`] and sends the [`Response`] the actor returns. Register the
//! handler like any typed handler:
//!
//! ```
//! use lattice_actor::http::{self, RequestExt, ResponseExt};
//!
//! fn handle(req: http::Request) -> Result<http::Response, String> {
//!     match (req.method.as_str(), req.path.as_str()) {
//!         ("GET", "/") => Ok(http::Response::text("hello\n")),
//!         ("POST", "/echo") => Ok(http::Response::ok(req.body)),
//!         ("POST", "/sum") => {
//!             let Ok(numbers) = req.json::<Vec<i64>>() else {
//!                 return Ok(http::Response::status(400, "expected a JSON array of integers\n"));
//!             };
//!             Ok(http::Response::json(&numbers.iter().sum::<i64>()))
//!         }
//!         _ => Ok(http::Response::not_found()),
//!     }
//! }
//!
//! lattice_actor::actor! {
//!     http::HANDLE_REQUEST => handle,
//! }
//! # fn main() {}
//! ```
//!
//! An `Err` from the handler becomes a `500` whose body starts with
//! `actor error: `; return a [`Response`] with the status you mean instead
//! where the client should see something else. The actor needs a link
//! (`lattice ctl link put ACTOR PROVIDER lattice:httpserver address=HOST:PORT`);
//! it does not need `lattice:httpserver` in its claims to be *called*, but
//! listing it documents what the actor is for.
//!
//! [`Request`] and [`Response`] are [`HttpRequest`](lattice::contracts::httpserver::HttpRequest)
//! and [`HttpResponse`](lattice::contracts::httpserver::HttpResponse) from the
//! `lattice` crate; the constructors and accessors here come from the
//! extension traits [`ResponseExt`] and [`RequestExt`], so import them.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use lattice::contracts::httpserver::{
    CONFIG_ADDRESS, CONFIG_MAX_BODY, CONTRACT, HANDLE_REQUEST, HttpRequest as Request,
    HttpResponse as Response,
};

use crate::Error;

/// `content-type` of [`ResponseExt::text`].
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// `content-type` of [`ResponseExt::json`].
pub const APPLICATION_JSON: &str = "application/json";

/// Constructors and builders for [`Response`].
pub trait ResponseExt: Sized {
    /// `200` with `body` and no `content-type`.
    fn ok(body: impl Into<Vec<u8>>) -> Self;

    /// `200` with a text body, `content-type: text/plain; charset=utf-8`.
    fn text(body: impl Into<String>) -> Self;

    /// `200` with `value` as JSON, `content-type: application/json`.
    ///
    /// Should `value` not serialise (a map with non-string keys, a failing
    /// `Serialize` impl), the response is a `500` whose body says why.
    fn json<T: Serialize + ?Sized>(value: &T) -> Self;

    /// `code` with a text body (`content-type: text/plain; charset=utf-8` when
    /// the body is not empty).
    fn status(code: u16, body: impl Into<String>) -> Self;

    /// `404` with the body `not found\n`.
    fn not_found() -> Self {
        Self::status(404, "not found\n")
    }

    /// Replaces the status code.
    #[must_use]
    fn with_status(self, code: u16) -> Self;

    /// Sets `content-type`, replacing any earlier value.
    #[must_use]
    fn with_content_type(self, content_type: &str) -> Self;

    /// The first value of header `name` (any case), if any.
    fn header(&self, name: &str) -> Option<&str>;
}

impl ResponseExt for Response {
    fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response::new(200, body)
    }

    fn text(body: impl Into<String>) -> Self {
        Response::new(200, body.into()).with_content_type(TEXT_PLAIN)
    }

    fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(200, body).with_content_type(APPLICATION_JSON),
            Err(e) => Response::status(
                500,
                format!(
                    "could not encode the response ({}) as JSON: {e}\n",
                    std::any::type_name::<T>()
                ),
            ),
        }
    }

    fn status(code: u16, body: impl Into<String>) -> Self {
        let body = body.into();
        if body.is_empty() {
            Response::new(code, body)
        } else {
            Response::new(code, body).with_content_type(TEXT_PLAIN)
        }
    }

    fn with_status(mut self, code: u16) -> Self {
        self.status = code;
        self
    }

    fn with_content_type(mut self, content_type: &str) -> Self {
        self.headers
            .insert("content-type".to_owned(), vec![content_type.to_owned()]);
        self
    }

    fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// Accessors for [`Request`].
pub trait RequestExt {
    /// The body as UTF-8 text; [`Error::InvalidBody`] when it is not.
    fn text(&self) -> Result<&str, Error>;

    /// The body parsed as JSON into a `T`; [`Error::InvalidBody`] saying what
    /// is wrong when it does not parse.
    fn json<T: DeserializeOwned>(&self) -> Result<T, Error>;

    /// The first value of header `name` (any case), if any.
    fn header(&self, name: &str) -> Option<&str>;
}

impl RequestExt for Request {
    fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::InvalidBody(format!("the request body is not UTF-8 text: {e}")))
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::InvalidBody(format!(
                "the request body is not JSON for {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

fn first_header<'a>(
    headers: &'a std::collections::BTreeMap<String, Vec<String>>,
    name: &str,
) -> Option<&'a str> {
    let values = match headers.get(name) {
        Some(values) => values,
        None => headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)?,
    };
    values.first().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, dispatch, encode};
    use std::collections::BTreeMap;

    fn req(method: &str, path: &str, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            body: body.to_vec(),
            ..Request::default()
        }
    }

    #[test]
    fn constructors() {
        let r = Response::ok(vec![1u8, 2]);
        assert_eq!((r.status, &r.body[..]), (200, &[1u8, 2][..]));
        assert!(r.headers.is_empty());

        let r = Response::text("hi");
        assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));
        assert_eq!(r.header("Content-Type"), Some(TEXT_PLAIN));

        let r = Response::json(&serde_json::json!({"count": 3}));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"count":3}"#);
        assert_eq!(
            r.headers,
            BTreeMap::from([(
                "content-type".to_owned(),
                vec!["application/json".to_owned()]
            )])
        );

        let r = Response::status(503, "busy");
        assert_eq!((r.status, &r.body[..]), (503, &b"busy"[..]));
        assert_eq!(r.header("content-type"), Some(TEXT_PLAIN));
        let r = Response::status(204, "");
        assert!(r.headers.is_empty() && r.body.is_empty());

        let r = Response::not_found();
        assert_eq!((r.status, &r.body[..]), (404, &b"not found\n"[..]));
    }

    #[test]
    fn json_that_cannot_serialise_is_a_500() {
        let bad = BTreeMap::from([(vec![1u8], 2u8)]);
        let r = Response::json(&bad);
        assert_eq!(r.status, 500);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.starts_with("could not encode the response"), "{body}");
        assert_eq!(r.header("content-type"), Some(TEXT_PLAIN));
    }

    #[test]
    fn builders_replace() {
        let r = Response::json(&1)
            .with_status(201)
            .with_content_type("application/problem+json")
            .with_header("X-Id", "7");
        assert_eq!(r.status, 201);
        assert_eq!(
            r.headers["content-type"],
            vec!["application/problem+json".to_owned()]
        );
        assert_eq!(r.header("x-id"), Some("7"));
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn request_helpers() {
        let r = req("POST", "/", br#"{"a": [1, 2]}"#);
        assert_eq!(r.text(), Ok(r#"{"a": [1, 2]}"#));
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct A {
            a: Vec<u8>,
        }
        assert_eq!(r.json::<A>(), Ok(A { a: vec![1, 2] }));
        let err = r.json::<Vec<u8>>().unwrap_err().to_string();
        assert!(
            err.starts_with("invalid body: the request body is not JSON for alloc::vec::Vec<u8>: "),
            "{err}"
        );

        let r = req("POST", "/", &[0xff]);
        let err = r.text().unwrap_err().to_string();
        assert!(
            err.starts_with("invalid body: the request body is not UTF-8 text"),
            "{err}"
        );

        let mut r = req("GET", "/", b"");
        r.headers
            .insert("accept".into(), vec!["a/b".into(), "c/d".into()]);
        assert_eq!(r.header("Accept"), Some("a/b"));
        assert_eq!(r.header("host"), None);
    }

    #[test]
    fn wire_shapes() {
        // What the provider sends: a map with named fields, body as bin.
        let r = req("GET", "/a", &[0]);
        let bytes = encode(&r).unwrap();
        assert_eq!(bytes[0], 0x85, "a fixmap of 5 fields");
        assert!(bytes.windows(3).any(|w| w == [0xc4, 1, 0]), "body is bin");
        // A minimal request (other SDKs or hand-written payloads) decodes.
        #[derive(Serialize)]
        struct Min<'a> {
            method: &'a str,
            path: &'a str,
        }
        let min: Request = decode(
            &encode(&Min {
                method: "GET",
                path: "/",
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(min, req("GET", "/", b""));

        let bytes = encode(&Response::text("ok")).unwrap();
        // fixmap of 3; "status" then 200 as uint8 (too big for a positive fixint)
        assert_eq!(
            bytes[..10],
            [&[0x83, 0xa6][..], b"status", &[0xcc, 200]].concat()
        );
        assert!(
            bytes.windows(4).any(|w| w == [0xc4, 2, b'o', b'k']),
            "body is bin"
        );
    }

    fn handle(req: Request) -> Result<Response, String> {
        match req.path.as_str() {
            "/fail" => Err("boom".into()),
            _ => Ok(Response::json(&req.path)),
        }
    }

    #[test]
    fn typed_handler_for_handle_request() {
        // (`actor!` can be used once per crate; lib.rs's tests use it.)
        crate::register_typed(HANDLE_REQUEST, handle);
        let reply = dispatch(HANDLE_REQUEST, &encode(&req("GET", "/x", b"")).unwrap()).unwrap();
        let resp: Response = decode(&reply).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, br#""/x""#);
        assert_eq!(
            dispatch(HANDLE_REQUEST, &encode(&req("GET", "/fail", b"")).unwrap()),
            Err("boom".into())
        );
        assert_eq!(HANDLE_REQUEST, "HttpServer.HandleRequest");
    }
}
