//! Write [Lattice](https://example.invalid/lattice) actors in Rust.
//!
//! An actor is a `wasm32-wasip1` `cdylib` that speaks the
//! [waPC](https://wapc.io) guest ABI. This crate provides that ABI
//! (`__guest_call` is exported for you), a table of operation handlers,
//! typed msgpack (de)serialisation, calls to other actors and to providers,
//! and logging.
//!
//! ```
//! use lattice_actor::actor;
//!
//! /// Typed handler: the payload is decoded from msgpack, the reply encoded.
//! fn say_hello(name: String) -> Result<String, String> {
//!     Ok(format!("Hello, {name}!"))
//! }
//!
//! /// Raw handler: bytes in, bytes out.
//! fn echo(payload: &[u8]) -> Result<Vec<u8>, String> {
//!     Ok(payload.to_vec())
//! }
//!
//! // Emits `wapc_init`, which the host calls once per instance.
//! actor! {
//!     "SayHello" => say_hello,
//!     "Echo" => raw echo,
//! }
//!
//! # fn main() {
//! // In a unit test, run handlers the way the host would:
//! wapc_init();
//! let reply = lattice_actor::dispatch("SayHello", &lattice_actor::encode("Ada").unwrap());
//! let reply: String = lattice_actor::decode(&reply.unwrap()).unwrap();
//! assert_eq!(reply, "Hello, Ada!");
//! # }
//! ```
//!
//! Build with
//! `cargo build --target wasm32-wasip1 --profile wasm -p NAME`; the crate
//! needs `crate-type = ["cdylib"]` (add `"rlib"` to unit-test it natively).
//!
//! # Payloads
//!
//! Payloads are msgpack. Structs are encoded as maps keyed by field name
//! ([`rmp_serde::to_vec_named`]) so actors written with other SDKs can read
//! them; decoding accepts maps and arrays. Use [`Bytes`] for byte strings
//! (msgpack `bin`).
//!
//! # Instances, state and panics
//!
//! Each instance serves one call at a time, so handlers and any state kept
//! in statics need no locking. A panic in a handler aborts, which traps the
//! wasm instance; the host reports the trap (the panic message is also passed
//! to the host as the call's error, and printed to stderr) and discards the
//! instance. Return `Err` for failures the caller should handle.
//!
//! # Contracts and claims
//!
//! Capabilities come from providers through contracts: [`keyvalue`] is a
//! typed client for `lattice:keyvalue`, [`http`] has the request and response
//! types of `lattice:httpserver` (whose provider calls the actor's
//! `HttpServer.HandleRequest`). Other contracts are reachable with [`call`].
//! An actor may call a contract only when its claims list it and a link for
//! it exists, and another actor ([`call_actor`]) only when its claims list
//! that actor's id or `*`; declare the claims with [`claims!`]:
//!
//! ```
//! use lattice_actor::http::{self, ResponseExt};
//! use lattice_actor::keyvalue;
//!
//! fn handle(req: http::Request) -> Result<http::Response, String> {
//!     let hits = keyvalue::increment(&req.path, 1)?;
//!     Ok(http::Response::text(format!("{hits}\n")))
//! }
//!
//! lattice_actor::actor! {
//!     http::HANDLE_REQUEST => handle,
//! }
//!
//! lattice_actor::claims! {
//!     name: "hits",
//!     version: "0.1.0",
//!     contracts: ["lattice:keyvalue", "lattice:httpserver"],
//! }
//! # fn main() {}
//! ```
//!
//! # Outside a host
//!
//! Compiled for a native target (e.g. `cargo test`), the wasm imports are
//! replaced: [`host_call`] and friends return [`Error::NoHost`] (or what a
//! [`testing::mock_host`] stand-in answers), [`log`] prints to stderr, and
//! handlers can be run with [`dispatch`].

mod abi;
mod bytes;
pub mod claims;
mod error;
pub mod http;
pub mod keyvalue;
mod registry;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use abi::{host_call, log};
pub use bytes::Bytes;
pub use error::Error;
/// The contracts' ids, operation names and msgpack payload types, from the
/// `lattice` crate (what [`keyvalue`] and [`http`] are built on).
pub use lattice::contracts;
pub use registry::{dispatch, register, register_typed};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a value as msgpack with named struct fields, as payloads are.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value)
        .map_err(|e| Error::Encode(format!("{}: {e}", std::any::type_name::<T>())))
}

/// Decodes msgpack bytes into a `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| Error::Decode(format!("{}: {e}", std::any::type_name::<T>())))
}

/// Calls the host with a msgpack-encoded `payload` and decodes the reply.
///
/// `binding` is the link name (`""` for the default link) and `namespace` a
/// contract id such as `"lattice:keyvalue"` or an actor id; see [`host_call`].
pub fn call<In, Out>(
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &In,
) -> Result<Out, Error>
where
    In: Serialize + ?Sized,
    Out: DeserializeOwned,
{
    let reply = host_call(binding, namespace, operation, &encode(payload)?)?;
    decode(&reply)
}

