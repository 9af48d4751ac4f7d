//! The `lattice:keyvalue` capability provider.
//!
//! [`KeyValueProvider`] gives every linked actor a key-value store per link
//! (actor id + link name), serving the operations of
//! [`lattice::contracts::keyvalue`]: `KeyValue.Get`, `Set` (with an optional
//! TTL), `Delete`, `Contains`, `Increment` (atomic) and `Keys` (by prefix, in
//! bounded pages: [`KeysRequest`](lattice::contracts::keyvalue::KeysRequest)).
//!
//! # Link configuration
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | `jetstream` or `memory` | `jetstream` |
//! | `bucket` | a JetStream KV bucket name, `[A-Za-z0-9_-]+` (only with `backend=jetstream`) | `LATTICE_{lattice}_kv_{actor_id}` ([`default_bucket`]) |
//!
//! * **`jetstream`**: a JetStream KV bucket, opened (or created, history 1) when
//!   the link is put. Every host's provider for the actor uses the same bucket,
//!   so all replicas of the actor see one durable store. The bucket outlives the
//!   link.
//! * **`memory`**: a map inside this provider instance: fast, private to one
//!   host, gone when the link is deleted or the host stops. Putting the same
//!   link again with the same configuration keeps the data.
//!
//! An unknown backend, a bad bucket name or a bucket that cannot be opened make
//! [`Provider::put_link`] fail with [`ProviderError::Link`] naming the value.
//! Other config keys are ignored (with a warning in the log).
//!
//! # Keys
//!
//! Keys are any UTF-8 string of at most [`MAX_KEY_BYTES`] bytes, **including the
//! empty string**, on both backends. JetStream KV keys may only hold
//! `[-/_=.a-zA-Z0-9]` without empty `.`-tokens, so the JetStream backend stores
//!
//! * a key that already is such a key (`user.42`, `a/b=c`) as `r.<key>`,
//! * the empty key as `e`,
//! * any other key (`a b`, `.lead`, `trail.`, `*`, `ünï`) as `b.<base64url of
//!   its UTF-8 bytes, no padding>`,
//!
//! and decodes them again for `Keys`. (`nats kv ls` shows the stored form.) The
//! length limit keeps the encoded key inside NATS's 4 KiB protocol line; it
//! applies to the memory backend too, so an actor behaves the same on both.
//!
//! # Values, TTL and counters
//!
//! Values are any bytes, the empty value included (`Get` → `found: true`,
//! `value: []`). `Set` with `ttl_secs` makes the key expire that many seconds
//! later (`ttl_secs: 0` is refused: leave it out for "never"); `Set` without it
//! clears an earlier expiry.
//!
//! In a JetStream bucket each value is stored in a small envelope: one tag byte
//! (`0`: no expiry; `1`: followed by the expiry as unix milliseconds, 8 bytes
//! big-endian), then the value. Expired entries count as missing for every
//! operation and are deleted lazily, when an operation comes across them; an
//! expired key nobody reads or lists keeps its space until then. Expiry uses
//! the clocks of the hosts, so it is as exact as they agree. The memory backend
//! keeps expiries as monotonic instants.
//!
//! `Increment` treats a missing (or expired) key as 0 and stores the counter as
//! decimal text (a counter of 42 reads back as `b"42"`), keeping the key's
//! expiry. On JetStream it is a compare-and-set loop on the key's revision, so
//! concurrent increments from any number of hosts all count. Incrementing a
//! value that is not a decimal `i64`, or past the `i64` range, fails with
//! [`ProviderError::BadRequest`] naming the key. `Delete` returns whether the
//! key existed (and had not expired); of concurrent deletes of one value only
//! one says `true`.
//!
//! # Health
//!
//! [`Provider::health`] is unhealthy, with the error, when the most recent
//! JetStream request failed because NATS or JetStream could not be reached (a
//! timeout, a lost connection, no JetStream responders), and healthy otherwise,
//! including after refused requests such as an over-sized value.
//!
//! # Example
//!
//! ```no_run
//! use std::{collections::BTreeMap, sync::Arc};
//!
//! use lattice::contracts::keyvalue::{self as kv, GetResponse, IncrementRequest};
//! use lattice::id::{ActorId, LatticeId};
//! use lattice_provider::{
//!     ActorCaller, BoxFuture, CallError, LinkDefinition, Provider, ProviderCall, ProviderContext,
//! };
//! use lattice_provider_keyvalue::KeyValueProvider;
//!
//! struct NoActors;
//! impl ActorCaller for NoActors {
//!     fn call_actor(&self, actor: &str, _: &str, _: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
//!         let actor = actor.to_string();
//!         Box::pin(async move { Err(CallError::NotRunning(actor)) })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = KeyValueProvider::new();
//! provider
//!     .start(ProviderContext {
//!         lattice: LatticeId::default(),
//!         provider_id: "kv".into(),
//!         nats: async_nats::connect("127.0.0.1:4222").await?,
//!         actors: Arc::new(NoActors),
//!     })
//!     .await?;
//! let actor = ActorId::new("counter")?;
//! provider
//!     .put_link(LinkDefinition {
//!         actor_id: actor.clone(),
//!         provider_id: "kv".parse()?,
//!         contract: kv::CONTRACT.parse()?,
//!         link_name: "default".parse()?,
//!         config: BTreeMap::from([("backend".into(), "jetstream".into())]),
//!     })
//!     .await?;
//! let reply = provider
//!     .handle(ProviderCall {
//!         actor_id: actor,
//!         link_name: "default".into(),
//!         operation: kv::INCREMENT.into(),
//!         payload: rmp_serde::to_vec_named(&IncrementRequest { key: "hits".into(), delta: 1 })?,
//!     })
//!     .await?;
//! let hits: i64 = rmp_serde::from_slice(&reply)?;
//! println!("{hits} hits");
//! # let _ = GetResponse::default();
//! # Ok(())
//! # }
//! ```

