//! Providers inside the host: the built-in registry, starting and stopping them,
//! and how they call actors (in-process first).

use std::sync::{Arc, Weak};

use lattice::{
    ctl::{ProviderAck, StartProvider, StopProvider},
    id::{ActorId, ProviderRef},
    rpc::Target,
    trace::TraceContext,
};
use lattice_provider::{
    ActorCaller, BoxFuture, CallError, Provider, ProviderContext, ProviderRuntime, call_error,
};

use super::{HostInner, invoke::Call};
use crate::error::{HostCallError, InvokeError};

/// Names of the providers built into the host, for `builtin:NAME`.
pub const BUILTINS: &[&str] = &["httpserver", "keyvalue"];

/// A fresh instance of a built-in provider.
pub fn builtin(reference: &ProviderRef) -> Option<Arc<dyn Provider>> {
    match reference.name() {
        "httpserver" | "http-server" => Some(Arc::new(
            lattice_provider_httpserver::HttpServerProvider::new(),
        )),
        "keyvalue" | "kv" => Some(Arc::new(lattice_provider_keyvalue::KeyValueProvider::new())),
        _ => None,
    }
}

/// Calls from an in-host provider to actors, through [`HostInner::invoke`]:
/// this host's replicas in-process, others over NATS.
pub(crate) struct HostActorCaller {
    host: Weak<HostInner>,
    origin: String,
}

impl ActorCaller for HostActorCaller {
    fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        let host = self.host.clone();
        let target = ActorId::new(actor);
        let (actor, operation, origin) = (
            actor.to_string(),
            operation.to_string(),
            self.origin.clone(),
        );
        Box::pin(async move {
            let target = target.map_err(|e| CallError::Failed(e.to_string()))?;
            let host = host
                .upgrade()
                .ok_or_else(|| CallError::Failed("the host is shutting down".into()))?;
            let deadline = tokio::time::Instant::now() + host.runtime.config().call_timeout;
            host.invoke(Call {
                origin,
                target: Target::Actor(target),
                operation,
                payload,
                trace: TraceContext::new_root(),
                deadline,
            })
            .await
            .map_err(|e| match e {
                HostCallError::Actor(InvokeError::Deadline { .. }) => CallError::Timeout(actor),
                HostCallError::Actor(InvokeError::Stopped { .. }) => CallError::NotRunning(actor),
                HostCallError::Remote(e) => call_error(&actor, e),
                other => CallError::Failed(other.to_string()),
            })
        })
    }
}

pub(super) async fn start(
    inner: &Arc<HostInner>,
    cmd: StartProvider,
) -> Result<ProviderAck, String> {
    let _guard = inner.lifecycle.lock().await;
    if inner
        .providers_read()
        .contains_key(cmd.provider_id.as_str())
    {
        return Err(format!(
            "provider {} already runs on host {}",
            cmd.provider_id, inner.name
        ));
    }
    let provider = builtin(&cmd.name).ok_or_else(|| {
        format!(
            "unknown built-in provider {}; built-ins are: {}",
            cmd.name,
            BUILTINS
                .iter()
                .map(|b| format!("builtin:{b}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let ctx = ProviderContext {
        lattice: inner.lattice.clone(),
        provider_id: cmd.provider_id.to_string(),
        nats: inner.nats.clone(),
        actors: Arc::new(HostActorCaller {
            host: Arc::downgrade(inner),
            origin: cmd.provider_id.to_string(),
        }),
    };
    let rt = ProviderRuntime::start(
        provider,
        ctx,
        &cmd.name.to_string(),
        &format!("host {}", inner.name),
        inner.id.as_str(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let contract = rt.contract().to_string();
    inner
        .providers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cmd.provider_id.to_string(), rt);
    Ok(ProviderAck {
        host_id: inner.id.clone(),
        host_name: inner.name.clone(),
        provider_id: cmd.provider_id.to_string(),
        contract,
    })
}

pub(super) async fn stop(inner: &Arc<HostInner>, cmd: StopProvider) -> Result<ProviderAck, String> {
    let _guard = inner.lifecycle.lock().await;
    let rt = inner
        .providers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&cmd.provider_id)
        .ok_or_else(|| {
            format!(
                "provider {} is not running on host {} ({})",
                cmd.provider_id, inner.name, inner.id
            )
        })?;
    rt.stop("stop requested").await;
    Ok(ProviderAck {
        host_id: inner.id.clone(),
        host_name: inner.name.clone(),
        provider_id: cmd.provider_id,
        contract: rt.contract().to_string(),
    })
}
