//! `wasi:keyvalue` (`store`, `atomics`) for components, backed by the
//! `lattice:keyvalue` contract: a bucket is one of the actor's
//! `lattice:keyvalue` links, each operation one contract call through the
//! host's router — the same claims, links, provider and JetStream bucket a waPC
//! actor's calls get, so a component's counter is the same atomic counter.
//!
//! The bucket identifier is the link name (`""` means `default`). Opening a
//! bucket checks nothing; each operation does (claims, link, provider), and a
//! refusal is `access-denied`, any other failure `other` with the host's
//! message.

use std::collections::VecDeque;

use lattice::contracts::keyvalue::{
    self as kv, GetRequest, GetResponse, IncrementRequest, KeyRequest, KeysRequest, SetRequest,
};
use serde::{Serialize, de::DeserializeOwned};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::ComponentData;
use crate::{error::HostCallError, runtime::abi::HostCall};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::Error,
        },
    });
}

use generated::wasi::keyvalue::{atomics, store};

/// Keys one `list-keys` answer holds at most; `cursor` continues.
const KEYS_PER_PAGE: u32 = kv::MAX_KEYS_PER_PAGE;

/// Cursors an instance keeps; an older one is refused (the listing starts
/// again without a cursor).
const MAX_CURSORS: usize = 16;

/// The `list-keys` cursors of one instance: `wasi:keyvalue` cursors are
/// numbers, `lattice:keyvalue` pages continue after a key, so each cursor
/// handed out names the key its page ended with. Bounded: the newest
/// [`MAX_CURSORS`] are kept.
#[derive(Debug, Default)]
pub struct KeyCursors {
    /// (cursor, the bucket's link, the last key of its page), oldest first.
    saved: VecDeque<(u64, String, String)>,
    next: u64,
}

impl KeyCursors {
    /// A new cursor continuing after `last` in the bucket of `link`.
    fn save(&mut self, link: String, last: String) -> u64 {
        self.next += 1;
        if self.saved.len() == MAX_CURSORS {
            self.saved.pop_front();
        }
        self.saved.push_back((self.next, link, last));
        self.next
    }

    /// The key `cursor` continues after, when it was handed out for `link`
    /// and is still kept.
    fn after(&self, cursor: u64, link: &str) -> Result<&str, Error> {
        match self.saved.iter().find(|(c, _, _)| *c == cursor) {
            Some((_, saved_link, last)) if saved_link == link => Ok(last),
            Some((_, saved_link, _)) => Err(Error::Other(format!(
                "cursor {cursor} lists bucket {saved_link:?}, not {link:?}"
            ))),
            None => Err(Error::Other(format!(
                "cursor {cursor} is unknown or expired (an instance keeps its newest {MAX_CURSORS}); list again without a cursor"
            ))),
        }
    }
}

/// An open bucket: the link its operations go through.
pub struct Bucket {
    link: String,
}

/// A failed operation, as `wasi:keyvalue/store.error` or a trap.
pub enum Error {
    /// The claims or links do not allow the call.
    AccessDenied,
    /// Anything else, in the host's words.
    Other(String),
    /// The host itself failed (a resource-table error): traps the guest.
    Trap(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for Error {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Error::Trap(e.into())
    }
}

/// Adds `wasi:keyvalue/store` and `wasi:keyvalue/atomics` to `linker`.
///
/// # Errors
/// When wasmtime refuses a definition (a bug, not an input error).
pub fn add_to_linker(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasSelf<ComponentData>>(linker, |d| d)?;
    atomics::add_to_linker::<_, HasSelf<ComponentData>>(linker, |d| d)?;
    Ok(())
}

impl ComponentData {
    /// One `lattice:keyvalue` call through `link`.
    async fn kv_call<In: Serialize, Out: DeserializeOwned>(
        &mut self,
        link: &str,
        operation: &str,
        request: &In,
    ) -> Result<Out, Error> {
        let payload = rmp_serde::to_vec_named(request)
            .map_err(|e| Error::Other(format!("could not encode {operation}: {e}")))?;
        let call = HostCall {
            origin: self.hooks.actor.clone(),
            binding: link.to_string(),
            namespace: kv::CONTRACT.to_string(),
            operation: operation.to_string(),
            payload,
            trace: self.trace,
            deadline: self.deadline,
        };
        let reply = self.router.host_call(call).await.map_err(|e| match e {
            HostCallError::ContractRefused { .. } => {
                tracing::warn!(actor = %self.hooks.actor, error = %e, "wasi:keyvalue call refused");
                Error::AccessDenied
            }
            other => Error::Other(other.to_string()),
        })?;
        rmp_serde::from_slice(&reply)
            .map_err(|e| Error::Other(format!("malformed {operation} answer: {e}")))
    }