mod codec;
mod error;
mod jetstream;
mod memory;
mod page;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use lattice::contracts::keyvalue::{
    self as contract, GetRequest, GetResponse, IncrementRequest, KeyRequest, KeysRequest,
    MAX_KEYS_PER_PAGE, SetRequest,
};
use lattice::id::{ActorId, LatticeId};
use lattice_provider::{
    BoxFuture, Health, LinkDefinition, Provider, ProviderCall, ProviderContext, ProviderError,
};

use crate::error::StoreError;
use crate::jetstream::{HealthTracker, JetStreamStore};
use crate::memory::MemoryStore;
use crate::page::KeyPage;

/// Link config key choosing the backend: [`BACKEND_JETSTREAM`] (default) or
/// [`BACKEND_MEMORY`].
pub const CONFIG_BACKEND: &str = "backend";
/// Link config key naming the JetStream KV bucket (default: [`default_bucket`]).
pub const CONFIG_BUCKET: &str = "bucket";
/// `backend=jetstream`: a JetStream KV bucket shared by every host.
pub const BACKEND_JETSTREAM: &str = "jetstream";
/// `backend=memory`: a map in this provider instance.
pub const BACKEND_MEMORY: &str = "memory";
/// Longest key accepted, in UTF-8 bytes; longer keys get
/// [`ProviderError::BadRequest`].
pub const MAX_KEY_BYTES: usize = 1024;

/// The bucket a JetStream link uses unless its config names one:
/// `LATTICE_{lattice}_kv_{actor_id}`, the same on every host.
pub fn default_bucket(lattice: &LatticeId, actor: &ActorId) -> String {
    format!("LATTICE_{lattice}_kv_{actor}")
}

/// Which store a link uses, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreSpec {
    Memory,
    JetStream { bucket: String },
}

