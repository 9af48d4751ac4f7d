//! Providers inside the host: the built-in registry, starting and stopping them,
//! and how they call actors (in-process first).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak},
};

use lattice::{
    ctl::{ProviderAck, ProviderDescription, StartProvider, StopProvider},
    id::{ActorId, ProviderId, ProviderRef},
    rpc::Target,
    trace::TraceContext,
};
use lattice_provider::{
    ActorCaller, BoxFuture, CallError, HttpBody, Provider, ProviderContext, ProviderRuntime,
    RemoteActor, call_error,
};

use super::{HostInner, invoke::Call};
use crate::error::{ControlError, HostCallError, InvokeError};

/// Names of the providers built into the host, for `builtin:NAME`.
pub const BUILTINS: &[&str] = &["httpserver", "keyvalue"];

/// A fresh instance of a built-in provider; the HTTP server counts its
/// responses in `metrics` when given.
pub fn builtin(
    reference: &ProviderRef,
    metrics: Option<&crate::metrics::Metrics>,
) -> Option<Arc<dyn Provider>> {
    match reference.name() {
        "httpserver" | "http-server" => {
            let mut http = lattice_provider_httpserver::HttpServerProvider::new();
            if let Some(metrics) = metrics.cloned() {
                http = http.with_observer(Arc::new(move |status, took| {
                    metrics.http_request(status, took)
                }));
            }
            Some(Arc::new(http))
        }
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
            let deadline = tokio::time::Instant::now() + host.call_timeout();
            host.invoke(Call {
                origin,
                target: Target::Actor(target),
                operation,
                payload,
                trace: TraceContext::new_root(),
                deadline,
            })
            .await
            .map_err(|e| provider_call_error(&actor, e))
        })
    }

    fn streams_http(&self, actor: &str) -> bool {
        self.host
            .upgrade()
            .and_then(|host| host.actors.serving(actor))
            .is_some_and(|local| local.streams_http())
    }

    fn remote(&self, actor: &str) -> Option<RemoteActor> {
        let host = self.host.upgrade()?;
        if host.actors.serving(actor).is_some() {
            return None;
        }
        let actor = ActorId::new(actor).ok()?;
        Some(RemoteActor {
            caller: host.caller.clone(),
            subject: lattice::subject::actor_rpc(&host.lattice, &actor),
            origin: self.origin.clone(),
            timeout: host.call_timeout(),
        })
    }

    fn call_http(
        &self,
        actor: &str,
        request: hyper::Request<HttpBody>,
    ) -> BoxFuture<'static, Result<hyper::Response<HttpBody>, CallError>> {
        let host = self.host.clone();
        let actor = actor.to_string();
        Box::pin(async move {
            let host = host
                .upgrade()
                .ok_or_else(|| CallError::Failed("the host is shutting down".into()))?;
            let (local, admitted) = host
                .actors
                .admit(&actor)
                .ok_or_else(|| CallError::NotRunning(actor.clone()))?;
            let deadline = tokio::time::Instant::now() + host.call_timeout();
            let failed = |e| provider_call_error(&actor, HostCallError::Actor(e));
            local
                .invoke_http_admitted(
                    admitted.map_err(failed)?,
                    request,
                    TraceContext::new_root(),
                    deadline,
                )
                .await
                .map_err(failed)
        })
    }
}

/// What a provider's call to `actor` failed with, in the terms an HTTP server
/// picks its status by.
fn provider_call_error(actor: &str, e: HostCallError) -> CallError {
    match e {
        HostCallError::Actor(e) if e.is_busy() => CallError::Busy(e.to_string()),
        HostCallError::Actor(InvokeError::Deadline { .. }) => CallError::Timeout(actor.to_string()),
        HostCallError::Actor(InvokeError::Stopped { .. }) => {
            CallError::NotRunning(actor.to_string())
        }
        HostCallError::Remote(e) => call_error(actor, e),
        other => CallError::Failed(other.to_string()),
    }
}

