//! The one way a host invokes anything: in-process when this host runs the
//! target (an actor replica, or a provider inside the host), else over NATS.
//!
//! The router (actors' host calls) and in-host providers calling actors come
//! through [`HostInner::invoke`]; what is allowed is decided before, by the
//! router. [`crate::Host::call_local`] is its in-process leg alone.

use std::time::Duration;

use lattice::{
    id::ActorId,
    rpc::{Invocation, Target},
    trace::TraceContext,
};
use lattice_provider::ProviderCall;
use tokio::time::Instant;

use super::HostInner;
use crate::error::HostCallError;

/// Extra time a remote call waits past the caller's deadline, so the callee's
/// own deadline error (which says more) arrives before our timeout.
const REMOTE_SLACK: Duration = Duration::from_millis(250);

/// One invocation, with its target already resolved and allowed.
pub(crate) struct Call {
    /// Who calls: an actor id (host calls) or a provider id (providers calling
    /// actors).
    pub origin: String,
    /// What is called.
    pub target: Target,
    /// The operation.
    pub operation: String,
    /// The msgpack payload.
    pub payload: Vec<u8>,
    /// The caller's trace.
    pub trace: TraceContext,
    /// When the call must be done.
    pub deadline: Instant,
}

impl HostInner {
    /// Invokes `call.target`: a local replica or provider first, else NATS.
    pub(crate) async fn invoke(&self, call: Call) -> Result<Vec<u8>, HostCallError> {
        match &call.target {
            Target::Actor(actor) => {
                if let Some((local, admitted)) = self.actors.admit(actor.as_str()) {
                    return Ok(local
                        .invoke_admitted(
                            admitted?,
                            &call.operation,
                            call.payload,
                            call.trace,
                            call.deadline,
                        )
                        .await?);
                }
            }
            Target::Provider { provider, link, .. } => {
                if let Some(local) = self.providers.get(provider) {
                    let actor_id = ActorId::new(call.origin.as_str()).map_err(|e| {
                        HostCallError::NotAnActor {
                            origin: call.origin.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    return local
                        .handle_local(ProviderCall {
                            actor_id,
                            link_name: link.to_string(),
                            operation: call.operation,
                            payload: call.payload,
                        })
                        .await
                        .map_err(|source| HostCallError::Provider {
                            provider: provider.to_string(),
                            source,
                        });
                }
            }
        }
        let timeout = call.deadline.saturating_duration_since(Instant::now()) + REMOTE_SLACK;
        let invocation = Invocation::new(
            call.origin.clone(),
            &call.target,
            call.operation,
            call.payload,
        );
        self.caller
            .invoke(
                &self.lattice,
                &call.target,
                invocation,
                &call.trace,
                timeout,
            )
            .await
            .map_err(|e| match (e, &call.target) {
                (
                    lattice::Error::NoResponders { .. },
                    Target::Provider {
                        provider,
                        contract,
                        link,
                    },
                ) => HostCallError::ProviderNotRunning {
                    provider: provider.to_string(),
                    contract: contract.to_string(),
                    link: link.to_string(),
                    actor: call.origin,
                },
                (e, _) => HostCallError::Remote(e),
            })
    }
}
