//! `backend=jetstream`: a JetStream KV bucket, shared by every provider instance
//! (every host) linked to it.
//!
//! Keys and values are laid out as described in [`crate::codec`]. Expired
//! entries count as missing and are deleted when an operation comes across
//! them. `Increment` and `Delete` use optimistic concurrency on the key's
//! revision, so they are atomic across hosts.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, ReplayPolicy, push},
    kv,
};
use futures::StreamExt;

use crate::codec::{Envelope, decode_key, encode_key};
use crate::error::{BoxError, StoreError};
use crate::memory::parse_counter;
use crate::page::KeyPage;

/// How often `Increment` and `Delete` retry after losing a race.
const MAX_ATTEMPTS: u32 = 1_000;

/// How long `Keys` waits for the next entry before giving up on the listing.
const SCAN_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Expired keys one `Keys` scan deletes at most (each a request of its own);
/// later scans take the rest.
const MAX_EXPIRED_PER_SCAN: usize = 1000;

/// Header JetStream KV marks deletes and purges with.
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// What the provider knows about the health of its JetStream traffic: the
/// connectivity failure of the most recent JetStream operation, if it failed
/// for that reason.
#[derive(Debug, Default)]
pub(crate) struct HealthTracker {
    last_failure: Mutex<Option<String>>,
}

impl HealthTracker {
    fn set(&self, failure: Option<String>) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failure;
    }

    /// The connectivity failure of the last JetStream operation, if any.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whether an error from the NATS client means the server or JetStream could
/// not be reached (as opposed to a refused or invalid request).
fn is_connectivity(err: &(dyn std::error::Error + 'static), client: &async_nats::Client) -> bool {
    use async_nats::jetstream::context::{
        PublishError, PublishErrorKind, RequestError, RequestErrorKind,
    };
    use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};

    if client.connection_state() != async_nats::connection::State::Connected {
        return true;
    }
    let mut next = Some(err);
    while let Some(e) = next {
        let hit = if let Some(e) = e.downcast_ref::<kv::EntryError>() {
            e.kind() == kv::EntryErrorKind::TimedOut
        } else if let Some(e) = e.downcast_ref::<kv::UpdateError>() {
            e.kind() == kv::UpdateErrorKind::TimedOut
        } else if let Some(e) = e.downcast_ref::<kv::WatchError>() {
            e.kind() == kv::WatchErrorKind::TimedOut
        } else if let Some(e) = e.downcast_ref::<PublishError>() {
            matches!(
                e.kind(),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
            )
        } else if let Some(e) = e.downcast_ref::<RequestError>() {
            matches!(
                e.kind(),
                RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
            )
        } else if let Some(e) = e.downcast_ref::<async_nats::RequestError>() {
            matches!(
                e.kind(),
                async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders
            )
        } else if let Some(e) = e.downcast_ref::<DirectGetError>() {
            e.kind() == DirectGetErrorKind::TimedOut
        } else {
            e.is::<std::io::Error>() || e.is::<tokio::time::error::Elapsed>()
        };
        if hit {
            return true;
        }
        next = e.source();
    }
    false
}

/// Unix time now, in milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The live state of one key.
struct Current {
    /// The revision of the key's last entry (a value, a delete marker or an
    /// expired value); 0 when the key never had one.
    revision: u64,
    /// The value, when present and not expired.
    value: Option<Envelope>,
    /// Whether the last entry is an expired value (to be deleted).
    expired: bool,
}

/// The JetStream store of one link.
#[derive(Debug)]
pub(crate) struct JetStreamStore {
    kv: kv::Store,
    bucket: String,
    client: async_nats::Client,
    health: Arc<HealthTracker>,
}

