//! Which hosts are alive, from the lattice's state bucket, so a scatter-gather
//! (ping, inventory, auction) ends as soon as every live host has answered
//! instead of always waiting out its window.
//!
//! Each host puts `host.{id}` when it starts and on every heartbeat, and deletes
//! it when it stops. Liveness is judged on the **server's** timestamps only (a
//! key is live when it was written within three of its host's heartbeat
//! intervals of the newest key), so hosts and clients with skewed clocks agree.
//! A host that died without deleting its key drops out after three intervals;
//! until then a gather waits out its window for it, as it did without a
//! registry.

use std::{collections::BTreeSet, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, ReplayPolicy, push},
    kv,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    artifact::open_state_bucket,
    id::{HostId, LatticeId},
    subject,
};

/// The key prefix of host records in the state bucket.
pub const KEY_PREFIX: &str = "host.";

/// A host's record: how often it writes, so readers know when it is late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
}

/// Writes the host records of one lattice (a host's own); [`live`] reads them.
#[derive(Clone)]
pub struct HostRegistry {
    kv: kv::Store,
}

impl HostRegistry {
    /// Opens (creating when missing) the lattice's state bucket.
    ///
    /// # Errors
    /// [`Error::Nats`] when JetStream is unavailable or not permitted.
    pub async fn open(nats: async_nats::Client, lattice: &LatticeId) -> Result<Self, Error> {
        let js = jetstream::new(nats);
        Ok(HostRegistry {
            kv: open_state_bucket(&js, lattice).await?,
        })
    }

    /// Records that `host` is alive and beats every `interval`.
    ///
    /// # Errors
    /// [`Error::Nats`] when the write fails.
    pub async fn beat(&self, host: &HostId, interval: Duration) -> Result<(), Error> {
        let record = HostRecord {
            heartbeat_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        };
        let body = serde_json::to_vec(&record).map_err(|e| Error::Codec {
            action: "encode",
            what: "host record".into(),
            reason: e.to_string(),
        })?;
        self.kv
            .put(format!("{KEY_PREFIX}{host}"), body.into())
            .await
            .map_err(|e| Error::nats(format!("record host {host}"), e))?;
        Ok(())
    }

    /// Removes `host`'s record (it is stopping).
    ///
    /// # Errors
    /// [`Error::Nats`] when the delete fails.
    pub async fn leave(&self, host: &HostId) -> Result<(), Error> {
        self.kv
            .delete(format!("{KEY_PREFIX}{host}"))
            .await
            .map_err(|e| Error::nats(format!("remove host {host}"), e))
    }
}

/// The hosts of `lattice` whose record was written within three of their
/// heartbeat intervals of the newest record (server time).
///
/// Reads every record with one ordered consumer of the state bucket's stream
/// (last value per key), without fetching the bucket's info first: one round
/// trip before the records arrive, so a CLI gather that reads this beside its
/// request rarely waits for it.
///
/// # Errors
/// [`Error::Nats`] when the bucket does not exist or cannot be read (no
/// JetStream, or NATS permissions).
pub async fn live(
    nats: &async_nats::Client,
    lattice: &LatticeId,
) -> Result<BTreeSet<HostId>, Error> {
    let bucket = subject::state_bucket(lattice);
    let stream = jetstream::new(nats.clone())
        .get_stream_no_info(format!("KV_{bucket}"))
        .await
        .map_err(|e| Error::nats(format!("open state bucket {bucket}"), e))?;
    let prefix = format!("$KV.{bucket}.{KEY_PREFIX}");
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: nats.new_inbox(),
            filter_subject: format!("{prefix}>"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::nats("list hosts", e))?;
    let mut seen = Vec::new();
    if consumer.cached_info().num_pending > 0 {
        let mut records = consumer
            .messages()
            .await
            .map_err(|e| Error::nats("list hosts", e))?;
        while let Some(msg) = records.next().await {
            let msg = msg.map_err(|e| Error::nats("list hosts", e))?;
            let (pending, written) = match msg.info() {
                Ok(info) => (info.pending, info.published),
                Err(e) => {
                    return Err(Error::Codec {
                        action: "decode",
                        what: format!("metadata of host record {}", msg.subject),
                        reason: e.to_string(),
                    });
                }
            };
            // A delete or purge marker carries this header; a put does not.
            let deleted = msg
                .headers
                .as_ref()
                .is_some_and(|h| h.get("KV-Operation").is_some());
            if !deleted
                && let Some(id) = msg.subject.strip_prefix(prefix.as_str())
                && let (Ok(host), Ok(record)) = (
                    HostId::new(id),
                    serde_json::from_slice::<HostRecord>(&msg.payload),
                )
            {
                seen.push((host, record, written));
            } // else: not a host record this version can read
            if pending == 0 {
                break;
            }
        }
    }
    let Some(newest) = seen.iter().map(|(_, _, at)| *at).max() else {
        return Ok(BTreeSet::new());
    };
    Ok(seen
        .into_iter()
        .filter(|(_, record, at)| {
            (newest - *at).whole_milliseconds() <= i128::from(record.heartbeat_ms) * 3
        })
        .map(|(host, _, _)| host)
        .collect())
}
