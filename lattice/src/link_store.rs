//! Links in the lattice's JetStream KV bucket: put, delete, list, and a live cache.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::{
    Error,
    artifact::{STREAM_SETTLE, again_while, open_state_bucket, while_stream_settles},
    id::{ActorId, ContractId, LatticeId, LinkName, ProviderId},
    link::{self, KEY_PREFIX, LinkDefinition},
};

/// Reads and writes a lattice's links.
#[derive(Clone)]
pub struct LinkStore {
    kv: kv::Store,
}

/// A change seen by [`LinkCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A link was put (new or changed).
    Put(LinkDefinition),
    /// A link was deleted; the last known definition.
    Deleted(LinkDefinition),
}

impl LinkStore {
    /// Opens (creating when missing) the lattice's state bucket.
    ///
    /// # Errors
    /// [`Error::Nats`] when JetStream is unavailable.
    pub async fn open(nats: async_nats::Client, lattice: &LatticeId) -> Result<Self, Error> {
        let js = jetstream::new(nats);
        Ok(LinkStore {
            kv: open_state_bucket(&js, lattice).await?,
        })
    }

    /// Stores a link, replacing one with the same (actor, contract, link name).
    ///
    /// # Errors
    /// [`Error::Codec`] when the link cannot be encoded; [`Error::Nats`] on store
    /// failure. Its ids were checked when they were parsed.
    pub async fn put(&self, link: &LinkDefinition) -> Result<(), Error> {
        let body = serde_json::to_vec(link).map_err(|e| Error::Codec {
            action: "encode",
            what: "link".into(),
            reason: e.to_string(),
        })?;
        let body = bytes::Bytes::from(body);
        while_stream_settles(STREAM_SETTLE, || self.kv.put(link.key(), body.clone()))
            .await
            .map_err(|e| Error::nats(format!("put link {}", link.key()), e))?;
        Ok(())
    }

    /// Deletes the link (actor, contract, link name); returns the definition
    /// deleted, `None` when there was none.
    ///
    /// The delete names the KV revision it read, so what is returned is exactly
    /// what was deleted, even when a put of the same link races it.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failure.
    pub async fn delete(
        &self,
        actor: &ActorId,
        contract: &ContractId,
        link_name: &LinkName,
    ) -> Result<Option<LinkDefinition>, Error> {
        let key = link::key(actor, contract, link_name);
        for _ in 0..100 {
            let Some(entry) = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| Error::nats(format!("get link {key}"), e))?
                .filter(|e| e.operation == kv::Operation::Put)
            else {
                return Ok(None);
            };
            match self
                .kv
                .delete_expect_revision(&key, Some(entry.revision))
                .await
            {
                Ok(()) => return Ok(serde_json::from_slice(&entry.value).ok()),
                Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(Error::nats(format!("delete link {key}"), e)),
            }
        }
        Err(Error::nats(
            format!("delete link {key}"),
            std::io::Error::other("the link changed 100 times while being deleted"),
        ))
    }

    async fn get_key(&self, key: &str) -> Result<Option<LinkDefinition>, Error> {
        let entry = self
            .kv
            .get(key)
            .await
            .map_err(|e| Error::nats(format!("get link {key}"), e))?;
        Ok(entry.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Every link, sorted by key.
    ///
    /// # Errors
    /// [`Error::Nats`] on store failure.
    pub async fn list(&self) -> Result<Vec<LinkDefinition>, Error> {
        let mut keys: Vec<String> = match patiently("list links", || self.kv.keys()).await {
            Ok(stream) => {
                stream
                    .filter_map(|k| async move { k.ok() })
                    .filter(|k| futures::future::ready(k.starts_with(KEY_PREFIX)))
                    .collect()
                    .await
            }
            Err(e) => return Err(Error::nats("list links", e)),
        };
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(l) = self.get_key(&k).await? {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Starts a [`LinkCache`] fed by a KV watch (current links first, then changes).
    ///
    /// # Errors
    /// [`Error::Nats`] when the watch cannot be created.
    pub async fn cache(&self) -> Result<LinkCache, Error> {
        let mut watch = patiently("watch links", || {
            self.kv.watch_with_history(format!("{KEY_PREFIX}>"))
        })
        .await
        .map_err(|e| Error::nats("watch links", e))?;
        // Prime the map before returning, so a host checks capabilities against the
        // links that exist now; the watch then replays them (puts are idempotent)
        // and follows changes.
        let initial: HashMap<String, LinkDefinition> = self
            .list()
            .await?
            .into_iter()
            .map(|l| (l.key(), l))
            .collect();
        let (tx, _) = broadcast::channel(256);
        let cache = LinkCache {
            links: Arc::new(RwLock::new(initial)),
            changes: tx.clone(),
        };
        let links = Arc::downgrade(&cache.links);
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                let Some(links) = links.upgrade() else { break };
                let change = match entry.operation {
                    kv::Operation::Put => {
                        match serde_json::from_slice::<LinkDefinition>(&entry.value) {
                            Ok(l) => {
                                write(&links).insert(entry.key.clone(), l.clone());
                                LinkChange::Put(l)
                            }
                            Err(e) => {
                                tracing::warn!(key = %entry.key, error = %e, "ignoring unreadable link");
                                continue;
                            }
                        }
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        match write(&links).remove(&entry.key) {
                            Some(l) => LinkChange::Deleted(l),
                            None => continue,
                        }
                    }
                };
                let _ = tx.send(change);
            }
        });
        Ok(cache)
    }
}

