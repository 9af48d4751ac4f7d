//! Where an actor's `__host_call` goes, and whether it may go there.
//!
//! The namespace is parsed once into a [`Target`]: a contract id
//! (`namespace:name`, the only ids with a `:`) or an actor id. Then:
//!
//! * a contract is allowed only when the actor's claims list it and a link
//!   (actor, contract, link name) exists; it goes to the linked provider;
//! * an actor id is allowed only when the actor's claims list that id or `*`
//!   under `actors`; it goes to that actor.
//!
//! A refusal names the actor, the target and the reason. Allowed calls go
//! through [`HostInner::invoke`] (in-process first, else NATS). Actors and
//! providers have separate rpc subjects, so naming a provider's id as an actor
//! reaches no provider.

use std::sync::{Arc, Weak};

use lattice::{
    claims::Claims,
    id::{ActorId, ContractId, LinkName},
    rpc::Target,
    trace::{CallSpan, SpanKind, SpanStart},
};
use tracing::Instrument;

use super::{HostInner, invoke::Call};
use crate::{
    error::HostCallError,
    runtime::abi::{BoxFuture, HostCall, HostCalls},
};

/// The host's [`HostCalls`] implementation.
pub(crate) struct Router {
    host: Weak<HostInner>,
    /// The claims of the module this router serves (not looked up by actor
    /// id: while an update swaps modules, each is checked against its own).
    claims: Option<Arc<Claims>>,
}

impl Router {
    pub(crate) fn new(host: &Arc<HostInner>, claims: Option<Arc<Claims>>) -> Self {
        Router {
            host: Arc::downgrade(host),
            claims,
        }
    }
}

impl HostCalls for Router {
    fn host_call(&self, call: HostCall) -> BoxFuture<Result<Vec<u8>, HostCallError>> {
        let (host, claims) = (self.host.clone(), self.claims.clone());
        // For the log only, at DEBUG; the exported span (a call's trace
        // shows each hop an actor makes, in-process ones included) is the
        // `CallSpan`.
        let span = tracing::debug_span!(
            "host_call",
            origin = %call.origin,
            namespace = %call.namespace,
            operation = %call.operation,
        );
        let exported = CallSpan::start(SpanStart {
            name: "host_call",
            kind: SpanKind::Client,
            parent: Some(&call.trace),
            // The span that serves the actor's call, in this process.
            remote_parent: false,
            attributes: &[
                ("origin", &*call.origin),
                ("namespace", &call.namespace),
                ("operation", &call.operation),
            ],
        });
        Box::pin(
            async move {
                let result = route(host, claims, call, exported.context()).await;
                exported.end_with(&result);
                result
            }
            .instrument(span),
        )
    }

    fn outgoing_http(&self, origin: &str, authority: &str) -> Result<(), String> {
        use lattice::contracts::httpclient::{CONFIG_ALLOWED_HOSTS, CONTRACT, allows};
        let host = self.host.upgrade().ok_or("the host is shutting down")?;
        let claims = self.claims.as_deref();
        let contract = ContractId::new(CONTRACT).map_err(|e| e.to_string())?;
        // Claims and a default link, checked as for any contract call.
        resolve_contract(&host, origin, claims, contract.clone(), "default")
            .map_err(|e| e.to_string())?;
        let actor = ActorId::new(origin).map_err(|e| e.to_string())?;
        let link = LinkName::new("default").map_err(|e| e.to_string())?;
        let allowed = host
            .links
            .get(&actor, &contract, &link)
            .and_then(|def| def.config.get(CONFIG_ALLOWED_HOSTS).cloned())
            .unwrap_or_default();
        if allows(&allowed, authority) {
            return Ok(());
        }
        Err(format!(
            "actor {origin} may not send HTTP requests to {authority}: its {CONTRACT} link allows {}",
            if allowed.trim().is_empty() {
                format!("no host (set {CONFIG_ALLOWED_HOSTS}=HOST[:PORT],...)")
            } else {
                format!("only {allowed}")
            }
        ))
    }
}