/// Calls `operation` on another actor, identified by its actor id, with a
/// msgpack-encoded `payload`, and decodes the reply. The host refuses the
/// call unless this actor's claims list `actor_id` (or `*`) under `actors`.
///
/// ```
/// // Outside a host there is nobody to call:
/// let reply: Result<String, _> = lattice_actor::call_actor("greeter", "SayHello", "Ada");
/// assert_eq!(reply, Err(lattice_actor::Error::NoHost));
/// ```
pub fn call_actor<In, Out>(actor_id: &str, operation: &str, payload: &In) -> Result<Out, Error>
where
    In: Serialize + ?Sized,
    Out: DeserializeOwned,
{
    call("", actor_id, operation, payload)
}

/// Declares the actor's operations: emits the `wapc_init` export, which the
/// host calls once per instance and which registers the handlers.
///
/// `"Op" => handler` registers a typed handler (see [`register_typed`]):
/// `fn(In) -> Result<Out, E>` with `In: DeserializeOwned`, `Out: Serialize`,
/// `E: Display`. `"Op" => raw handler` registers a raw one (see [`register`]):
/// `fn(&[u8]) -> Result<Vec<u8>, String>`. The operation name may be any
/// `&'static str` expression.
///
/// ```
/// fn add(pair: (i64, i64)) -> Result<i64, String> { Ok(pair.0 + pair.1) }
/// fn echo(payload: &[u8]) -> Result<Vec<u8>, String> { Ok(payload.to_vec()) }
/// lattice_actor::actor! {
///     "Add" => add,
///     "Echo" => raw echo,
/// }
/// # fn main() { wapc_init(); }
/// ```
///
/// Use it once per actor crate. For setup beyond registering handlers, write
/// `#[unsafe(no_mangle)] pub extern "C" fn wapc_init()` yourself and call
/// [`register`] / [`register_typed`] from it.
#[macro_export]
macro_rules! actor {
    ($($handlers:tt)*) => {
        /// waPC initialisation, called by the host once per instance before
        /// the first call: registers this actor's operation handlers.
        #[unsafe(no_mangle)]
        pub extern "C" fn wapc_init() {
            $crate::__register_handlers!($($handlers)*);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register_handlers {
    () => {};
    ($op:expr => raw $handler:path $(, $($rest:tt)*)?) => {
        $crate::register($op, $handler);
        $($crate::__register_handlers!($($rest)*);)?
    };
    ($op:expr => $handler:path $(, $($rest:tt)*)?) => {
        $crate::register_typed($op, $handler);
        $($crate::__register_handlers!($($rest)*);)?
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn double(n: u32) -> Result<u32, Error> {
        n.checked_mul(2)
            .ok_or_else(|| Error::Encode("overflow".into()))
    }

    fn echo(payload: &[u8]) -> Result<Vec<u8>, String> {
        Ok(payload.to_vec())
    }

    mod inner {
        pub fn shout(s: String) -> Result<String, String> {
            Ok(s.to_uppercase())
        }
    }

    const OP_SHOUT: &str = "Shout";

    actor! {
        "Double" => double,
        "Echo" => raw echo,
        OP_SHOUT => inner::shout,
    }

    #[test]
    fn actor_macro_registers_typed_and_raw_handlers() {
        wapc_init();
        assert_eq!(
            decode::<u32>(&dispatch("Double", &encode(&21u32).unwrap()).unwrap()).unwrap(),
            42
        );
        assert_eq!(dispatch("Echo", b"\x01\x02").unwrap(), b"\x01\x02");
        assert_eq!(
            decode::<String>(&dispatch("Shout", &encode("hi").unwrap()).unwrap()).unwrap(),
            "HI"
        );
        assert_eq!(
            dispatch("Nope", &[]).unwrap_err(),
            r#"unknown operation "Nope"; this actor handles: Double, Echo, Shout"#
        );
        let err = dispatch("Double", &encode(&u32::MAX).unwrap()).unwrap_err();
        assert_eq!(err, "could not encode msgpack: overflow");
    }

    #[test]
    fn encode_uses_named_fields() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Req {
            key: String,
        }
        let bytes = encode(&Req { key: "k".into() }).unwrap();
        assert_eq!(bytes, [0x81, 0xa3, b'k', b'e', b'y', 0xa1, b'k']);
        assert_eq!(decode::<Req>(&bytes).unwrap(), Req { key: "k".into() });
    }

    #[test]
    fn decode_error_names_the_type() {
        let err = decode::<u8>(&[0xa1, b'x']).unwrap_err();
        match &err {
            Error::Decode(msg) => assert!(msg.starts_with("u8: "), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn typed_calls_without_host_fail_cleanly() {
        assert_eq!(
            call_actor::<_, String>("other", "SayHello", "Ada"),
            Err(Error::NoHost)
        );
        assert_eq!(
            call::<_, ()>("", "lattice:keyvalue", "KeyValue.Set", &("k", "v")),
            Err(Error::NoHost)
        );
    }
}
