//! The msgpack payloads of the HTTP server and key-value contracts.
#![no_main]

use lattice::contracts::{httpserver, keyvalue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rmp_serde::from_slice::<httpserver::HttpRequest>(data);
    let _ = rmp_serde::from_slice::<httpserver::HttpResponse>(data);
    let _ = rmp_serde::from_slice::<keyvalue::GetRequest>(data);
    let _ = rmp_serde::from_slice::<keyvalue::SetRequest>(data);
    let _ = rmp_serde::from_slice::<keyvalue::IncrementRequest>(data);
    let _ = rmp_serde::from_slice::<keyvalue::KeysRequest>(data);
});
