//! The waPC guest ABI: the `wapc` imports, the `__guest_call` export, and
//! native stand-ins used when the crate is compiled for the build machine
//! (unit tests), where there is no host.
//!
//! On `wasm32` pointers and `usize` are 32-bit, so every parameter below is a
//! wasm `i32`, exactly as waPC specifies.

use crate::Error;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use crate::Error;

    #[link(wasm_import_module = "wapc")]
    unsafe extern "C" {
        fn __guest_request(op_ptr: *mut u8, msg_ptr: *mut u8);
        fn __guest_response(ptr: *const u8, len: usize);
        fn __guest_error(ptr: *const u8, len: usize);
        #[allow(clippy::too_many_arguments)]
        fn __host_call(
            bd_ptr: *const u8,
            bd_len: usize,
            ns_ptr: *const u8,
            ns_len: usize,
            op_ptr: *const u8,
            op_len: usize,
            ptr: *const u8,
            len: usize,
        ) -> i32;
        fn __host_response_len() -> usize;
        fn __host_response(ptr: *mut u8);
        fn __host_error_len() -> usize;
        fn __host_error(ptr: *mut u8);
        fn __console_log(ptr: *const u8, len: usize);
    }

    unsafe extern "C" {
        /// Synthesised by wasm-ld: runs static constructors (wasi-libc's
        /// environment and preopen set-up, for instance).
        fn __wasm_call_ctors();
    }

    /// WASI reactor initialisation: the host calls this once per instance,
    /// before `wapc_init` and any `__guest_call`.
    ///
    /// Referring to `__wasm_call_ctors` here also matters on its own: when
    /// nothing does, wasm-ld treats the module as a *command* and wraps every
    /// export so it runs the constructors before and the destructors after each
    /// call. Calling it more than once does nothing.
    #[unsafe(no_mangle)]
    pub extern "C" fn _initialize() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: the linker-provided constructor runner, run once, before
        // anything else in the instance uses the C runtime.
        ONCE.call_once(|| unsafe { __wasm_call_ctors() });
    }

    /// waPC entry point: the host calls this for every invocation.
    ///
    /// Fetches the operation name and payload with `__guest_request`, runs the
    /// registered handler and answers with `__guest_response` (returns 1) or
    /// `__guest_error` (returns 0).
    #[unsafe(no_mangle)]
    pub extern "C" fn __guest_call(op_len: i32, msg_len: i32) -> i32 {
        install_panic_hook();
        let result = match (usize::try_from(op_len), usize::try_from(msg_len)) {
            (Ok(op_len), Ok(msg_len)) => {
                let mut op = vec![0u8; op_len];
                let mut msg = vec![0u8; msg_len];
                // SAFETY: both buffers are live and exactly as long as the host
                // said; the host writes op_len and msg_len bytes into them.
                unsafe { __guest_request(op.as_mut_ptr(), msg.as_mut_ptr()) };
                crate::registry::dispatch_raw(&op, &msg)
            }
            _ => Err(format!(
                "__guest_call: negative length (operation {op_len}, payload {msg_len})"
            )),
        };
        match result {
            Ok(reply) => {
                // SAFETY: the host copies `reply` out before returning.
                unsafe { __guest_response(reply.as_ptr(), reply.len()) };
                1
            }
            Err(message) => {
                set_guest_error(&message);
                0
            }
        }
    }

    fn set_guest_error(message: &str) {
        // SAFETY: the host copies the message out before returning.
        unsafe { __guest_error(message.as_ptr(), message.len()) };
    }

    /// Reports a panic's message through `__guest_error` before the default
    /// hook prints it to stderr and the abort traps the instance.
    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                set_guest_error(&info.to_string());
                previous(info);
            }));
        });
    }

    pub(super) fn host_call(
        binding: &str,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Error> {
        // SAFETY: all slices are live for the call; the host only reads them.
        let ok = unsafe {
            __host_call(
                binding.as_ptr(),
                binding.len(),
                namespace.as_ptr(),
                namespace.len(),
                operation.as_ptr(),
                operation.len(),
                payload.as_ptr(),
                payload.len(),
            )
        };
        if ok == 1 {
            // SAFETY: the buffer is exactly as long as the host says its reply is.
            let reply = unsafe {
                let mut buf = vec![0u8; __host_response_len()];
                __host_response(buf.as_mut_ptr());
                buf
            };
            Ok(reply)
        } else {
            // SAFETY: as above, for the error message.
            let message = unsafe {
                let mut buf = vec![0u8; __host_error_len()];
                __host_error(buf.as_mut_ptr());
                buf
            };
            Err(Error::Host {
                namespace: namespace.to_owned(),
                operation: operation.to_owned(),
                message: String::from_utf8_lossy(&message).into_owned(),
            })
        }
    }

    pub(super) fn console_log(message: &str) {
        // SAFETY: the host only reads the message.
        unsafe { __console_log(message.as_ptr(), message.len()) };
    }
}

/// Calls the host: `binding` is the link name (`""` means the default link),
/// `namespace` a contract id such as `"lattice:keyvalue"` or another actor's id,
/// `operation` e.g. `"KeyValue.Get"`, and `payload` the request bytes (msgpack
/// by convention). Returns the reply bytes, or the host's error.
///
/// Outside a Lattice host (native builds, unit tests) this returns
/// [`Error::NoHost`], unless a test installed a stand-in with
/// [`testing::mock_host`](crate::testing::mock_host).
pub fn host_call(
    binding: &str,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::host_call(binding, namespace, operation, payload)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::host_call(binding, namespace, operation, payload)
    }
}

/// Writes a line to the host's log for this actor (waPC `__console_log`).
///
/// Outside a Lattice host it goes to stderr instead.
pub fn log(message: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm::console_log(message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn host_call_without_host_is_an_error() {
        let err = host_call("", "lattice:keyvalue", "KeyValue.Get", b"k").unwrap_err();
        assert_eq!(err, Error::NoHost);
        assert_eq!(
            err.to_string(),
            "host calls are only available inside a Lattice host"
        );
    }

    #[test]
    fn log_without_host_does_not_panic() {
        log("hello from a test");
    }
}
