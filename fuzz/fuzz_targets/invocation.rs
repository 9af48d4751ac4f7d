//! The msgpack invocation envelope every actor and provider decodes from NATS.
#![no_main]

use lattice::rpc::{Invocation, InvocationResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(inv) = Invocation::decode(data) {
        // What decodes re-encodes and decodes to the same value.
        let again = Invocation::decode(&inv.encode().expect("encode")).expect("decode");
        assert_eq!(again, inv);
    }
    let _ = InvocationResponse::decode(data);
});
