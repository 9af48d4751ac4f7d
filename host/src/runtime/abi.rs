//! The waPC host side: the `wapc` imports an actor sees, and the per-instance
//! state they work on.
//!
//! The protocol, per call: the host stores the operation and payload in
//! [`StoreData`], calls the guest's `__guest_call(op_len, msg_len)`; the guest asks
//! for the bytes with `__guest_request`, answers with `__guest_response` or
//! `__guest_error`, and returns 1 or 0. While handling a call it may call out with
//! `__host_call`, whose answer it reads with `__host_response_len`/`__host_response`
//! (or `__host_error_len`/`__host_error`).

use std::{future::Future, pin::Pin, sync::Arc};

use lattice::trace::TraceContext;
use tokio::time::Instant;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::stdio::StderrTail;
use crate::error::HostCallError;

/// A call an actor makes through `__host_call`.
#[derive(Debug, Clone)]
pub struct HostCall {
    /// The calling actor.
    pub origin: Arc<str>,
    /// Link name; `""` is normalised to `default`.
    pub binding: String,
    /// A contract id (`lattice:keyvalue`) or another actor's id.
    pub namespace: String,
    /// The operation.
    pub operation: String,
    /// msgpack payload.
    pub payload: Vec<u8>,
    /// Trace context of the call being handled.
    pub trace: TraceContext,
    /// When the enclosing call must be done.
    pub deadline: Instant,
}

/// A boxed future, as returned by [`HostCalls::host_call`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where `__host_call`s go: the host's router (local actors, NATS, providers).
pub trait HostCalls: Send + Sync + 'static {
    /// Performs the call; the error's message is handed to the guest as is, so
    /// it must say what failed.
    fn host_call(&self, call: HostCall) -> BoxFuture<Result<Vec<u8>, HostCallError>>;

    /// Whether actor `origin` may send an HTTP request to `authority`
    /// (`host[:port]`) through `wasi:http/outgoing-handler`; the error says
    /// why not. Refused unless the router says otherwise.
    fn outgoing_http(&self, origin: &str, authority: &str) -> Result<(), String> {
        let _ = origin;
        Err(format!(
            "this runtime makes no outgoing HTTP requests (to {authority})"
        ))
    }
}

/// Refuses every host call: for running one actor on its own (benchmarks,
/// tests), where there is nothing to route to.
pub struct NoHostCalls;

impl HostCalls for NoHostCalls {
    fn host_call(&self, call: HostCall) -> BoxFuture<Result<Vec<u8>, HostCallError>> {
        Box::pin(async move {
            Err(HostCallError::Unsupported {
                origin: call.origin.to_string(),
                namespace: call.namespace,
                operation: call.operation,
            })
        })
    }
}

/// Caps an instance's linear memory; past the cap, `memory.grow` traps with a
/// message that names the limit (rather than returning -1 and letting the guest
/// abort with a vague "unreachable").
pub struct MemoryLimiter {
    /// Most bytes of linear memory an instance may have.
    pub max_bytes: usize,
    /// Most table elements.
    pub max_table_elements: usize,
    /// Bytes of linear memory the instance's memories hold together (a
    /// component has several): the limit is on the sum.
    pub used: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_bytes {
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: the actor tried to grow its memory from {} to {} MiB; the limit is {} MiB",
                self.used >> 20,
                total.div_ceil(1 << 20),
                self.max_bytes >> 20
            )));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

/// State of one actor instance.
pub struct StoreData {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) actor: Arc<str>,
    pub(crate) router: Arc<dyn HostCalls>,
    pub(crate) stderr: StderrTail,
    pub(crate) call: Option<CallState>,
}

/// The call in progress.
pub(crate) struct CallState {
    pub operation: String,
    pub payload: Vec<u8>,
    pub trace: TraceContext,
    pub deadline: Instant,
    pub response: Option<Vec<u8>>,
    pub guest_error: Option<String>,
    pub host_response: Option<Vec<u8>>,
    pub host_error: Option<String>,
}

impl CallState {
    pub(crate) fn new(
        operation: String,
        payload: Vec<u8>,
        trace: TraceContext,
        deadline: Instant,
    ) -> Self {
        CallState {
            operation,
            payload,
            trace,
            deadline,
            response: None,
            guest_error: None,
            host_response: None,
            host_error: None,
        }
    }
}

fn memory(caller: &mut Caller<'_, StoreData>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("actor does not export `memory`")),
    }
}

fn read(caller: &mut Caller<'_, StoreData>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&caller)
        .get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "actor passed an out-of-bounds buffer (ptr {ptr}, len {len})"
            ))
        })
}

