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

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    artifact::open_state_bucket,
    id::{HostId, LatticeId},
};

/// The key prefix of host records in the state bucket.
pub const KEY_PREFIX: &str = "host.";

/// A host's record: how often it writes, so readers know when it is late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
}

/// Reads and writes the host records of one lattice.
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

    /// The hosts whose record was written within three of their heartbeat
    /// intervals of the newest record (server time).
    ///
    /// # Errors
    /// [`Error::Nats`] when the bucket cannot be read.
    pub async fn live(&self) -> Result<BTreeSet<HostId>, Error> {
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| Error::nats("list hosts", e))?
            .filter_map(|k| async move { k.ok() })
            .filter(|k| futures::future::ready(k.starts_with(KEY_PREFIX)))
            .collect()
            .await;
        let mut seen = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(entry) = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| Error::nats(format!("read {key}"), e))?
                .filter(|e| e.operation == kv::Operation::Put)
            else {
                continue;
            };
            let (Ok(host), Ok(record)) = (
                HostId::new(&key[KEY_PREFIX.len()..]),
                serde_json::from_slice::<HostRecord>(&entry.value),
            ) else {
                continue; // not a host record this version can read
            };
            seen.push((host, record, entry.created));
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
}
