//! `probe-actor`: an actor that misbehaves on request, for host integration
//! tests and benches.
//!
//! Operations (payloads msgpack unless noted):
//!
//! | operation | payload | reply |
//! | --- | --- | --- |
//! | `Echo` | any bytes | the payload bytes, unchanged |
//! | `Panic` | ignored | never: panics with "probe panicked on purpose" (traps) |
//! | `Loop` | ignored | never: spins forever (for timeouts / epoch interruption) |
//! | `Grow` | `u32` MiB | `u32` MiB allocated and touched, or an error if allocation fails |
//! | `Print` | `String` | `"ok"`, after writing the string to stdout and stderr |
//! | `Call` | [`CallRequest`] map | the callee's reply bytes, raw; or its error |
//! | `Count` | ignored | `u64`: 1 on an instance's first `Count`, then 2, 3, ... |
//! | `Sleep` | `u32` ms | the same `u32`, after sleeping that long (WASI `poll_oneoff`, no busy loop) |
//! | `Env` | `String` name | the environment variable's value (actor config), or nil |
//! | `HttpServer.HandleRequest` | HTTP request | by path: `/echo` the body back, `/garbage` bytes that are no response, `/error` an actor error, `/slow` sleeps 30 s, else 200 `probe` |
//!
//! Build it with
//! `cargo build --target wasm32-wasip1 --profile wasm -p probe-actor`
//! (the file is `probe_actor.wasm`).
//!
//! Its claims list no contract and every actor (`*`), so `Call` reaches any
//! actor; tests that need contract claims replace them (`claims::embed`), and
//! tests of the claims check strip or narrow them.

use lattice_actor::{Bytes, host_call};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Message of the `Panic` operation's panic.
pub const PANIC_MESSAGE: &str = "probe panicked on purpose";

/// `Echo`: returns the payload unchanged.
pub fn echo(payload: &[u8]) -> Result<Vec<u8>, String> {
    Ok(payload.to_vec())
}

/// `Panic`: panics, which traps the instance on wasm.
pub fn panic(_payload: &[u8]) -> Result<Vec<u8>, String> {
    panic!("{PANIC_MESSAGE}")
}

/// `Loop`: never returns. The loop keeps state the optimiser cannot see
/// through, so it is not removed.
pub fn spin(_payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Bytes in a MiB.
const MIB: usize = 1024 * 1024;
/// Touch one byte in every 4 KiB (every wasm page is 64 KiB).
const TOUCH_STRIDE: usize = 4096;

/// `Grow`: allocates `mib` MiB, writes to every page of it, frees it and
/// returns `mib`. Fails with an error (not a trap) if the allocation cannot be
/// made, as long as the host refuses `memory.grow` rather than trapping.
pub fn grow(mib: u32) -> Result<u32, String> {
    let bytes = usize::try_from(mib)
        .ok()
        .and_then(|m| m.checked_mul(MIB))
        .ok_or_else(|| format!("Grow: {mib} MiB does not fit in the address space"))?;
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(bytes)
        .map_err(|e| format!("Grow: could not allocate {mib} MiB: {e}"))?;
    for page in buf.spare_capacity_mut().chunks_mut(TOUCH_STRIDE) {
        page[0].write(1);
    }
    std::hint::black_box(&mut buf);
    Ok(mib)
}

/// `Print`: writes the string to stdout and stderr, returns `"ok"`.
pub fn print(text: String) -> Result<String, String> {
    println!("{text}");
    eprintln!("{text}");
    Ok("ok".to_owned())
}

/// Payload of `Call`: whom to call, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// Namespace to call: an actor id or a contract id.
    pub target: String,
    /// Operation to call.
    pub operation: String,
    /// Payload to send, passed through as is (msgpack `bin`; an array of
    /// integers is accepted too).
    pub payload: Bytes,
}

