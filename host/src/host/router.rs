//! Where an actor's `__host_call` goes.
//!
//! * namespace with a `:` is a contract (`lattice:keyvalue`): only allowed through a
//!   link, for contracts the actor's claims list. No actor has claims or links
//!   yet, so every contract call is refused with a message that names the actor,
//!   contract and link name.
//! * anything else is an actor id: in-process when this host runs it, else a NATS
//!   request on `lattice.{lid}.rpc.{id}`.

use std::sync::{Arc, Weak};

use lattice::{id::ActorId, rpc::Invocation};

use super::HostInner;
use crate::runtime::abi::{BoxFuture, HostCall, HostCalls};

/// The host's [`HostCalls`] implementation.
pub(crate) struct Router {
    host: Weak<HostInner>,
}

impl Router {
    pub(crate) fn new(host: &Arc<HostInner>) -> Self {
        Router {
            host: Arc::downgrade(host),
        }
    }
}

impl HostCalls for Router {
    fn host_call(&self, call: HostCall) -> BoxFuture<Result<Vec<u8>, String>> {
        let host = self.host.clone();
        Box::pin(async move {
            let host = host
                .upgrade()
                .ok_or_else(|| "the host is shutting down".to_string())?;
            route(&host, call).await
        })
    }
}

async fn route(host: &HostInner, call: HostCall) -> Result<Vec<u8>, String> {
    if call.namespace.contains(':') {
        return Err(format!(
            "actor {} may not call contract {} through link {:?}: the actor has no claim for the contract and no link for it",
            call.origin, call.namespace, call.binding
        ));
    }
    let target = ActorId::new(call.namespace.as_str()).map_err(|e| {
        format!(
            "actor {} called {:?}, which is neither a contract id nor a valid actor id: {e}",
            call.origin, call.namespace
        )
    })?;
    if let Some(actor) = host.local_actor(target.as_str()) {
        return actor
            .invoke(&call.operation, call.payload, call.trace, call.deadline)
            .await
            .map_err(|e| e.to_string());
    }
    let timeout = call
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    let invocation = Invocation {
        origin: call.origin.to_string(),
        target: target.to_string(),
        operation: call.operation,
        payload: call.payload,
    };
    lattice::client::invoke(&host.nats, &host.lattice, &invocation, &call.trace, timeout)
        .await
        .map_err(|e| e.to_string())
}