    fn link_of(&self, bucket: &Resource<Bucket>) -> Result<String, Error> {
        Ok(self.table.get(bucket)?.link.clone())
    }
}

impl store::Host for ComponentData {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        let link = if identifier.is_empty() {
            "default".to_string()
        } else {
            identifier
        };
        Ok(self.table.push(Bucket { link })?)
    }

    fn convert_error(&mut self, err: Error) -> wasmtime::Result<store::Error> {
        match err {
            Error::AccessDenied => Ok(store::Error::AccessDenied),
            Error::Other(m) => Ok(store::Error::Other(m)),
            Error::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for ComponentData {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let link = self.link_of(&bucket)?;
        let got: GetResponse = self.kv_call(&link, kv::GET, &GetRequest { key }).await?;
        Ok(got.found.then_some(got.value))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let link = self.link_of(&bucket)?;
        let request = SetRequest {
            key,
            value,
            ttl_secs: None,
        };
        self.kv_call::<_, ()>(&link, kv::SET, &request).await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        let link = self.link_of(&bucket)?;
        self.kv_call::<_, bool>(&link, kv::DELETE, &KeyRequest { key })
            .await
            .map(drop)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        let link = self.link_of(&bucket)?;
        self.kv_call(&link, kv::CONTAINS, &KeyRequest { key }).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Error> {
        let link = self.link_of(&bucket)?;
        let after = match cursor {
            Some(cursor) => Some(self.key_cursors.after(cursor, &link)?.to_string()),
            None => None,
        };
        let request = KeysRequest {
            prefix: String::new(),
            after,
            limit: Some(KEYS_PER_PAGE),
        };
        let keys: Vec<String> = self.kv_call(&link, kv::KEYS, &request).await?;
        // A provider that does not know pages answers every key each time:
        // refused, or the guest would follow cursors round in circles.
        if !request.is_page(&keys) {
            return Err(Error::Other(format!(
                "the provider behind link {link:?} answered {} keys to a page of at most {KEYS_PER_PAGE} after {:?} (a provider that does not know pages?)",
                keys.len(),
                request.after
            )));
        }
        // A full page: there may be more, after its last key.
        let cursor = match keys.last() {
            Some(last) if keys.len() >= KEYS_PER_PAGE as usize => {
                Some(self.key_cursors.save(link, last.clone()))
            }
            _ => None,
        };
        Ok(store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for ComponentData {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Error> {
        let link = self.link_of(&bucket)?;
        let delta = i64::try_from(delta)
            .map_err(|_| Error::Other(format!("delta {delta} is larger than {}", i64::MAX)))?;
        let value: i64 = self
            .kv_call(
                &link,
                kv::INCREMENT,
                &IncrementRequest {
                    key: key.clone(),
                    delta,
                },
            )
            .await?;
        u64::try_from(value).map_err(|_| {
            Error::Other(format!(
                "counter {key} is {value}: below zero, which wasi:keyvalue's u64 cannot hold"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<&str, Error>) -> String {
        match result {
            Err(Error::Other(m)) => m,
            Ok(key) => panic!("expected an error, got key {key:?}"),
            Err(_) => panic!("expected Error::Other"),
        }
    }

    #[test]
    fn cursors_name_their_bucket_and_the_oldest_expire() {
        let mut cursors = KeyCursors::default();
        let first = cursors.save("default".into(), "k999".into());
        assert_eq!(cursors.after(first, "default").ok(), Some("k999"));
        let wrong = message(cursors.after(first, "other"));
        assert!(wrong.contains("\"default\", not \"other\""), "{wrong}");
        let unknown = message(cursors.after(first + 100, "default"));
        assert!(unknown.contains("list again without a cursor"), "{unknown}");
        for i in 0..MAX_CURSORS {
            cursors.save("default".into(), format!("k{i}"));
        }
        assert_eq!(cursors.saved.len(), MAX_CURSORS, "bounded");
        let expired = message(cursors.after(first, "default"));
        assert!(expired.contains("unknown or expired"), "{expired}");
        let newest = cursors.next;
        assert_eq!(cursors.after(newest, "default").ok(), Some("k15"));
    }
}
