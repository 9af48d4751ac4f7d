//! Where an actor's `__host_call` goes.
//!
//! * namespace with a `:` is a contract (`lattice:keyvalue`): allowed only when the
//!   actor's claims list the contract and a link (actor, contract, link name)
//!   exists; it goes to the linked provider in-process when this host runs it,
//!   else over NATS. A refusal names the actor, the contract and the link name.
//! * anything else is an actor id: in-process when this host runs it, else a NATS
//!   request on `lattice.{lid}.rpc.{id}`.

use std::sync::{Arc, Weak};

use lattice::{client::invoke, id::ActorId, rpc::Invocation};
use lattice_provider::ProviderCall;

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
        return route_contract(host, call).await;
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
        link_name: None,
    };
    invoke(&host.nats, &host.lattice, &invocation, &call.trace, timeout)
        .await
        .map_err(|e| e.to_string())
}

async fn route_contract(host: &HostInner, call: HostCall) -> Result<Vec<u8>, String> {
    let (actor, contract, link_name) = (&*call.origin, &call.namespace, &call.binding);
    let refuse = |why: String| {
        Err(format!(
            "actor {actor} may not call contract {contract} through link {link_name:?}: {why}"
        ))
    };
    match host.local_claims(actor) {
        Some(Some(claims)) if claims.allows(contract) => {}
        Some(Some(claims)) => {
            return refuse(format!(
                "its claims do not list the contract (they list: {})",
                if claims.contracts.is_empty() {
                    "nothing".to_string()
                } else {
                    claims.contracts.join(", ")
                }
            ));
        }
        _ => return refuse("it has no claims (add them with `lattice claims put`)".into()),
    }
    let actor_id = ActorId::new(actor).map_err(|e| e.to_string())?;
    let Some(link) = host.links.get(&actor_id, contract, link_name) else {
        return refuse(format!(
            "there is no such link (create one with `lattice ctl link put {actor} PROVIDER {contract} --link-name {link_name}`)"
        ));
    };
    let local = host.providers_read().get(&link.provider_id).cloned();
    if let Some(provider) = local {
        return provider
            .handle_local(ProviderCall {
                actor_id,
                link_name: link_name.clone(),
                operation: call.operation,
                payload: call.payload,
            })
            .await
            .map_err(|e| format!("provider {}: {e}", link.provider_id));
    }
    let timeout = call
        .deadline
        .saturating_duration_since(tokio::time::Instant::now());
    let invocation = Invocation {
        origin: actor.to_string(),
        target: link.provider_id.clone(),
        operation: call.operation,
        payload: call.payload,
        link_name: Some(link_name.clone()),
    };
    invoke(&host.nats, &host.lattice, &invocation, &call.trace, timeout)
        .await
        .map_err(|e| match e {
            lattice::Error::NoResponders { .. } => format!(
                "provider {} for contract {contract} (link {link_name:?} of actor {actor}) is not running anywhere in the lattice",
                link.provider_id
            ),
            other => other.to_string(),
        })
}
