//! `lattice:actor` (WIT in `wit/actor.wit`): components answering calls
//! (`handler`) and making them (`host`), through the same router, claims and
//! links as waPC actors.

use wasmtime::component::{HasSelf, Linker};

use super::ComponentData;
use crate::runtime::abi::HostCall;

#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lattice:actor/actor",
        imports: { default: async },
        exports: { default: async },
    });
}

pub use generated::exports::lattice::actor::handler::{
    Guest as Handler, GuestIndices as HandlerIndices,
};
use generated::lattice::actor::host;

/// Adds `lattice:actor/host` to `linker`.
///
/// # Errors
/// When wasmtime refuses a definition (a bug, not an input error).
pub fn add_to_linker(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    host::add_to_linker::<_, HasSelf<ComponentData>>(linker, |d| d)
}

impl host::Host for ComponentData {
    async fn call(
        &mut self,
        binding: String,
        namespace: String,
        operation: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let call = HostCall {
            origin: self.hooks.actor.clone(),
            binding: if binding.is_empty() {
                "default".into()
            } else {
                binding
            },
            namespace,
            operation,
            payload,
            trace: self.trace,
            deadline: self.deadline,
        };
        self.router.host_call(call).await.map_err(|e| e.to_string())
    }
}