impl StoreSpec {
    /// Reads a link's config; the error says which value is wrong.
    fn from_link(link: &LinkDefinition, lattice: &LatticeId) -> Result<Self, String> {
        for key in link.config.keys() {
            if key != CONFIG_BACKEND && key != CONFIG_BUCKET {
                tracing::warn!(
                    actor = %link.actor_id,
                    link_name = %link.link_name,
                    "ignoring unknown keyvalue link config {key:?} (known: {CONFIG_BACKEND}, {CONFIG_BUCKET})"
                );
            }
        }
        let backend = link
            .config
            .get(CONFIG_BACKEND)
            .map_or(BACKEND_JETSTREAM, String::as_str);
        let bucket = link.config.get(CONFIG_BUCKET);
        if backend.eq_ignore_ascii_case(BACKEND_MEMORY) {
            if let Some(bucket) = bucket {
                return Err(format!(
                    "{CONFIG_BUCKET}={bucket:?} needs {CONFIG_BACKEND}={BACKEND_JETSTREAM}, not {CONFIG_BACKEND}={backend:?}"
                ));
            }
            return Ok(StoreSpec::Memory);
        }
        if !backend.eq_ignore_ascii_case(BACKEND_JETSTREAM) {
            return Err(format!(
                "unknown {CONFIG_BACKEND}={backend:?}; use {BACKEND_JETSTREAM} or {BACKEND_MEMORY}"
            ));
        }
        let bucket = match bucket {
            None => default_bucket(lattice, &link.actor_id),
            Some(bucket) => {
                if bucket.is_empty()
                    || !bucket
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "invalid {CONFIG_BUCKET}={bucket:?}: a JetStream bucket name must be non-empty and contain only ASCII letters, digits, '-' and '_'"
                    ));
                }
                bucket.clone()
            }
        };
        Ok(StoreSpec::JetStream { bucket })
    }
}

/// The store of one link.
#[derive(Debug)]
enum Store {
    Memory(MemoryStore),
    JetStream(Box<JetStreamStore>),
}

/// A link's store and the config it came from.
#[derive(Debug)]
struct LinkStore {
    spec: StoreSpec,
    store: Store,
}

/// What `start` hands the provider.
#[derive(Clone)]
struct Started {
    lattice: LatticeId,
    nats: async_nats::Client,
}

/// (actor id, link name)
type LinkKey = (String, String);

/// The `lattice:keyvalue` provider: a key-value store per link, in a JetStream
/// KV bucket (default) or in memory. See the [crate docs](crate) for the link
/// config, key encoding, TTL and counter semantics.
///
/// Cheap to share: every method takes `&self` and calls run concurrently.
pub struct KeyValueProvider {
    started: RwLock<Option<Started>>,
    links: RwLock<HashMap<LinkKey, Arc<LinkStore>>>,
    health: Arc<HealthTracker>,
}

