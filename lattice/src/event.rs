//! Lattice events, published as JSON CloudEvents on `lattice.{lid}.evt.{type}`.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{
    ctl::HostInventory,
    digest::Digest,
    id::{ActorId, HostId},
    link::LinkDefinition,
};

/// A CloudEvents 1.0 envelope (structured JSON mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Unique event id.
    pub id: String,
    /// The event type, also the last subject token: `host_started`, `actor_failed`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The host id that emitted it.
    pub source: String,
    /// RFC 3339 time of emission.
    pub time: String,
    /// Type-specific body, see [`EventData`].
    pub data: serde_json::Value,
}

/// The typed bodies of events. The variant name in snake case is the event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventData {
    /// A host joined the lattice.
    HostStarted {
        /// The host.
        host_id: HostId,
        /// Its name.
        name: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// Its version.
        version: String,
    },
    /// Periodic liveness with the full inventory; three missed beats mean the host is gone.
    HostHeartbeat(HostInventory),
    /// A host left gracefully.
    HostStopped {
        /// The host.
        host_id: HostId,
        /// Why it stopped.
        reason: String,
    },
    /// Replicas of an actor started on a host.
    ActorStarted {
        /// The host.
        host_id: HostId,
        /// The actor.
        actor_id: ActorId,
        /// Its module.
        digest: Digest,
        /// Replicas now on this host.
        replicas: u32,
    },
    /// An actor's replicas on a host were set by a scale request.
    ActorScaled {
        /// The host.
        host_id: HostId,
        /// The actor.
        actor_id: ActorId,
        /// Replicas before.
        before: u32,
        /// Replicas now.
        replicas: u32,
    },
    /// An actor's module on a host was replaced by an update request; it
    /// kept serving throughout.
    ActorUpdated {
        /// The host.
        host_id: HostId,
        /// The actor.
        actor_id: ActorId,
        /// The module before.
        from: Digest,
        /// The module now.
        to: Digest,
    },
    /// An actor stopped on a host.
    ActorStopped {
        /// The host.
        host_id: HostId,
        /// The actor.
        actor_id: ActorId,
        /// Why.
        reason: String,
    },
    /// A provider started.
    ProviderStarted {
        /// The host (or provider process id) running it.
        host_id: String,
        /// The provider id.
        provider_id: String,
        /// The contract it serves.
        contract: String,
        /// What it is, e.g. `builtin:keyvalue`.
        name: String,
    },
    /// A provider stopped.
    ProviderStopped {
        /// The host (or provider process id) that ran it.
        host_id: String,
        /// The provider id.
        provider_id: String,
        /// Why.
        reason: String,
    },
    /// A link was put into the lattice.
    LinkPut(LinkDefinition),
    /// A link was deleted.
    LinkDeleted {
        /// The actor.
        actor_id: ActorId,
        /// The contract.
        contract: String,
        /// The link name.
        link_name: String,
    },
    /// A provider could not apply a link (e.g. an HTTP port already in use).
    LinkFailed {
        /// The provider id.
        provider_id: String,
        /// The actor.
        actor_id: ActorId,
        /// The link name.
        link_name: String,
        /// What went wrong.
        error: String,
    },
    /// An actor could not be started, or an instance died (trap, deadline).
    ActorFailed {
        /// The host.
        host_id: HostId,
        /// The actor.
        actor_id: ActorId,
        /// What went wrong.
        error: String,
    },
}

impl EventData {
    /// The event type string, e.g. `actor_started`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::HostStarted { .. } => "host_started",
            EventData::HostHeartbeat(_) => "host_heartbeat",
            EventData::HostStopped { .. } => "host_stopped",
            EventData::ActorStarted { .. } => "actor_started",
            EventData::ActorScaled { .. } => "actor_scaled",
            EventData::ActorUpdated { .. } => "actor_updated",
            EventData::ActorStopped { .. } => "actor_stopped",
            EventData::ActorFailed { .. } => "actor_failed",
            EventData::ProviderStarted { .. } => "provider_started",
            EventData::ProviderStopped { .. } => "provider_stopped",
            EventData::LinkPut(_) => "link_put",
            EventData::LinkDeleted { .. } => "link_deleted",
            EventData::LinkFailed { .. } => "link_failed",
        }
    }

    /// Wraps the body in a CloudEvent from `source`.
    pub fn into_event(self, source: &str) -> Event {
        let kind = self.kind().to_string();
        let data = match serde_json::to_value(&self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        Event {
            specversion: "1.0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            source: source.to_string(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            data,
        }
    }
}

impl Event {
    /// Parses the body back into its typed form; `None` for event types this
    /// version does not know (newer hosts may add some).
    pub fn typed(&self) -> Option<EventData> {
        serde_json::from_value(serde_json::json!({"type": self.kind, "data": self.data})).ok()
    }
}

/// How long [`publish`] waits for the NATS client to take one event.
#[cfg(feature = "client")]
pub const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes `event` from `source` (a host id, a provider process id, `cli`) on
/// `lattice.{lid}.evt.{type}`.
///
/// Best effort and bounded: events inform, they never hold up the work that
/// caused them. An event that cannot be sent, or that the NATS client does not
/// take within [`PUBLISH_TIMEOUT`] (its buffer fills while the server is away),
/// is logged at debug level and dropped; one that cannot be encoded (a bug) at
/// error level.
#[cfg(feature = "client")]
pub async fn publish(
    nats: &async_nats::Client,
    lattice: &crate::id::LatticeId,
    source: &str,
    event: EventData,
) {
    let kind = event.kind();
    let body = match serde_json::to_vec(&event.into_event(source)) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, kind, "could not encode event");
            return;
        }
    };
    let max = nats.max_payload();
    if max > 0 && body.len() > max {
        // NATS would refuse it; say so loudly, since a missing heartbeat makes
        // the lattice take a live host for dead.
        tracing::warn!(
            kind,
            size = body.len(),
            max,
            "event larger than the NATS max payload; not published"
        );
        return;
    }
    let send = nats.publish(crate::subject::event(lattice, kind), body.into());
    match tokio::time::timeout(PUBLISH_TIMEOUT, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, kind, "could not publish event"),
        Err(_) => tracing::debug!(
            kind,
            "gave up publishing an event: NATS is not taking messages"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_event_shape() {
        let host = HostId::new("HX").unwrap();
        let ev = EventData::HostStopped {
            host_id: host.clone(),
            reason: "signal".into(),
        }
        .into_event(host.as_str());
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "host_stopped");
        assert_eq!(json["source"], "HX");
        assert_eq!(json["data"]["reason"], "signal");
        assert!(matches!(ev.typed(), Some(EventData::HostStopped { .. })));
    }
}