/// Attempts a watch (or key listing) gets when JetStream does not answer in
/// time.
const WATCH_TRIES: u32 = 4;

/// Runs `op`, which creates a consumer, again when it timed out. A cluster
/// under load (a replicated stream just created, a leader moving) can take
/// longer than the JetStream API timeout to create one, and a host starting
/// then would exit. A timed-out attempt's consumer, if the server made it
/// after all, is ephemeral and removed once idle.
async fn patiently<T, F, Fut>(what: &str, op: F) -> Result<T, kv::WatchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kv::WatchError>>,
{
    let timed_out = |e: &kv::WatchError| e.kind() == kv::WatchErrorKind::TimedOut;
    again_while(what, WATCH_TRIES, timed_out, op).await
}

fn write(
    links: &RwLock<HashMap<String, LinkDefinition>>,
) -> std::sync::RwLockWriteGuard<'_, HashMap<String, LinkDefinition>> {
    links.write().unwrap_or_else(|p| p.into_inner())
}

/// An in-memory copy of the lattice's links, kept current by a KV watch.
#[derive(Clone)]
pub struct LinkCache {
    links: Arc<RwLock<HashMap<String, LinkDefinition>>>,
    changes: broadcast::Sender<LinkChange>,
}

impl LinkCache {
    /// The link (actor, contract, link name), if any.
    pub fn get(
        &self,
        actor: &ActorId,
        contract: &ContractId,
        link_name: &LinkName,
    ) -> Option<LinkDefinition> {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&link::key(actor, contract, link_name))
            .cloned()
    }

    /// Every link served by `provider_id`.
    pub fn for_provider(&self, provider_id: &ProviderId) -> Vec<LinkDefinition> {
        let mut v: Vec<_> = self
            .links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|l| &l.provider_id == provider_id)
            .cloned()
            .collect();
        v.sort_by_key(LinkDefinition::key);
        v
    }

    /// Every link of `actor`.
    pub fn for_actor(&self, actor: &ActorId) -> Vec<LinkDefinition> {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|l| &l.actor_id == actor)
            .cloned()
            .collect()
    }

    /// Changes from now on. Subscribe before reading [`LinkCache::for_provider`]
    /// so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<LinkChange> {
        self.changes.subscribe()
    }
}