impl fmt::Debug for KeyValueProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let links = self
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("KeyValueProvider")
            .field("links", &links)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl Default for KeyValueProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyValueProvider {
    /// A provider with no links; [`Provider::start`] it before use.
    pub fn new() -> Self {
        KeyValueProvider {
            started: RwLock::new(None),
            links: RwLock::new(HashMap::new()),
            health: Arc::new(HealthTracker::default()),
        }
    }

    fn started(&self) -> Option<Started> {
        self.started
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn link(&self, actor: &ActorId, link_name: &str) -> Option<Arc<LinkStore>> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(actor.to_string(), link_name.to_string()))
            .cloned()
    }

    async fn apply_link(&self, link: LinkDefinition) -> Result<(), ProviderError> {
        let fail = |reason: String| ProviderError::Link {
            actor_id: link.actor_id.to_string(),
            link_name: link.link_name.to_string(),
            reason,
        };
        if link.contract.as_str() != contract::CONTRACT {
            return Err(fail(format!(
                "this provider serves {}, not {}",
                contract::CONTRACT,
                link.contract
            )));
        }
        let Some(started) = self.started() else {
            return Err(fail("the keyvalue provider has not been started".into()));
        };
        let spec = StoreSpec::from_link(&link, &started.lattice).map_err(&fail)?;
        if self
            .link(&link.actor_id, link.link_name.as_str())
            .is_some_and(|existing| existing.spec == spec)
        {
            return Ok(());
        }
        let store = match &spec {
            StoreSpec::Memory => Store::Memory(MemoryStore::default()),
            StoreSpec::JetStream { bucket } => {
                let description = format!(
                    "Lattice {}: lattice:keyvalue store of actor {}",
                    started.lattice, link.actor_id
                );
                let store = JetStreamStore::open(
                    started.nats.clone(),
                    bucket,
                    description,
                    self.health.clone(),
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
                Store::JetStream(Box::new(store))
            }
        };
        tracing::debug!(
            actor = %link.actor_id,
            link_name = %link.link_name,
            store = ?spec,
            "keyvalue link ready"
        );
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (link.actor_id.to_string(), link.link_name.to_string()),
                Arc::new(LinkStore { spec, store }),
            );
        Ok(())
    }

    async fn dispatch(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let op = call.operation.as_str();
        if !contract::OPERATIONS.contains(&op) {
            return Err(ProviderError::unknown_operation(op, contract::OPERATIONS));
        }
        let link =
            self.link(&call.actor_id, &call.link_name)
                .ok_or_else(|| ProviderError::NotLinked {
                    actor_id: call.actor_id.to_string(),
                    link_name: call.link_name.clone(),
                })?;
        let store = &link.store;
        let payload = &call.payload;
        let backend = |e: StoreError| e.into_provider_error(op);
        match op {
            contract::GET => {
                let req: GetRequest = ProviderError::decode(op, payload)?;
                check_key(op, &req.key)?;
                let value = match store {
                    Store::Memory(m) => m.get(&req.key),
                    Store::JetStream(j) => j.get(&req.key).await.map_err(backend)?,
                };
                ProviderError::encode(&GetResponse {
                    found: value.is_some(),
                    value: value.unwrap_or_default(),
                })
            }
            contract::SET => {
                let req: SetRequest = ProviderError::decode(op, payload)?;
                check_key(op, &req.key)?;
                let ttl = match req.ttl_secs {
                    None => None,
                    Some(0) => {
                        return Err(bad_request(
                            op,
                            "ttl_secs must be at least 1; leave it out (or nil) for a key that never expires",
                        ));
                    }
                    Some(secs) => Some(Duration::from_secs(secs)),
                };
                match store {
                    Store::Memory(m) => m.set(&req.key, req.value, ttl),
                    Store::JetStream(j) => {
                        j.set(&req.key, &req.value, ttl).await.map_err(backend)?
                    }
                }
                ProviderError::encode(&())
            }
            contract::DELETE | contract::CONTAINS => {
                let req: KeyRequest = ProviderError::decode(op, payload)?;
                check_key(op, &req.key)?;
                let answer = match (store, op == contract::DELETE) {
                    (Store::Memory(m), true) => m.delete(&req.key),
                    (Store::Memory(m), false) => m.contains(&req.key),
                    (Store::JetStream(j), true) => j.delete(&req.key).await.map_err(backend)?,
                    (Store::JetStream(j), false) => j.contains(&req.key).await.map_err(backend)?,
                };
                ProviderError::encode(&answer)
            }
            contract::INCREMENT => {
                let req: IncrementRequest = ProviderError::decode(op, payload)?;
                check_key(op, &req.key)?;
                let value = match store {
                    Store::Memory(m) => m.increment(&req.key, req.delta),
                    Store::JetStream(j) => j.increment(&req.key, req.delta).await,
                }
                .map_err(backend)?;
                ProviderError::encode(&value)
            }
            contract::KEYS => {
                let req: KeysRequest = ProviderError::decode(op, payload)?;
                check_keys_request(op, &req)?;
                let page = KeyPage::new(&req);
                let keys = match store {
                    Store::Memory(m) => m.keys(page),
                    Store::JetStream(j) => j.keys(page).await,
                }
                .map_err(backend)?;
                ProviderError::encode(&keys)
            }
            _ => Err(ProviderError::unknown_operation(op, contract::OPERATIONS)),
        }
    }
}

fn bad_request(operation: &str, reason: impl Into<String>) -> ProviderError {
    ProviderError::BadRequest {
        operation: operation.to_string(),
        reason: reason.into(),
    }
}

/// Refuses keys past [`MAX_KEY_BYTES`].
fn check_key(operation: &str, key: &str) -> Result<(), ProviderError> {
    check_key_length(operation, "the key", key)
}

