//! Encoding requests and decoding responses without going through the owned
//! [`HttpRequest`](lattice::contracts::httpserver::HttpRequest) /
//! [`HttpResponse`](lattice::contracts::httpserver::HttpResponse) types.
//!
//! The bytes on the wire are exactly what `rmp_serde::to_vec_named` produces for
//! those types (and what `rmp_serde::from_slice` accepts), but the request is
//! serialized straight from hyper's parts (no `String` per header) and the response
//! body and header values are sliced out of the actor's reply without copying.

use std::{borrow::Cow, fmt};

use bytes::Bytes;
use hyper::{
    HeaderMap,
    header::{GetAll, HeaderName, HeaderValue},
};
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq},
};

/// A borrowed `HttpRequest`: same field names, same msgpack encoding.
#[derive(Serialize)]
pub(crate) struct RequestRef<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: HeadersRef<'a>,
    #[serde(with = "serde_bytes")]
    pub(crate) body: &'a [u8],
}

/// Request headers as a map of lowercase name → all values, in order.
pub(crate) struct HeadersRef<'a> {
    pub(crate) map: &'a HeaderMap,
    /// `host` taken from the URI authority (HTTP/2 `:authority`) when the request
    /// has no `host` header.
    pub(crate) host: Option<&'a str>,
}

impl Serialize for HeadersRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = self.map.keys_len() + usize::from(self.host.is_some());
        let mut m = s.serialize_map(Some(len))?;
        if let Some(host) = self.host {
            m.serialize_entry("host", &[host])?;
        }
        for name in self.map.keys() {
            // `HeaderName`s are lowercase already.
            m.serialize_entry(name.as_str(), &Values(self.map.get_all(name)))?;
        }
        m.end()
    }
}

struct Values<'a>(GetAll<'a, HeaderValue>);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.iter().count()))?;
        for value in self.0.iter() {
            // Header values are bytes; the contract has strings. Valid UTF-8 (the
            // overwhelmingly common case) is borrowed, anything else is replaced.
            seq.serialize_element(&String::from_utf8_lossy(value.as_bytes()))?;
        }
        seq.end()
    }
}

/// The actor's reply, decoded.
#[derive(Debug)]
pub(crate) struct DecodedResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Headers the actor sent that HTTP cannot carry (bad name or value).
    pub(crate) dropped: Vec<String>,
}

/// Decodes an `HttpResponse` from msgpack (map with named fields or array).
pub(crate) fn decode_response(
    payload: Vec<u8>,
) -> Result<DecodedResponse, rmp_serde::decode::Error> {
    let payload = Bytes::from(payload);
    let mut de = rmp_serde::Deserializer::from_read_ref(&payload[..]);
    ResponseSeed { payload: &payload }.deserialize(&mut de)
}

const FIELDS: &[&str] = &["status", "headers", "body"];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Status,
    Headers,
    Body,
    #[serde(other)]
    Other,
}

struct ResponseSeed<'p> {
    payload: &'p Bytes,
}

impl<'de> DeserializeSeed<'de> for ResponseSeed<'de> {
    type Value = DecodedResponse;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("HttpResponse", FIELDS, self)
    }
}

impl<'de> ResponseSeed<'de> {
    fn body(&self, body: Cow<'de, [u8]>) -> Bytes {
        match body {
            Cow::Borrowed(slice) if !slice.is_empty() => self.payload.slice_ref(slice),
            Cow::Borrowed(_) => Bytes::new(),
            Cow::Owned(vec) => Bytes::from(vec),
        }
    }
}