/// The providers running inside one host, by id. Every method takes and
/// releases the lock itself; none holds it across an await.
#[derive(Default)]
pub(crate) struct ProviderTable {
    map: RwLock<HashMap<ProviderId, ProviderRuntime>>,
}

impl ProviderTable {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ProviderId, ProviderRuntime>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ProviderId, ProviderRuntime>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The provider `id` when it runs in this host.
    pub(crate) fn get(&self, id: &ProviderId) -> Option<ProviderRuntime> {
        self.read().get(id).cloned()
    }

    /// Whether `id` runs in this host.
    pub(crate) fn contains(&self, id: &ProviderId) -> bool {
        self.read().contains_key(id)
    }

    /// How many run here.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }

    /// Every provider, sorted by id.
    pub(crate) fn descriptions(&self) -> Vec<ProviderDescription> {
        let mut list: Vec<_> = self
            .read()
            .values()
            .map(ProviderRuntime::description)
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    fn insert(&self, id: ProviderId, rt: ProviderRuntime) {
        self.write().insert(id, rt);
    }

    fn remove(&self, id: &ProviderId) -> Option<ProviderRuntime> {
        self.write().remove(id)
    }

    /// Takes every provider out (host shutdown).
    pub(crate) fn drain(&self) -> Vec<ProviderRuntime> {
        self.write().drain().map(|(_, p)| p).collect()
    }
}

impl HostInner {
    /// Starts a built-in provider in this host.
    ///
    /// # Errors
    /// [`ControlError::ProviderRunning`] when the id runs here already,
    /// [`ControlError::UnknownBuiltin`] for a name that is not built in,
    /// [`ControlError::ProviderStart`] when the provider fails to start,
    /// [`ControlError::HostClosing`] once the host is stopping.
    pub(crate) async fn start_provider(
        self: &Arc<Self>,
        cmd: StartProvider,
    ) -> Result<ProviderAck, ControlError> {
        let guard = self.lifecycle.lock().await;
        self.open(&guard)?;
        if self.providers.contains(&cmd.provider_id) {
            return Err(ControlError::ProviderRunning {
                provider: cmd.provider_id,
                host: self.name.clone(),
            });
        }
        let provider =
            builtin(&cmd.name, self.metrics.as_ref().map(|(m, _)| m)).ok_or_else(|| {
                ControlError::UnknownBuiltin {
                    reference: cmd.name.clone(),
                    known: BUILTINS
                        .iter()
                        .map(|b| format!("builtin:{b}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
        let ctx = ProviderContext {
            lattice: self.lattice.clone(),
            provider_id: cmd.provider_id.to_string(),
            nats: self.nats.clone(),
            actors: Arc::new(HostActorCaller {
                host: Arc::downgrade(self),
                origin: cmd.provider_id.to_string(),
            }),
        };
        let rt = ProviderRuntime::start(
            provider,
            ctx,
            &cmd.name.to_string(),
            &format!("host {}", self.name),
            self.id.as_str(),
        )
        .await?;
        let contract = rt.contract().clone();
        self.providers.insert(cmd.provider_id.clone(), rt);
        Ok(ProviderAck {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            provider_id: cmd.provider_id,
            contract,
        })
    }

    /// Stops a provider running in this host.
    ///
    /// # Errors
    /// [`ControlError::ProviderNotHere`] when it does not run here.
    pub(crate) async fn stop_provider(
        &self,
        cmd: StopProvider,
    ) -> Result<ProviderAck, ControlError> {
        let _guard = self.lifecycle.lock().await;
        let rt = self.providers.remove(&cmd.provider_id).ok_or_else(|| {
            ControlError::ProviderNotHere {
                provider: cmd.provider_id.clone(),
                host: self.name.clone(),
                host_id: self.id.clone(),
            }
        })?;
        rt.stop("stop requested").await;
        Ok(ProviderAck {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            provider_id: cmd.provider_id,
            contract: rt.contract().clone(),
        })
    }
}