fn write(caller: &mut Caller<'_, StoreData>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = memory(caller)?;
    let ptr = ptr as u32 as usize;
    mem.data_mut(caller)
        .get_mut(ptr..ptr.saturating_add(bytes.len()))
        .ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "actor passed an out-of-bounds buffer (ptr {ptr}, len {})",
                bytes.len()
            ))
        })?
        .copy_from_slice(bytes);
    Ok(())
}

fn call_state<'a>(caller: &'a mut Caller<'_, StoreData>) -> wasmtime::Result<&'a mut CallState> {
    caller
        .data_mut()
        .call
        .as_mut()
        .ok_or_else(|| wasmtime::Error::msg("waPC function used outside a call"))
}

/// Adds WASI preview 1 and the `wapc` module to `linker`.
///
/// # Errors
/// Only if a name is defined twice, which would be a bug here.
pub fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |d: &mut StoreData| &mut d.wasi)?;

    linker.func_wrap(
        "wapc",
        "__guest_request",
        |mut caller: Caller<'_, StoreData>, op_ptr: i32, msg_ptr: i32| -> wasmtime::Result<()> {
            let (op, payload) = {
                let call = call_state(&mut caller)?;
                (
                    std::mem::take(&mut call.operation),
                    std::mem::take(&mut call.payload),
                )
            };
            write(&mut caller, op_ptr, op.as_bytes())?;
            write(&mut caller, msg_ptr, &payload)?;
            let call = call_state(&mut caller)?;
            call.operation = op;
            call.payload = payload;
            Ok(())
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__guest_response",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read(&mut caller, ptr, len)?;
            call_state(&mut caller)?.response = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__guest_error",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read(&mut caller, ptr, len)?;
            call_state(&mut caller)?.guest_error =
                Some(String::from_utf8_lossy(&bytes).into_owned());
            Ok(())
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__console_log",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read(&mut caller, ptr, len)?;
            let actor = caller.data().actor.clone();
            tracing::info!(target: "lattice::actor", actor = &*actor, stream = "console", "{}", String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__host_response_len",
        |mut caller: Caller<'_, StoreData>| -> wasmtime::Result<i32> {
            Ok(call_state(&mut caller)?
                .host_response
                .as_ref()
                .map_or(0, Vec::len) as i32)
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__host_response",
        |mut caller: Caller<'_, StoreData>, ptr: i32| -> wasmtime::Result<()> {
            let bytes = call_state(&mut caller)?
                .host_response
                .take()
                .unwrap_or_default();
            write(&mut caller, ptr, &bytes)?;
            call_state(&mut caller)?.host_response = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__host_error_len",
        |mut caller: Caller<'_, StoreData>| -> wasmtime::Result<i32> {
            Ok(call_state(&mut caller)?
                .host_error
                .as_ref()
                .map_or(0, String::len) as i32)
        },
    )?;
    linker.func_wrap(
        "wapc",
        "__host_error",
        |mut caller: Caller<'_, StoreData>, ptr: i32| -> wasmtime::Result<()> {
            let msg = call_state(&mut caller)?
                .host_error
                .take()
                .unwrap_or_default();
            write(&mut caller, ptr, msg.as_bytes())?;
            call_state(&mut caller)?.host_error = Some(msg);
            Ok(())
        },
    )?;
    linker.func_wrap_async(
        "wapc",
        "__host_call",
        |mut caller: Caller<'_, StoreData>,
         (bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, ptr, len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let binding = read(&mut caller, bd_ptr, bd_len)?;
                let namespace = read(&mut caller, ns_ptr, ns_len)?;
                let operation = read(&mut caller, op_ptr, op_len)?;
                let payload = read(&mut caller, ptr, len)?;
                let (trace, deadline) = {
                    let call = call_state(&mut caller)?;
                    call.host_response = None;
                    call.host_error = None;
                    // The router opens the host call's own span under it.
                    (call.trace, call.deadline)
                };
                let binding = String::from_utf8_lossy(&binding).into_owned();
                let call = HostCall {
                    origin: caller.data().actor.clone(),
                    binding: if binding.is_empty() {
                        "default".into()
                    } else {
                        binding
                    },
                    namespace: String::from_utf8_lossy(&namespace).into_owned(),
                    operation: String::from_utf8_lossy(&operation).into_owned(),
                    payload,
                    trace,
                    deadline,
                };
                let router = caller.data().router.clone();
                let result = router.host_call(call).await;
                let state = call_state(&mut caller)?;
                Ok(match result {
                    Ok(bytes) => {
                        state.host_response = Some(bytes);
                        1
                    }
                    Err(e) => {
                        state.host_error = Some(e.to_string());
                        0
                    }
                })
            })
        },
    )?;
    Ok(())
}