impl<'de> Visitor<'de> for ResponseSeed<'de> {
    type Value = DecodedResponse;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an HttpResponse {status, headers, body}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut status = None;
        let mut headers = HeaderMap::new();
        let mut dropped = Vec::new();
        let mut body = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Status => {
                    if status.is_some() {
                        return Err(de::Error::duplicate_field("status"));
                    }
                    status = Some(map.next_value::<u16>()?);
                }
                Field::Headers => map.next_value_seed(HeadersSeed {
                    payload: self.payload,
                    headers: &mut headers,
                    dropped: &mut dropped,
                })?,
                Field::Body => {
                    if body.is_some() {
                        return Err(de::Error::duplicate_field("body"));
                    }
                    body = Some(map.next_value_seed(BodySeed)?);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let status = status.ok_or_else(|| de::Error::missing_field("status"))?;
        let body = body.map(|b| self.body(b)).unwrap_or_default();
        Ok(DecodedResponse {
            status,
            headers,
            body,
            dropped,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let status = seq
            .next_element::<u16>()?
            .ok_or_else(|| de::Error::invalid_length(0, &"an HttpResponse with a status"))?;
        let mut headers = HeaderMap::new();
        let mut dropped = Vec::new();
        seq.next_element_seed(HeadersSeed {
            payload: self.payload,
            headers: &mut headers,
            dropped: &mut dropped,
        })?;
        let body = seq.next_element_seed(BodySeed)?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let body = body.map(|b| self.body(b)).unwrap_or_default();
        Ok(DecodedResponse {
            status,
            headers,
            body,
            dropped,
        })
    }
}

/// The body: `bin` (borrowed), or whatever else `serde_bytes` accepts.
struct BodySeed;

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Cow<'de, [u8]>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        serde_bytes::deserialize(d)
    }
}

