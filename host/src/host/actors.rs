//! The actors a host runs: the table that owns them (and its lock), and
//! starting and stopping them.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use lattice::{
    ctl::{
        ActorDescription, ActorScaled, ActorStarted, ActorStatus, ActorStopped, ActorUpdated,
        ScaleActor, StartActor, StopActor, UpdateActor,
    },
    event::EventData,
    id::ActorId,
    subject,
};
use tokio::{sync::watch, task::JoinHandle};

use super::{HostInner, router::Router, serve};
use crate::{
    error::{ControlError, InvokeError},
    runtime::{
        LoadedFrom,
        actor::{Actor, Admission},
    },
};

/// Most replicas of one actor on one host (the same bound as an app's
/// [`lattice::app::MAX_REPLICAS`]); checked on every start, whatever sent it.
pub const MAX_REPLICAS_PER_HOST: u32 = lattice::app::MAX_REPLICAS as u32;

/// An actor as this host runs it: the module serving it now and its
/// subscription.
pub(crate) struct RunningActor {
    actor: Arc<Actor>,
    reference: String,
    /// Kept across updates: an update puts a new `RunningActor` with the
    /// same subscription in the table.
    serving: Arc<Serving>,
}

/// The subscription that serves an actor's calls, and the module they go to.
pub(crate) struct Serving {
    current: Arc<serve::Current>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl RunningActor {
    fn stopping(&self) -> bool {
        *self.serving.stop.borrow()
    }

    fn description(&self) -> ActorDescription {
        let (calls, errors) = self.actor.stats();
        let call_time_us = u64::try_from(self.actor.call_time().as_micros()).unwrap_or(u64::MAX);
        ActorDescription {
            id: self.actor.id().clone(),
            digest: self.actor.digest().clone(),
            reference: self.reference.clone(),
            kind: self.actor.kind(),
            replicas: self.actor.replicas(),
            warm_instances: self.actor.warm_instances(),
            calls,
            errors,
            call_time_us,
            status: if self.stopping() {
                ActorStatus::Stopping
            } else {
                ActorStatus::Running
            },
        }
    }

    /// Stops serving, drains in-flight calls (each step bounded by `drain`),
    /// drops the instances; returns the replicas it had.
    async fn stop(&self, drain: Duration) -> u32 {
        let _ = self.serving.stop.send(true);
        let task = self
            .serving
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            // The serve loop drains its subscription and exits promptly.
            let _ = tokio::time::timeout(drain, task).await;
        }
        let replicas = self.actor.replicas();
        if !self.actor.stop(drain).await {
            tracing::warn!(actor = %self.actor.id(), "drain timeout: some calls were still running");
        }
        replicas
    }
}

/// The actors of one host, by id. Every method takes and releases the lock
/// itself; none holds it across an await.
#[derive(Default)]
pub(crate) struct ActorTable {
    map: RwLock<HashMap<ActorId, Arc<RunningActor>>>,
}

impl ActorTable {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<ActorId, Arc<RunningActor>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ActorId, Arc<RunningActor>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The actor `id` when it runs here and is not stopping.
    pub(crate) fn serving(&self, id: &str) -> Option<Arc<Actor>> {
        self.read()
            .get(id)
            .filter(|r| !r.stopping())
            .map(|r| r.actor.clone())
    }

    /// Admits an in-process call to actor `id` when it runs here and is not
    /// stopping, through its subscription's current module: a call is
    /// admitted either by the module an update replaces (which finishes it)
    /// or by the new one, never refused as "stopping" in between.
    pub(crate) fn admit(&self, id: &str) -> Option<(Arc<Actor>, Result<Admission, InvokeError>)> {
        let serving = self
            .read()
            .get(id)
            .filter(|r| !r.stopping())
            .map(|r| r.serving.clone())?;
        Some(serving.current.admit())
    }

    /// Replicas of `id` here (0 when it does not run here).
    pub(crate) fn replicas_of(&self, id: &str) -> u32 {
        self.read().get(id).map_or(0, |r| r.actor.replicas())
    }

    /// How many distinct actors run here, and their replicas in all.
    pub(crate) fn counts(&self) -> (usize, u64) {
        let actors = self.read();
        let replicas = actors.values().map(|a| u64::from(a.actor.replicas())).sum();
        (actors.len(), replicas)
    }

