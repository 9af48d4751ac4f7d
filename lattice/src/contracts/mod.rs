//! Capability contracts: their ids, operations and msgpack payloads.
//!
//! Every payload is a msgpack map with named fields (`rmp_serde::to_vec_named`),
//! byte fields are msgpack `bin`. `docs/contracts.md` describes the same schemas
//! field by field for SDKs in other languages.

pub mod httpclient;
pub mod httpserver;
pub mod keyvalue;
