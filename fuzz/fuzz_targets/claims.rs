//! The claims custom section of an uploaded module.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lattice::claims::read(data);
});