    /// Every actor, sorted by id.
    pub(crate) fn descriptions(&self) -> Vec<ActorDescription> {
        let mut list: Vec<_> = self.read().values().map(|r| r.description()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// What the metrics' state gauges show of every actor.
    pub(crate) fn metrics_state(&self) -> Vec<crate::metrics::ActorState> {
        self.read()
            .values()
            .map(|r| crate::metrics::ActorState {
                id: r.actor.id().clone(),
                replicas: r.actor.replicas(),
                warm_instances: r.actor.warm_instances(),
                in_flight: r.actor.in_flight(),
            })
            .collect()
    }

    fn get(&self, id: &ActorId) -> Option<Arc<RunningActor>> {
        self.read().get(id).cloned()
    }

    fn insert(&self, id: ActorId, running: Arc<RunningActor>) {
        self.write().insert(id, running);
    }

    fn remove(&self, id: &ActorId) -> Option<Arc<RunningActor>> {
        self.write().remove(id)
    }

    /// Takes every actor out (host shutdown).
    pub(crate) fn drain(&self) -> Vec<(ActorId, Arc<RunningActor>)> {
        self.write().drain().collect()
    }
}

impl HostInner {
    /// Starts `cmd.replicas` replicas of an actor, or adds them when it already
    /// runs the same module here. A failure is published as `actor_failed`.
    ///
    /// # Errors
    /// [`ControlError`] naming the actor: no replicas, another module running,
    /// fetch, validation, compilation or instantiation failures.
    pub(crate) async fn start_actor(
        self: &Arc<Self>,
        cmd: StartActor,
    ) -> Result<ActorStarted, ControlError> {
        let began = Instant::now();
        let result = self.start_actor_steps(&cmd, began).await;
        if let Err(e) = &result {
            self.publish_failed(&cmd.actor_id, e, "actor failed to start")
                .await;
        }
        result
    }

    /// Logs a failed start or update of `actor` and publishes `actor_failed`.
    async fn publish_failed(&self, actor: &ActorId, error: &ControlError, log: &str) {
        tracing::warn!(actor = %actor, error = %error, "{log}");
        self.publish(EventData::ActorFailed {
            host_id: self.id.clone(),
            actor_id: actor.clone(),
            error: error.to_string(),
        })
        .await;
    }

    async fn start_actor_steps(
        self: &Arc<Self>,
        cmd: &StartActor,
        began: Instant,
    ) -> Result<ActorStarted, ControlError> {
        if cmd.replicas == 0 {
            return Err(ControlError::NoReplicas {
                actor: cmd.actor_id.clone(),
            });
        }
        let too_many = |running: u32| ControlError::TooManyReplicas {
            actor: cmd.actor_id.clone(),
            host: self.name.clone(),
            running,
            asked: cmd.replicas,
        };

        {
            let guard = self.lifecycle.lock().await;
            self.open(&guard)?;
            if let Some(replicas) = self.add_replicas(cmd, &too_many)? {
                self.publish_started(cmd, replicas).await;
                return Ok(self.started(cmd, replicas, false, began));
            }
        }
        if cmd.replicas > MAX_REPLICAS_PER_HOST {
            return Err(too_many(0));
        }
        // The slow part (fetch, issuer check, compile, the first instance's
        // init) runs without the host-wide lock: one slow start holds up no
        // other start or stop.
        let (actor, from) = self.prepare(cmd).await?;
        let guard = self.lifecycle.lock().await;
        self.open(&guard)?;
        // A start of the same actor may have finished meanwhile: join it (the
        // instance made here is dropped).
        if let Some(replicas) = self.add_replicas(cmd, &too_many)? {
            self.publish_started(cmd, replicas).await;
            return Ok(self.started(cmd, replicas, false, began));
        }
        self.serve_prepared(cmd, actor).await?;
        self.publish_started(cmd, cmd.replicas).await;
        tracing::info!(actor = %cmd.actor_id, digest = %cmd.digest.short(), ?from, replicas = cmd.replicas, "actor started");
        Ok(self.started(cmd, cmd.replicas, from == LoadedFrom::Compiled, began))
    }

    /// Adds the requested replicas when the actor already runs here; `None`
    /// when it does not. Call with the lifecycle lock held.
    fn add_replicas(
        &self,
        cmd: &StartActor,
        too_many: &dyn Fn(u32) -> ControlError,
    ) -> Result<Option<u32>, ControlError> {
        let Some(running) = self.actors.get(&cmd.actor_id) else {
            return Ok(None);
        };
        if running.actor.digest() != &cmd.digest {
            return Err(ControlError::OtherModule {
                actor: cmd.actor_id.clone(),
                running: running.actor.digest().short().to_string(),
                host: self.name.clone(),
                wanted: cmd.digest.short().to_string(),
            });
        }
        let now = running.actor.replicas();
        if now.saturating_add(cmd.replicas) > MAX_REPLICAS_PER_HOST {
            return Err(too_many(now));
        }
        Ok(Some(running.actor.add_replicas(cmd.replicas)))
    }

    /// Fetches, checks, compiles and instantiates the module of `cmd`: an
    /// actor ready to serve, not yet reachable.
    async fn prepare(
        self: &Arc<Self>,
        cmd: &StartActor,
    ) -> Result<(Arc<Actor>, LoadedFrom), ControlError> {
        let (module, claims, from) = self.module_of(cmd).await?;
        // The claims go with the module's router: during an update, each
        // module's calls are checked against its own.
        let actor = Actor::start(
            &self.runtime,
            cmd.actor_id.clone(),
            cmd.digest.clone(),
            &module,
            cmd.replicas,
            cmd.config.clone(),
            Arc::new(Router::new(self, claims)),
        )
        .await?;
        Ok((actor, from))
    }

    /// The compiled module of `cmd` and the claims it may run with.
    async fn module_of(
        &self,
        cmd: &StartActor,
    ) -> Result<
        (
            crate::runtime::Code,
            Option<Arc<lattice::claims::Claims>>,
            LoadedFrom,
        ),
        ControlError,
    > {
        // A module this host has checked and compiled before needs no download:
        // starting many actors of one module costs no artifact-store reads.
        if let (Some(claims), Some(module)) = (
            self.trust.known(&cmd.digest),
            self.runtime.cached(&cmd.digest),
        ) {
            return Ok((module, claims, LoadedFrom::Memory));
        }
        let what = format!("actor {} ({})", cmd.actor_id, cmd.reference);
        let artifacts = self
            .artifacts()
            .await
            .map_err(ControlError::ArtifactStore)?;
        let bytes = artifacts
            .get(&cmd.digest)
            .await
            .map_err(|source| ControlError::Fetch {
                actor: cmd.actor_id.clone(),
                reference: cmd.reference.clone(),
                source: Box::new(source),
            })?;
        crate::runtime::validate::check_magic(&what, &bytes)?;
        // The issuer policy: checked here, once per start, never per call.
        let claims = self.trust.claims_for(&what, &cmd.digest, &bytes)?;
        let (module, from) = self
            .runtime
            .load(&what, &cmd.digest, Arc::new(bytes))
            .await?;
        Ok((module, claims, from))
    }

    /// Subscribes a prepared actor to its calls and puts it in the table.
    /// Call with the lifecycle lock held (and the host not closing).
    async fn serve_prepared(
        self: &Arc<Self>,
        cmd: &StartActor,
        actor: Arc<Actor>,
    ) -> Result<(), ControlError> {
        let sub = self
            .nats
            .queue_subscribe(
                subject::actor_rpc(&self.lattice, &cmd.actor_id),
                subject::rpc_queue_group(&cmd.actor_id),
            )
            .await
            .map_err(|e| ControlError::Subscribe {
                actor: cmd.actor_id.clone(),
                reason: e.to_string(),
            })?;
        // Make sure the server has the subscription before we say "started", so the
        // first call cannot race it to a no-responders error. A failed flush
        // (NATS unreachable) fails nothing: the client subscribes again when it
        // reconnects, and until then no call can reach any host anyway.
        match tokio::time::timeout(Duration::from_secs(5), self.nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(actor = %cmd.actor_id, error = %e, "started before NATS confirmed the subscription");
            }
            Err(_) => {
                tracing::warn!(actor = %cmd.actor_id, "started before NATS confirmed the subscription (no answer in 5 s)");
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let current = Arc::new(serve::Current::new(actor.clone()));
        let serving = Arc::new(Serving {
            current: current.clone(),
            stop,
            task: std::sync::Mutex::new(None),
        });
        self.actors.insert(
            cmd.actor_id.clone(),
            Arc::new(RunningActor {
                actor,
                reference: cmd.reference.clone(),
                serving: serving.clone(),
            }),
        );
        let task = tokio::spawn(serve::serve(Arc::downgrade(self), current, sub, stop_rx));
        *serving.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// Replaces the module (and configuration) of an actor running here,
    /// keeping its replicas and its subscription: the new module is prepared
    /// while the old one serves, then calls admitted from that moment go to
    /// it, and the old module finishes the calls it took before its instances
    /// are dropped. No call finds the actor missing or is routed to a
    /// subscription going away. Publishes `actor_updated`; a failure is
    /// published as `actor_failed` and leaves the old module running.
    ///
    /// # Errors
    /// [`ControlError::ActorNotHere`] when it does not run here,
    /// [`ControlError::ActorChanged`] when it was stopped or updated while
    /// the new module was prepared, [`ControlError::HostClosing`], and every
    /// error of a start (fetch, trust, compilation, instantiation).
    pub(crate) async fn update_actor(
        self: &Arc<Self>,
        cmd: UpdateActor,
    ) -> Result<ActorUpdated, ControlError> {
        let began = Instant::now();
        let result = self.update_actor_steps(&cmd, began).await;
        if let Err(e) = &result {
            self.publish_failed(
                &cmd.actor_id,
                e,
                "actor update failed; the old module keeps running",
            )
            .await;
        }
        result
    }

    async fn update_actor_steps(
        self: &Arc<Self>,
        cmd: &UpdateActor,
        began: Instant,
    ) -> Result<ActorUpdated, ControlError> {
        let old = self
            .actors
            .get(&cmd.actor_id)
            .filter(|r| !r.stopping())
            .ok_or_else(|| self.not_here(&cmd.actor_id))?;
        let mut start = StartActor {
            actor_id: cmd.actor_id.clone(),
            digest: cmd.digest.clone(),
            reference: cmd.reference.clone(),
            replicas: old.actor.replicas(),
            config: cmd
                .config
                .clone()
                .unwrap_or_else(|| old.actor.config().clone()),
        };
        // The slow part without the host-wide lock, as for a start.
        let (actor, from) = self.prepare(&start).await?;
        let (before, carried) = {
            let guard = self.lifecycle.lock().await;
            self.open(&guard)?;
            match self.actors.get(&cmd.actor_id) {
                Some(now) if Arc::ptr_eq(&now, &old) && !now.stopping() => {}
                _ => {
                    return Err(ControlError::ActorChanged {
                        actor: cmd.actor_id.clone(),
                        host: self.name.clone(),
                    });
                }
            }
            // A scale may have landed while the module was prepared.
            start.replicas = old.actor.replicas();
            actor.set_replicas(start.replicas);
            // The actor's counters go on from the old module's rather than
            // back to zero: what it counted so far is added before the new
            // module can be seen, what it counts from now on once it has
            // drained (below).
            let carried = old.actor.counts();
            actor.add_counts(carried);
            self.actors.insert(
                cmd.actor_id.clone(),
                Arc::new(RunningActor {
                    actor: actor.clone(),
                    reference: cmd.reference.clone(),
                    serving: old.serving.clone(),
                }),
            );
            let before = old.serving.current.replace(actor.clone());
            // Under the lock, so that a stop of the actor, which takes it
            // next, is published after this.
            self.publish(EventData::ActorUpdated {
                host_id: self.id.clone(),
                actor_id: cmd.actor_id.clone(),
                from: before.digest().clone(),
                to: cmd.digest.clone(),
            })
            .await;
            (before, carried)
        };
        // Outside the lock: draining takes up to the drain timeout, and other
        // requests to this host need not wait for it.
        if !before.stop(self.config.drain_timeout).await {
            tracing::warn!(actor = %cmd.actor_id, "drain timeout: some calls to the old module were still running");
        }
        // To the module serving now: another update may have replaced the
        // new one meanwhile. (Calls still running past the drain timeout are
        // not counted.)
        old.serving
            .current
            .get()
            .add_counts(before.counts().since(carried));
        let was = before.digest().clone();
        tracing::info!(actor = %cmd.actor_id, from = %was.short(), to = %cmd.digest.short(), ?from, "actor updated");
        Ok(ActorUpdated {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            actor_id: cmd.actor_id.clone(),
            from: was,
            to: cmd.digest.clone(),
            replicas: start.replicas,
            elapsed_ms: began.elapsed().as_millis() as u64,
        })
    }

    /// The error for an actor that does not run here.
    fn not_here(&self, actor: &ActorId) -> ControlError {
        ControlError::ActorNotHere {
            actor: actor.clone(),
            host: self.name.clone(),
            host_id: self.id.clone(),
        }
    }

    /// Refuses lifecycle changes once the host is stopping (`closed`, the
    /// value the lifecycle lock guards): an actor started after the
    /// shutdown emptied the table would never be stopped.
    pub(crate) fn open(&self, closed: &bool) -> Result<(), ControlError> {
        if *closed {
            return Err(ControlError::HostClosing {
                host: self.name.clone(),
            });
        }
        Ok(())
    }

    async fn publish_started(&self, cmd: &StartActor, replicas: u32) {
        self.publish(EventData::ActorStarted {
            host_id: self.id.clone(),
            actor_id: cmd.actor_id.clone(),
            digest: cmd.digest.clone(),
            replicas,
        })
        .await;
    }

    fn started(
        &self,
        cmd: &StartActor,
        replicas: u32,
        compiled: bool,
        began: Instant,
    ) -> ActorStarted {
        ActorStarted {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            actor_id: cmd.actor_id.clone(),
            replicas,
            compiled,
            elapsed_ms: began.elapsed().as_millis() as u64,
        }
    }

    /// Sets the replicas of an actor running here, up or down (calls running
    /// now finish; see [`Actor::set_replicas`]), and publishes `actor_scaled`.
    ///
    /// # Errors
    /// [`ControlError::NoReplicas`] for 0 (stop the actor instead),
    /// [`ControlError::ScaleTooLarge`] past the per-host limit,
    /// [`ControlError::ActorNotHere`] when it does not run here.
    pub(crate) async fn scale_actor(&self, cmd: ScaleActor) -> Result<ActorScaled, ControlError> {
        if cmd.replicas == 0 {
            return Err(ControlError::NoReplicas {
                actor: cmd.actor_id,
            });
        }
        let _guard = self.lifecycle.lock().await;
        let running = self
            .actors
            .get(&cmd.actor_id)
            .filter(|r| !r.stopping())
            .ok_or_else(|| self.not_here(&cmd.actor_id))?;
        if cmd.replicas > MAX_REPLICAS_PER_HOST {
            return Err(ControlError::ScaleTooLarge {
                actor: cmd.actor_id,
                host: self.name.clone(),
                asked: cmd.replicas,
            });
        }
        let before = running.actor.set_replicas(cmd.replicas);
        self.publish(EventData::ActorScaled {
            host_id: self.id.clone(),
            actor_id: cmd.actor_id.clone(),
            before,
            replicas: cmd.replicas,
        })
        .await;
        tracing::info!(actor = %cmd.actor_id, before, replicas = cmd.replicas, "actor scaled");
        Ok(ActorScaled {
            host_id: self.id.clone(),
            host_name: self.name.clone(),
            actor_id: cmd.actor_id,
            before,
            replicas: cmd.replicas,
        })
    }

    /// Stops an actor on this host: no new calls, in-flight ones drain.
    ///
    /// # Errors
    /// [`ControlError::ActorNotHere`] when it does not run here.
    pub(crate) async fn stop_actor(&self, cmd: StopActor) -> Result<ActorStopped, ControlError> {
        let running = {
            let _guard = self.lifecycle.lock().await;
            self.actors
                .remove(&cmd.actor_id)
                .ok_or_else(|| self.not_here(&cmd.actor_id))?
        };
        // Drained outside the lock: other requests to this host (and its
        // shutdown) need not wait for this actor's calls.
        let replicas = self
            .stop_running(&cmd.actor_id, running, "stop requested")
            .await;
        Ok(ActorStopped {
            host_id: self.id.clone(),
            actor_id: cmd.actor_id,
            replicas,
        })
    }

    /// Stops one actor taken out of the table and publishes `actor_stopped`;
    /// returns the replicas it had.
    pub(crate) async fn stop_running(
        &self,
        id: &ActorId,
        running: Arc<RunningActor>,
        reason: &str,
    ) -> u32 {
        let replicas = running.stop(self.config.drain_timeout).await;
        self.publish(EventData::ActorStopped {
            host_id: self.id.clone(),
            actor_id: id.clone(),
            reason: reason.to_string(),
        })
        .await;
        replicas
    }
}