/// `Call`: calls `target`'s `operation` on the default link with `payload`
/// and returns the reply bytes unchanged, or the error.
pub fn call(payload: &[u8]) -> Result<Vec<u8>, String> {
    let request: CallRequest = lattice_actor::decode(payload)
        .map_err(|e| format!("Call: payload is not a CallRequest: {e}"))?;
    host_call("", &request.target, &request.operation, &request.payload).map_err(|e| e.to_string())
}

static COUNT: AtomicU64 = AtomicU64::new(0);

/// `Count`: how many times `Count` has run in this instance, this call included.
pub fn count(_: IgnoredAny) -> Result<u64, String> {
    Ok(COUNT.fetch_add(1, Ordering::Relaxed) + 1)
}

/// `Sleep`: waits `ms` milliseconds through the WASI clock (the host's
/// `poll_oneoff`, which does not burn CPU) and returns `ms`: a slow call for
/// drain and concurrency tests.
pub fn sleep(ms: u32) -> Result<u32, String> {
    std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    Ok(ms)
}

/// `HttpServer.HandleRequest`: misbehaves by path, for HTTP provider tests.
pub fn handle_http(payload: &[u8]) -> Result<Vec<u8>, String> {
    use lattice_actor::http::{Request, Response};
    let req: Request = lattice_actor::decode(payload).map_err(|e| e.to_string())?;
    let resp = match req.path.as_str() {
        "/echo" => Response {
            status: 200,
            headers: Default::default(),
            body: req.body,
        },
        "/garbage" => return Ok(vec![0xc1, 0x00]),
        "/error" => return Err("probe refused the request".into()),
        "/slow" => {
            std::thread::sleep(std::time::Duration::from_secs(30));
            Response::default()
        }
        _ => Response {
            status: 200,
            headers: Default::default(),
            body: b"probe".to_vec(),
        },
    };
    lattice_actor::encode(&resp).map_err(|e| e.to_string())
}

/// `Env`: the value of an environment variable (actor config), or nil.
pub fn env(name: String) -> Result<Option<String>, String> {
    Ok(std::env::var(name).ok())
}

lattice_actor::claims! {
    name: "probe",
    version: "0.0.1",
    contracts: [],
    actors: ["*"],
}

lattice_actor::actor! {
    "Env" => env,
    "HttpServer.HandleRequest" => raw handle_http,
    "Echo" => raw echo,
    "Panic" => raw panic,
    "Loop" => raw spin,
    "Grow" => grow,
    "Print" => print,
    "Call" => raw call,
    "Count" => count,
    "Sleep" => sleep,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_actor::{decode, dispatch, encode};

    #[test]
    fn operations_through_dispatch() {
        wapc_init();
        assert_eq!(dispatch("Echo", &[9, 8, 7]).unwrap(), [9, 8, 7]);
        assert_eq!(
            decode::<u32>(&dispatch("Grow", &encode(&3u32).unwrap()).unwrap()).unwrap(),
            3
        );
        assert_eq!(
            decode::<String>(&dispatch("Print", &encode("hi").unwrap()).unwrap()).unwrap(),
            "ok"
        );
        assert_eq!(
            decode::<u32>(&dispatch("Sleep", &encode(&1u32).unwrap()).unwrap()).unwrap(),
            1
        );
        let first: u64 = decode(&dispatch("Count", &[]).unwrap()).unwrap();
        let second: u64 = decode(&dispatch("Count", &encode(&()).unwrap()).unwrap()).unwrap();
        assert_eq!(second, first + 1);
        let call = encode(&CallRequest {
            target: "other".into(),
            operation: "Echo".into(),
            payload: Bytes(vec![1]),
        })
        .unwrap();
        assert_eq!(
            dispatch("Call", &call).unwrap_err(),
            "host calls are only available inside a Lattice host"
        );
        assert!(
            dispatch("Call", &encode("nope").unwrap())
                .unwrap_err()
                .starts_with("Call: payload is not a CallRequest")
        );
    }

    #[test]
    fn grow_reports_impossible_sizes() {
        assert!(grow(u32::MAX).is_err());
    }

    #[test]
    #[should_panic(expected = "probe panicked on purpose")]
    fn panic_panics() {
        let _ = panic(&[]);
    }
}