/// One call an actor makes: resolved against its claims and links, then
/// made, and counted by link when it went to a provider.
async fn route(
    host: Weak<HostInner>,
    claims: Option<Arc<Claims>>,
    call: HostCall,
    trace: lattice::trace::TraceContext,
) -> Result<Vec<u8>, HostCallError> {
    let host = host.upgrade().ok_or(HostCallError::ShuttingDown)?;
    let target = resolve(&host, claims.as_deref(), &call)?;
    // Kept only for counting a contract call by its link afterwards.
    let link = match (&host.metrics, &target) {
        (Some(_), Target::Provider { .. }) => Some(target.clone()),
        _ => None,
    };
    let result = host
        .invoke(Call {
            origin: call.origin.to_string(),
            target,
            operation: call.operation,
            payload: call.payload,
            trace,
            deadline: call.deadline,
        })
        .await;
    if let (
        Some((metrics, _)),
        Some(Target::Provider {
            provider,
            contract,
            link,
        }),
    ) = (&host.metrics, link)
    {
        metrics.link_call(
            &call.origin,
            contract.as_str(),
            link.as_str(),
            provider.as_str(),
            result.is_ok(),
        );
    }
    result
}

/// Parses the call's namespace into a [`Target`] and checks the caller may call it.
fn resolve(
    host: &HostInner,
    claims: Option<&Claims>,
    call: &HostCall,
) -> Result<Target, HostCallError> {
    let origin = &*call.origin;
    if call.namespace.contains(':') {
        let contract =
            ContractId::new(call.namespace.as_str()).map_err(|e| HostCallError::BadTarget {
                origin: origin.to_string(),
                namespace: call.namespace.clone(),
                reason: e.to_string(),
            })?;
        return resolve_contract(host, origin, claims, contract, &call.binding);
    }
    let target = ActorId::new(call.namespace.as_str()).map_err(|e| HostCallError::BadTarget {
        origin: origin.to_string(),
        namespace: call.namespace.clone(),
        reason: e.to_string(),
    })?;
    check_actor_call(origin, claims, &target)?;
    Ok(Target::Actor(target))
}

/// An actor may call another only when its claims list the target's id or `*`.
fn check_actor_call(
    actor: &str,
    claims: Option<&Claims>,
    target: &ActorId,
) -> Result<(), HostCallError> {
    let reason = match claims {
        Some(c) if c.allows_actor(target.as_str()) => return Ok(()),
        Some(c) => format!(
            "its claims do not list that actor (they list: {}; add it with `lattice claims put --actor {target}` or `actors: [\"{target}\"]` in `claims!`)",
            list(&c.actors)
        ),
        None => format!("it has no claims (add them with `lattice claims put --actor {target}`)"),
    };
    Err(HostCallError::ActorRefused {
        actor: actor.to_string(),
        target: target.to_string(),
        reason,
    })
}

fn resolve_contract(
    host: &HostInner,
    actor: &str,
    claims: Option<&Claims>,
    contract: ContractId,
    link_name: &str,
) -> Result<Target, HostCallError> {
    let refuse = |reason: String| HostCallError::ContractRefused {
        actor: actor.to_string(),
        contract: contract.to_string(),
        link: link_name.to_string(),
        reason,
    };
    match claims {
        Some(c) if c.allows(contract.as_str()) => {}
        Some(c) => {
            return Err(refuse(format!(
                "its claims do not list the contract (they list: {})",
                list(&c.contracts)
            )));
        }
        None => {
            return Err(refuse(
                "it has no claims (add them with `lattice claims put`)".into(),
            ));
        }
    }
    let link = LinkName::new(link_name).map_err(|e| refuse(e.to_string()))?;
    let actor_id = ActorId::new(actor).map_err(|e| refuse(e.to_string()))?;
    let Some(def) = host.links.get(&actor_id, &contract, &link) else {
        return Err(refuse(format!(
            "there is no such link (create one with `lattice ctl link put {actor} PROVIDER {contract} --link-name {link}`)"
        )));
    };
    Ok(Target::Provider {
        provider: def.provider_id,
        contract,
        link,
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_calls_need_the_target_in_the_claims() {
        let pricing = ActorId::new("pricing").unwrap();
        let inventory = ActorId::new("inventory").unwrap();
        let claims = Claims {
            name: "frontend".into(),
            actors: vec!["pricing".into()],
            ..Claims::default()
        };
        check_actor_call("frontend", Some(&claims), &pricing).unwrap();
        let err = check_actor_call("frontend", Some(&claims), &inventory)
            .unwrap_err()
            .to_string();
        for needle in ["frontend", "inventory", "do not list", "pricing"] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
        let err = check_actor_call("frontend", None, &pricing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frontend") && err.contains("pricing") && err.contains("no claims"),
            "{err}"
        );
        let any = Claims {
            actors: vec![lattice::claims::ANY_ACTOR.into()],
            ..claims
        };
        check_actor_call("frontend", Some(&any), &inventory).unwrap();
    }
}