/// Refuses `value` (`what`: the key, or a field that holds one) past
/// [`MAX_KEY_BYTES`].
fn check_key_length(operation: &str, what: &str, value: &str) -> Result<(), ProviderError> {
    if value.len() > MAX_KEY_BYTES {
        return Err(bad_request(
            operation,
            format!(
                "{what} is {} bytes long; keys may be at most {MAX_KEY_BYTES} bytes (UTF-8)",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Refuses a `Keys` request whose page size is out of range, or whose
/// `prefix` or `after` is longer than a key can be.
fn check_keys_request(operation: &str, request: &KeysRequest) -> Result<(), ProviderError> {
    if let Some(limit) = request.limit
        && !(1..=MAX_KEYS_PER_PAGE).contains(&limit)
    {
        return Err(bad_request(
            operation,
            format!("limit {limit} is out of range: a page holds 1 to {MAX_KEYS_PER_PAGE} keys"),
        ));
    }
    check_key_length(operation, "`prefix`", &request.prefix)?;
    if let Some(after) = &request.after {
        check_key_length(operation, "`after`", after)?;
    }
    Ok(())
}

impl Provider for KeyValueProvider {
    fn contract(&self) -> &'static str {
        contract::CONTRACT
    }

    fn start(&self, ctx: ProviderContext) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            *self.started.write().unwrap_or_else(PoisonError::into_inner) = Some(Started {
                lattice: ctx.lattice,
                nats: ctx.nats,
            });
            Ok(())
        })
    }

    fn put_link(&self, link: LinkDefinition) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.apply_link(link))
    }

    fn delete_link(&self, link: LinkDefinition) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let removed = self
                .links
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(link.actor_id.to_string(), link.link_name.to_string()));
            if let Some(removed) = removed {
                let kept = match &removed.store {
                    Store::Memory(_) => "its in-memory data is dropped".to_string(),
                    Store::JetStream(j) => format!("bucket {} is kept", j.bucket()),
                };
                tracing::debug!(
                    actor = %link.actor_id,
                    link_name = %link.link_name,
                    "keyvalue link deleted; {kept}"
                );
            }
        })
    }

    fn handle(&self, call: ProviderCall) -> BoxFuture<'_, Result<Vec<u8>, ProviderError>> {
        Box::pin(self.dispatch(call))
    }

    fn health(&self) -> Health {
        match self.health.last_failure() {
            Some(message) => Health {
                healthy: false,
                message,
            },
            None => Health::ok(),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.links
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn link(config: &[(&str, &str)]) -> LinkDefinition {
        LinkDefinition {
            actor_id: ActorId::new("counter").unwrap(),
            provider_id: "kv".parse().unwrap(),
            contract: contract::CONTRACT.parse().unwrap(),
            link_name: "default".parse().unwrap(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn link_config() {
        let l = LatticeId::new("prod").unwrap();
        assert_eq!(
            StoreSpec::from_link(&link(&[]), &l),
            Ok(StoreSpec::JetStream {
                bucket: "LATTICE_prod_kv_counter".into()
            })
        );
        assert_eq!(
            StoreSpec::from_link(&link(&[("backend", "memory")]), &l),
            Ok(StoreSpec::Memory)
        );
        assert_eq!(
            StoreSpec::from_link(&link(&[("backend", "JetStream"), ("bucket", "b-1_x")]), &l),
            Ok(StoreSpec::JetStream {
                bucket: "b-1_x".into()
            })
        );
        let err = StoreSpec::from_link(&link(&[("backend", "redis")]), &l).unwrap_err();
        assert!(err.contains("\"redis\""), "{err}");
        let err = StoreSpec::from_link(&link(&[("bucket", "a.b")]), &l).unwrap_err();
        assert!(err.contains("\"a.b\""), "{err}");
        let err = StoreSpec::from_link(&link(&[("bucket", "")]), &l).unwrap_err();
        assert!(err.contains("bucket=\"\""), "{err}");
        let err =
            StoreSpec::from_link(&link(&[("backend", "memory"), ("bucket", "x")]), &l).unwrap_err();
        assert!(err.contains("bucket=\"x\""), "{err}");
    }
}