impl JetStreamStore {
    /// Opens bucket `bucket`, creating it (history 1) when missing.
    ///
    /// # Errors
    /// The client's error when the bucket can be neither opened nor created.
    pub(crate) async fn open(
        client: async_nats::Client,
        bucket: &str,
        description: String,
        health: Arc<HealthTracker>,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client.clone());
        let store = Self::open_or_create(&js, bucket, description).await;
        let failure = store
            .as_ref()
            .err()
            .filter(|e| is_connectivity(e.as_ref(), &client))
            .map(|e| format!("JetStream unreachable: opening bucket {bucket}: {e}"));
        health.set(failure);
        let kv = store.map_err(|source| StoreError::JetStream {
            bucket: bucket.to_string(),
            action: "opening or creating the bucket".to_string(),
            source,
        })?;
        Ok(JetStreamStore {
            kv,
            bucket: bucket.to_string(),
            client,
            health,
        })
    }

    async fn open_or_create(
        js: &jetstream::Context,
        bucket: &str,
        description: String,
    ) -> Result<kv::Store, BoxError> {
        if let Ok(store) = js.get_key_value(bucket).await {
            return Ok(store);
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: bucket.to_string(),
                description: description.clone(),
                history: 1,
                num_replicas: lattice::artifact::replicas_for(&js.client()),
                ..Default::default()
            })
            .await;
        // A cluster with fewer than three servers: one replica.
        let created = match created {
            Ok(store) => Ok(store),
            Err(_) if js.get_key_value(bucket).await.is_err() => {
                js.create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    description,
                    history: 1,
                    ..Default::default()
                })
                .await
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(store) => Ok(store),
            // Another host may have created it in the meantime with another
            // description: use theirs.
            Err(create_err) => js
                .get_key_value(bucket)
                .await
                .map_err(|_| Box::new(create_err) as BoxError),
        }
    }

    /// The bucket's name.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Records the outcome of a JetStream request for [`HealthTracker`] and
    /// wraps a failure.
    fn track<T, E>(
        &self,
        action: impl FnOnce() -> String,
        result: Result<T, E>,
    ) -> Result<T, StoreError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(value) => {
                self.health.set(None);
                Ok(value)
            }
            Err(err) => {
                let action = action();
                let failure = is_connectivity(&err, &self.client).then(|| {
                    format!(
                        "JetStream unreachable: bucket {}: {action}: {err}",
                        self.bucket
                    )
                });
                self.health.set(failure);
                Err(StoreError::JetStream {
                    bucket: self.bucket.clone(),
                    action,
                    source: Box::new(err),
                })
            }
        }
    }

    fn corrupt(&self, key: &str, source: crate::codec::EnvelopeError) -> StoreError {
        StoreError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            source,
        }
    }

    /// Reads the state of `key` (stored as `stored`).
    async fn current(&self, key: &str, stored: &str) -> Result<Current, StoreError> {
        let entry = self.track(
            || format!("reading key {key:?}"),
            self.kv.entry(stored).await,
        )?;
        let Some(entry) = entry else {
            return Ok(Current {
                revision: 0,
                value: None,
                expired: false,
            });
        };
        if entry.operation != kv::Operation::Put {
            return Ok(Current {
                revision: entry.revision,
                value: None,
                expired: false,
            });
        }
        let envelope = Envelope::decode(&entry.value).map_err(|e| self.corrupt(key, e))?;
        let expired = envelope.expired(now_ms());
        Ok(Current {
            revision: entry.revision,
            value: (!expired).then_some(envelope),
            expired,
        })
    }

    /// Deletes an expired entry unless it changed since `revision`; failures
    /// only mean someone else got there first or the next reader will retry.
    async fn remove_expired(&self, key: &str, stored: &str, revision: u64) {
        let result = self.kv.delete_expect_revision(stored, Some(revision)).await;
        match result {
            // Someone wrote or deleted the key since: nothing to do.
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
            // Counts for health like any other request; the error itself does
            // not matter to the caller, the entry counts as missing anyway.
            result => {
                let _ = self.track(|| format!("deleting expired key {key:?}"), result);
            }
        }
    }

    /// The value of `key`, if present and not expired.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = encode_key(key);
        let current = self.current(key, &stored).await?;
        if current.expired {
            self.remove_expired(key, &stored, current.revision).await;
        }
        Ok(current.value.map(|e| e.value))
    }

    /// Whether `key` is present and not expired.
    pub(crate) async fn contains(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.get(key).await?.is_some())
    }

    /// Sets `key`, replacing any value and expiry.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let expires_at_ms = ttl
            .map(|ttl| now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)));
        let payload = Envelope::encode(value, expires_at_ms);
        self.track(
            || format!("writing key {key:?}"),
            self.kv.put(encode_key(key), payload.into()).await,
        )?;
        Ok(())
    }

    /// Deletes `key`; whether it was present and not expired. Of several
    /// concurrent deletes of one value exactly one returns `true`.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let stored = encode_key(key);
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.current(key, &stored).await?;
            if current.value.is_none() {
                if current.expired {
                    self.remove_expired(key, &stored, current.revision).await;
                }
                return Ok(false);
            }
            match self
                .kv
                .delete_expect_revision(&stored, Some(current.revision))
                .await
            {
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    backoff(attempt).await;
                }
                result => {
                    self.track(|| format!("deleting key {key:?}"), result)?;
                    return Ok(true);
                }
            }
        }
        Err(self.contention(key))
    }

    /// Adds `delta` to the decimal counter at `key` (missing or expired: 0),
    /// atomically across every provider using the bucket; keeps the key's
    /// expiry.
    pub(crate) async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let stored = encode_key(key);
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.current(key, &stored).await?;
            let (value, expires_at_ms) = match &current.value {
                None => (0, None),
                Some(env) => (parse_counter(key, &env.value)?, env.expires_at_ms),
            };
            let next = value
                .checked_add(delta)
                .ok_or_else(|| StoreError::Overflow {
                    key: key.to_string(),
                    current: value,
                    delta,
                })?;
            let payload = Envelope::encode(next.to_string().as_bytes(), expires_at_ms);
            // Revision 0 means "no entry yet": the write fails if one appeared.
            match self
                .kv
                .update(&stored, payload.into(), current.revision)
                .await
            {
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    backoff(attempt).await;
                }
                result => {
                    self.track(|| format!("writing counter {key:?}"), result)?;
                    return Ok(next);
                }
            }
        }
        Err(self.contention(key))
    }

    fn contention(&self, key: &str) -> StoreError {
        StoreError::Contention {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            attempts: MAX_ATTEMPTS,
        }
    }

    /// The live keys `page` asks for, sorted. Reads the last entry of every
    /// key in one ordered consumer (stream order, so a page keeps the
    /// smallest it has seen); deletes up to [`MAX_EXPIRED_PER_SCAN`] expired
    /// ones it meets.
    pub(crate) async fn keys(&self, mut page: KeyPage<'_>) -> Result<Vec<String>, StoreError> {
        let prefix = page.prefix();
        let action = || format!("listing keys with prefix {prefix:?}");
        let consumer = self.track(
            action,
            self.kv
                .stream
                .create_consumer(push::OrderedConfig {
                    deliver_subject: self.client.new_inbox(),
                    description: Some("lattice:keyvalue Keys".to_string()),
                    filter_subject: format!("{}>", self.kv.prefix),
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    replay_policy: ReplayPolicy::Instant,
                    ..Default::default()
                })
                .await,
        )?;
        let mut expired = Vec::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = self.track(action, consumer.messages().await)?;
            let now = now_ms();
            loop {
                let message = match tokio::time::timeout(SCAN_IDLE_TIMEOUT, messages.next()).await {
                    Err(elapsed) => {
                        return self.track(action, Err::<Vec<String>, _>(elapsed));
                    }
                    Ok(None) => {
                        let ended =
                            ScanError("the consumer ended before every key was delivered".into());
                        return self.track(action, Err::<Vec<String>, _>(ended));
                    }
                    Ok(Some(message)) => self.track(action, message)?,
                };
                let (pending, revision) = self.track(
                    action,
                    message
                        .info()
                        .map(|info| (info.pending, info.stream_sequence))
                        .map_err(|e| {
                            ScanError(format!("malformed JetStream message metadata: {e}").into())
                        }),
                )?;
                let deleted = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(KV_OPERATION_HEADER))
                    .is_some_and(|op| op.as_str() != "PUT");
                let stored = message
                    .subject
                    .as_str()
                    .strip_prefix(self.kv.prefix.as_str())
                    .unwrap_or_default();
                if !deleted && let Some(key) = decode_key(stored).filter(|k| page.wants(k)) {
                    match Envelope::decode(&message.payload) {
                        Ok(env) if env.expired(now) => {
                            if expired.len() < MAX_EXPIRED_PER_SCAN {
                                expired.push((key, stored.to_string(), revision));
                            }
                        }
                        // An entry in a foreign format still is a key.
                        _ => page.offer(key)?,
                    }
                }
                if pending == 0 {
                    break;
                }
            }
        }
        futures::future::join_all(
            expired
                .iter()
                .map(|(key, stored, revision)| self.remove_expired(key, stored, *revision)),
        )
        .await;
        Ok(page.into_keys())
    }
}

/// Why listing keys stopped short.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ScanError(BoxError);

/// Waits a little, randomly, before retrying a lost race, so writers spread out.
async fn backoff(attempt: u32) {
    if attempt == 0 {
        tokio::task::yield_now().await;
        return;
    }
    let cap_us = 200u64 * u64::from(attempt.min(50));
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let jitter = hasher.finish() % cap_us.max(1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}
