//! The per-instance table of operation handlers, and dispatch.
//!
//! A wasm instance is single-threaded and serves one call at a time, so the
//! table lives in a `thread_local!` (on `wasm32-wasip1` that is a plain static).
//! On native targets every test thread gets its own table, which keeps unit
//! tests independent of each other.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::type_name;
use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;

type Handler = Rc<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;

thread_local! {
    static HANDLERS: RefCell<Vec<(&'static str, Handler)>> = const { RefCell::new(Vec::new()) };
}

/// msgpack `nil`: what an empty payload means to a typed handler.
const NIL: &[u8] = &[0xc0];

/// Registers a handler that works on raw payload bytes.
///
/// The handler gets the payload exactly as the caller sent it and returns the
/// reply bytes, or an error message. Registering the same operation again
/// replaces the earlier handler. Usually called from `wapc_init`, see [`actor!`](crate::actor).
pub fn register<F>(operation: &'static str, handler: F)
where
    F: Fn(&[u8]) -> Result<Vec<u8>, String> + 'static,
{
    insert(operation, Rc::new(handler));
}

/// Registers a handler that takes and returns msgpack-encoded values.
///
/// The payload is decoded into `In` (an empty payload is read as msgpack `nil`,
/// so `()`, `Option<T>` and [`serde::de::IgnoredAny`] accept it); the `Ok`
/// value is encoded with named fields; an `Err` becomes the error message via
/// [`Display`]. A payload that does not decode becomes an error naming the
/// operation, the expected type and the decoder's complaint, e.g.
/// `SayHello: payload is not valid msgpack for alloc::string::String: ...`.
pub fn register_typed<F, In, Out, E>(operation: &'static str, handler: F)
where
    F: Fn(In) -> Result<Out, E> + 'static,
    In: DeserializeOwned,
    Out: Serialize,
    E: Display,
{
    insert(
        operation,
        Rc::new(move |payload: &[u8]| {
            let bytes = if payload.is_empty() { NIL } else { payload };
            let input: In = rmp_serde::from_slice(bytes).map_err(|e| {
                format!(
                    "{operation}: payload is not valid msgpack for {}: {e}",
                    type_name::<In>()
                )
            })?;
            let output = handler(input).map_err(|e| e.to_string())?;
            rmp_serde::to_vec_named(&output).map_err(|e| {
                format!(
                    "{operation}: could not encode the reply ({}) as msgpack: {e}",
                    type_name::<Out>()
                )
            })
        }),
    );
}

fn insert(operation: &'static str, handler: Handler) {
    HANDLERS.with(|h| {
        let mut handlers = h.borrow_mut();
        match handlers.iter_mut().find(|(op, _)| *op == operation) {
            Some(slot) => slot.1 = handler,
            None => handlers.push((operation, handler)),
        }
    });
}

/// Runs the handler registered for `operation`, as the host's `__guest_call` does.
///
/// Useful in unit tests of an actor: call its `wapc_init()` once, then
/// `dispatch("SayHello", &payload)`. An unknown operation yields an error that
/// lists the operations this actor handles, e.g.
/// `unknown operation "Foo"; this actor handles: SayHello, Echo`.
pub fn dispatch(operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    // Clone the handler out so the table is not borrowed while it runs
    // (a handler may register others).
    let handler = HANDLERS.with(|h| {
        h.borrow()
            .iter()
            .find(|(op, _)| *op == operation)
            .map(|(_, handler)| Rc::clone(handler))
    });
    match handler {
        Some(handler) => handler(payload),
        None => Err(unknown_operation(operation)),
    }
}

/// Dispatch from the raw bytes the host hands to `__guest_call`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn dispatch_raw(operation: &[u8], payload: &[u8]) -> Result<Vec<u8>, String> {
    match std::str::from_utf8(operation) {
        Ok(op) => dispatch(op, payload),
        Err(_) => Err(format!(
            "operation name is not valid UTF-8: {:?}",
            String::from_utf8_lossy(operation)
        )),
    }
}

fn unknown_operation(operation: &str) -> String {
    let known = HANDLERS.with(|h| {
        h.borrow()
            .iter()
            .map(|(op, _)| *op)
            .collect::<Vec<_>>()
            .join(", ")
    });
    if known.is_empty() {
        format!(
            "unknown operation {operation:?}; this actor handles no operations (did wapc_init register any?)"
        )
    } else {
        format!("unknown operation {operation:?}; this actor handles: {known}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    fn echo(payload: &[u8]) -> Result<Vec<u8>, String> {
        Ok(payload.to_vec())
    }

    fn greet(name: String) -> Result<String, String> {
        if name.is_empty() {
            Err("name must not be empty".into())
        } else {
            Ok(format!("Hello, {name}!"))
        }
    }

    #[test]
    fn raw_handler_sees_exact_bytes() {
        register("Echo", echo);
        assert_eq!(dispatch("Echo", &[1, 2, 0xff]).unwrap(), [1, 2, 0xff]);
        assert_eq!(dispatch("Echo", &[]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn typed_handler_round_trips_msgpack() {
        register_typed("SayHello", greet);
        let payload = rmp_serde::to_vec_named("Ada").unwrap();
        let reply = dispatch("SayHello", &payload).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<String>(&reply).unwrap(),
            "Hello, Ada!"
        );
    }

    #[test]
    fn typed_handler_error_is_passed_through() {
        register_typed("SayHello", greet);
        let payload = rmp_serde::to_vec_named("").unwrap();
        assert_eq!(
            dispatch("SayHello", &payload).unwrap_err(),
            "name must not be empty"
        );
    }

    #[test]
    fn bad_payload_names_operation_and_type() {
        register_typed("SayHello", greet);
        let payload = rmp_serde::to_vec_named(&42u32).unwrap();
        let err = dispatch("SayHello", &payload).unwrap_err();
        assert!(
            err.starts_with("SayHello: payload is not valid msgpack for alloc::string::String: "),
            "{err}"
        );
        // Truncated input: still an error, not a panic.
        let err = dispatch("SayHello", &[0xa5, b'A']).unwrap_err();
        assert!(
            err.starts_with("SayHello: payload is not valid msgpack"),
            "{err}"
        );
        // Empty payload reads as nil, which is not a string.
        let err = dispatch("SayHello", &[]).unwrap_err();
        assert!(
            err.starts_with("SayHello: payload is not valid msgpack"),
            "{err}"
        );
    }

    #[test]
    fn empty_payload_is_nil_for_typed_handlers() {
        register_typed("Unit", |(): ()| Ok::<_, String>(7u8));
        register_typed("Any", |_: serde::de::IgnoredAny| Ok::<_, String>(true));
        assert_eq!(dispatch("Unit", &[]).unwrap(), [7]);
        assert_eq!(dispatch("Any", &[]).unwrap(), [0xc3]);
        assert_eq!(dispatch("Any", &[0x93, 1, 2, 3]).unwrap(), [0xc3]);
    }

    #[test]
    fn structs_are_encoded_with_named_fields() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Point {
            x: i32,
            y: i32,
        }
        register_typed("Swap", |p: Point| Ok::<_, String>(Point { x: p.y, y: p.x }));
        let payload = rmp_serde::to_vec_named(&Point { x: 1, y: 2 }).unwrap();
        let reply = dispatch("Swap", &payload).unwrap();
        // fixmap of 2 entries, first key "x"
        assert_eq!(&reply[..3], &[0x82, 0xa1, b'x']);
        assert_eq!(
            rmp_serde::from_slice::<Point>(&reply).unwrap(),
            Point { x: 2, y: 1 }
        );
        // Positional (array) encoding from other SDKs decodes too.
        let reply = dispatch("Swap", &[0x92, 5, 6]).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Point>(&reply).unwrap(),
            Point { x: 6, y: 5 }
        );
    }

    #[test]
    fn unknown_operation_lists_known_ones_in_order() {
        let err = dispatch("Foo", &[]).unwrap_err();
        assert!(err.contains("handles no operations"), "{err}");
        register_typed("SayHello", greet);
        register("Echo", echo);
        assert_eq!(
            dispatch("Foo", &[]).unwrap_err(),
            r#"unknown operation "Foo"; this actor handles: SayHello, Echo"#
        );
    }

    #[test]
    fn re_registering_replaces() {
        register("Op", |_: &[u8]| Ok(vec![1]));
        register("Op", |_: &[u8]| Ok(vec![2]));
        assert_eq!(dispatch("Op", &[]).unwrap(), [2]);
        assert_eq!(
            dispatch("Nope", &[]).unwrap_err(),
            r#"unknown operation "Nope"; this actor handles: Op"#
        );
    }

    #[test]
    fn handler_may_register_while_running() {
        register("Add", |_: &[u8]| {
            register("Added", |_: &[u8]| Ok(vec![9]));
            Ok(vec![])
        });
        dispatch("Add", &[]).unwrap();
        assert_eq!(dispatch("Added", &[]).unwrap(), [9]);
    }

    #[test]
    fn raw_dispatch_rejects_non_utf8_operation() {
        let err = dispatch_raw(&[0xff, 0xfe], &[]).unwrap_err();
        assert!(
            err.starts_with("operation name is not valid UTF-8"),
            "{err}"
        );
        register("Echo", echo);
        assert_eq!(dispatch_raw(b"Echo", &[4]).unwrap(), [4]);
    }
}