/// Response headers, appended straight into a [`HeaderMap`].
struct HeadersSeed<'p, 'h> {
    payload: &'p Bytes,
    headers: &'h mut HeaderMap,
    dropped: &'h mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for HeadersSeed<'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadersSeed<'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of header name to a list of values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<NameKey<'de>>()? {
            match HeaderName::from_bytes(name.0.as_bytes()) {
                Ok(name) => map.next_value_seed(ValuesSeed {
                    payload: self.payload,
                    name,
                    headers: &mut *self.headers,
                    dropped: &mut *self.dropped,
                })?,
                Err(_) => {
                    self.dropped
                        .push(format!("invalid header name {:?}", truncate(&name.0, 64)));
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A header name, borrowed when possible.
struct NameKey<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for NameKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NameKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(NameKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NameKey(Cow::Owned(v.to_owned())))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(NameKey(String::from_utf8_lossy(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(NameKey(Cow::Owned(String::from_utf8_lossy(v).into_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The values of one header: a list of strings (a single string is accepted too).
struct ValuesSeed<'p, 'h> {
    payload: &'p Bytes,
    name: HeaderName,
    headers: &'h mut HeaderMap,
    dropped: &'h mut Vec<String>,
}

impl ValuesSeed<'_, '_> {
    fn push(&mut self, value: Result<HeaderValue, hyper::header::InvalidHeaderValue>) {
        match value {
            Ok(value) => {
                self.headers.append(self.name.clone(), value);
            }
            Err(_) => self
                .dropped
                .push(format!("invalid value for header {:?}", self.name.as_str())),
        }
    }

    fn borrowed(&mut self, v: &[u8]) {
        let value = if v.is_empty() {
            Ok(HeaderValue::from_static(""))
        } else {
            HeaderValue::from_maybe_shared(self.payload.slice_ref(v))
        };
        self.push(value);
    }
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of header values")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<ValueRef<'de>>()? {
            match value.0 {
                Cow::Borrowed(v) => self.borrowed(v),
                Cow::Owned(v) => self.push(HeaderValue::from_bytes(&v)),
            }
        }
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.borrowed(v.as_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.push(HeaderValue::from_str(v));
        Ok(())
    }
}

/// One header value, borrowed when possible.
struct ValueRef<'de>(Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for ValueRef<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ValueRef(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ValueRef(Cow::Owned(v.as_bytes().to_vec())))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(ValueRef(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(ValueRef(Cow::Owned(v.to_vec())))
            }
        }
        d.deserialize_str(V)
    }
}

/// At most `max` characters of `s`.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lattice::contracts::httpserver::{HttpRequest, HttpResponse};

    use super::*;

    #[test]
    fn request_encodes_like_the_contract_type() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("content-type", HeaderValue::from_static("text/plain"));
        map.append("x-bin", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        let body = [0u8, 1, 2, 255];
        let r = RequestRef {
            method: "POST",
            path: "/a/b",
            query: "x=1&y=2",
            headers: HeadersRef {
                map: &map,
                host: Some("example:8080"),
            },
            body: &body,
        };
        let bytes = rmp_serde::to_vec_named(&r).unwrap();
        let decoded: HttpRequest = rmp_serde::from_slice(&bytes).unwrap();
        let expected = HttpRequest {
            method: "POST".into(),
            path: "/a/b".into(),
            query: "x=1&y=2".into(),
            headers: BTreeMap::from([
                ("content-type".into(), vec!["text/plain".into()]),
                ("host".into(), vec!["example:8080".into()]),
                ("x-a".into(), vec!["1".into(), "2".into()]),
                ("x-bin".into(), vec!["café".into()]),
            ]),
            body: body.to_vec(),
        };
        assert_eq!(decoded, expected);
        // byte-for-byte the same as the owned type when the map order agrees
        let mut sorted = HeaderMap::new();
        for (k, v) in &expected.headers {
            for v in v {
                sorted.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
        }
        let r = RequestRef {
            headers: HeadersRef {
                map: &sorted,
                host: None,
            },
            ..r
        };
        assert_eq!(
            rmp_serde::to_vec_named(&r).unwrap(),
            rmp_serde::to_vec_named(&expected).unwrap()
        );
    }

    #[test]
    fn response_decodes_named_and_positional() {
        let r = HttpResponse::new(201, vec![9u8, 0, 255])
            .with_header("X-One", "a")
            .with_header("x-one", "b")
            .with_header("content-type", "application/octet-stream");
        for bytes in [
            rmp_serde::to_vec_named(&r).unwrap(),
            rmp_serde::to_vec(&r).unwrap(),
        ] {
            let d = decode_response(bytes).unwrap();
            assert_eq!(d.status, 201);
            assert_eq!(&d.body[..], &[9, 0, 255]);
            let ones: Vec<_> = d.headers.get_all("x-one").iter().collect();
            assert_eq!(ones, ["a", "b"]);
            assert_eq!(d.headers["content-type"], "application/octet-stream");
            assert!(d.dropped.is_empty());
        }
    }

    #[test]
    fn response_minimal_and_extra_fields() {
        #[derive(Serialize)]
        struct Min {
            status: u16,
            extra: Vec<u32>,
        }
        let bytes = rmp_serde::to_vec_named(&Min {
            status: 204,
            extra: vec![1, 2],
        })
        .unwrap();
        let d = decode_response(bytes).unwrap();
        assert_eq!(d.status, 204);
        assert!(d.body.is_empty() && d.headers.is_empty());
    }

    #[test]
    fn bad_headers_are_dropped_not_fatal() {
        let r = HttpResponse::new(200, "ok")
            .with_header("bad name", "x")
            .with_header("x-ok", "fine")
            .with_header("x-nl", "a\nb");
        let d = decode_response(rmp_serde::to_vec_named(&r).unwrap()).unwrap();
        assert_eq!(d.headers.len(), 1);
        assert_eq!(d.headers["x-ok"], "fine");
        assert_eq!(d.dropped.len(), 2, "{:?}", d.dropped);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_response(b"\xc1garbage".to_vec()).is_err());
        assert!(decode_response(Vec::new()).is_err());
        let no_status = rmp_serde::to_vec_named(&BTreeMap::from([("body", "x")])).unwrap();
        assert!(decode_response(no_status).is_err());
        let big_status = rmp_serde::to_vec_named(&BTreeMap::from([("status", 70000u32)])).unwrap();
        assert!(decode_response(big_status).is_err());
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
