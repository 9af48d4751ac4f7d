//! Unit-testing actors natively: a stand-in for the host's side of
//! [`host_call`](crate::host_call).
//!
//! Only on native targets (not `wasm32`). Without a stand-in every host call
//! returns [`Error::NoHost`]; with one, [`host_call`](crate::host_call) and
//! everything built on it ([`call`](crate::call), [`keyvalue`](crate::keyvalue),
//! ...) hand the call to your closure instead:
//!
//! ```
//! use lattice_actor::{keyvalue, testing};
//!
//! let _host = testing::mock_host(|call| {
//!     assert_eq!(call.namespace, keyvalue::CONTRACT);
//!     assert_eq!(call.operation, keyvalue::INCREMENT);
//!     let req: keyvalue::IncrementRequest = lattice_actor::decode(call.payload).unwrap();
//!     Ok(lattice_actor::encode(&(41 + req.delta)).unwrap())
//! });
//! assert_eq!(keyvalue::increment("hits", 1), Ok(42));
//! drop(_host); // back to Error::NoHost
//! assert_eq!(keyvalue::increment("hits", 1), Err(lattice_actor::Error::NoHost));
//! ```
//!
//! The stand-in belongs to the current thread (each `#[test]` runs on its own
//! thread, so tests do not see each other's), and is removed when the returned
//! [`MockHost`] is dropped.

use std::cell::RefCell;
use std::rc::Rc;

use crate::Error;

/// One call an actor made to the host, as the stand-in sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCall<'a> {
    /// The link name as the actor passed it (`""` for the default link).
    pub binding: &'a str,
    /// A contract id such as `lattice:keyvalue`, or an actor id.
    pub namespace: &'a str,
    /// The operation, e.g. `KeyValue.Get`.
    pub operation: &'a str,
    /// The payload bytes (msgpack by convention).
    pub payload: &'a [u8],
}

type Handler = Rc<RefCell<dyn FnMut(HostCall<'_>) -> Result<Vec<u8>, String>>>;

thread_local! {
    static MOCK: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// Answers this thread's host calls with `handler` until the returned guard
/// is dropped: `Ok(reply bytes)`, or `Err(message)`, which the actor sees as
/// [`Error::Host`] naming the namespace and operation.
///
/// The handler must not make host calls itself (those fail with an error
/// saying so).
#[must_use = "the stand-in is removed when the guard is dropped"]
pub fn mock_host<F>(handler: F) -> MockHost
where
    F: FnMut(HostCall<'_>) -> Result<Vec<u8>, String> + 'static,
{
    let handler: Handler = Rc::new(RefCell::new(handler));
    let previous = MOCK.with(|m| m.borrow_mut().replace(handler));
    MockHost { previous }
}

/// Keeps a stand-in installed; dropping it restores the previous state
/// (another stand-in, or none).
pub struct MockHost {
    previous: Option<Handler>,
}

impl std::fmt::Debug for MockHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHost").finish_non_exhaustive()
    }
}

impl Drop for MockHost {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: the thread-local may already be gone when a guard is
        // dropped during thread teardown.
        let _ = MOCK.try_with(|m| *m.borrow_mut() = previous);
    }
}

/// The native `host_call`: the stand-in if there is one, else [`Error::NoHost`].
pub(crate) fn host_call(
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    let Some(handler) = MOCK.with(|m| m.borrow().clone()) else {
        return Err(Error::NoHost);
    };
    let host_error = |message: String| Error::Host {
        namespace: namespace.to_owned(),
        operation: operation.to_owned(),
        message,
    };
    let mut handler = handler
        .try_borrow_mut()
        .map_err(|_| host_error("the mock host's handler made a host call itself".to_owned()))?;
    handler(HostCall {
        binding,
        namespace,
        operation,
        payload,
    })
    .map_err(host_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_call as call_host;

    #[test]
    fn stand_in_answers_and_guard_restores() {
        assert_eq!(call_host("", "x", "Op", b""), Err(Error::NoHost));
        let mut seen = Vec::new();
        {
            let log = Rc::new(RefCell::new(Vec::new()));
            let log2 = Rc::clone(&log);
            let _outer = mock_host(move |c| {
                log2.borrow_mut().push((
                    c.binding.to_owned(),
                    c.namespace.to_owned(),
                    c.operation.to_owned(),
                    c.payload.to_vec(),
                ));
                Ok(vec![1])
            });
            assert_eq!(
                call_host("cache", "lattice:keyvalue", "KeyValue.Get", b"\x01"),
                Ok(vec![1])
            );
            {
                let _inner = mock_host(|c| Err(format!("nope {}", c.operation)));
                assert_eq!(
                    call_host("", "greeter", "SayHello", b"")
                        .unwrap_err()
                        .to_string(),
                    "call to greeter SayHello failed: nope SayHello"
                );
            }
            assert_eq!(call_host("", "a", "B", b""), Ok(vec![1]));
            seen.extend(log.borrow().iter().cloned());
        }
        assert_eq!(call_host("", "x", "Op", b""), Err(Error::NoHost));
        assert_eq!(
            seen,
            [
                (
                    "cache".to_owned(),
                    "lattice:keyvalue".to_owned(),
                    "KeyValue.Get".to_owned(),
                    vec![1]
                ),
                ("".to_owned(), "a".to_owned(), "B".to_owned(), vec![])
            ]
        );
    }

    #[test]
    fn re_entrant_call_is_an_error_not_a_panic() {
        let _host = mock_host(|_| {
            let inner = call_host("", "x", "Inner", b"").unwrap_err();
            Err(inner.to_string())
        });
        let err = call_host("", "x", "Outer", b"").unwrap_err().to_string();
        assert!(err.contains("made a host call itself"), "{err}");
    }
}
