//! `backend=memory`: a sorted map behind a mutex, private to one provider
//! instance and lost when the link goes away.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::page::KeyPage;

/// One stored value.
#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// `None`: never expires.
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The in-memory store of one link.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    map: Mutex<BTreeMap<String, Entry>>,
}

impl MemoryStore {
    /// Locks the map and drops `key` when it has expired, so callers only see
    /// live entries under that key.
    fn lock_with(&self, key: &str, now: Instant) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Nothing panics while the lock is held; should it ever, the map is
        // still consistent (every change is a single insert or remove).
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|e| !e.live(now)) {
            map.remove(key);
        }
        map
    }

    /// The value of `key`, if present and not expired.
    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock_with(key, Instant::now())
            .get(key)
            .map(|e| e.value.clone())
    }

    /// Sets `key`, replacing any value and expiry.
    pub(crate) fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) {
        let now = Instant::now();
        // A TTL too large for `Instant` is as good as none.
        let expires_at = ttl.and_then(|ttl| now.checked_add(ttl));
        self.lock_with(key, now)
            .insert(key.to_string(), Entry { value, expires_at });
    }

    /// Removes `key`; whether it was present (and not expired).
    pub(crate) fn delete(&self, key: &str) -> bool {
        self.lock_with(key, Instant::now()).remove(key).is_some()
    }

    /// Whether `key` is present and not expired.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock_with(key, Instant::now()).contains_key(key)
    }

    /// Adds `delta` to the decimal counter at `key` (missing: 0), atomically;
    /// keeps the key's expiry.
    pub(crate) fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut map = self.lock_with(key, Instant::now());
        let (current, expires_at) = match map.get(key) {
            None => (0, None),
            Some(entry) => (parse_counter(key, &entry.value)?, entry.expires_at),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError::Overflow {
                key: key.to_string(),
                current,
                delta,
            })?;
        map.insert(
            key.to_string(),
            Entry {
                value: next.to_string().into_bytes(),
                expires_at,
            },
        );
        Ok(next)
    }

    /// The live keys `page` asks for, sorted; drops expired ones on the way.
    pub(crate) fn keys(&self, mut page: KeyPage<'_>) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut expired = Vec::new();
        for (key, entry) in map.range::<str, _>((
            std::ops::Bound::Included(page.start()),
            std::ops::Bound::Unbounded,
        )) {
            // Past the prefix, or full: no later key belongs in the page.
            if !page.has_prefix(key) || page.full() {
                break;
            }
            if !page.wants(key) {
                continue;
            }
            if entry.live(now) {
                page.offer(key.clone())?;
            } else {
                expired.push(key.clone());
            }
        }
        for key in expired {
            map.remove(&key);
        }
        Ok(page.into_keys())
    }
}

/// Parses a stored counter: decimal `i64` text.
pub(crate) fn parse_counter(key: &str, value: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| StoreError::NotAnInteger {
            key: key.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use lattice::contracts::keyvalue::KeysRequest;

    use super::*;

    #[test]
    fn basic_ops() {
        let s = MemoryStore::default();
        assert_eq!(s.get("a"), None);
        s.set("a", b"".to_vec(), None);
        assert_eq!(s.get("a"), Some(vec![]));
        assert!(s.contains("a"));
        assert_eq!(s.increment("n", 5).unwrap(), 5);
        assert_eq!(s.increment("n", -7).unwrap(), -2);
        assert_eq!(s.get("n"), Some(b"-2".to_vec()));
        assert!(matches!(
            s.increment("a", 1),
            Err(StoreError::NotAnInteger { .. })
        ));
        s.set("m", i64::MAX.to_string().into_bytes(), None);
        assert!(matches!(
            s.increment("m", 1),
            Err(StoreError::Overflow { .. })
        ));
        s.set("ab", b"x".to_vec(), None);
        assert_eq!(keys(&s, "a", None, None), ["a", "ab"]);
        assert_eq!(keys(&s, "", None, None), ["a", "ab", "m", "n"]);
        assert!(s.delete("a"));
        assert!(!s.delete("a"));
    }

    #[test]
    fn expired_entries_are_missing() {
        let s = MemoryStore::default();
        s.set("t", b"v".to_vec(), Some(Duration::ZERO));
        assert_eq!(s.get("t"), None);
        s.set("t", b"v".to_vec(), Some(Duration::ZERO));
        assert!(!s.delete("t"));
        s.set("t", b"7".to_vec(), Some(Duration::ZERO));
        assert_eq!(s.increment("t", 1).unwrap(), 1);
        s.set("u", b"v".to_vec(), Some(Duration::ZERO));
        assert!(keys(&s, "", None, None).iter().all(|k| k != "u"));
        s.set("forever", b"v".to_vec(), Some(Duration::MAX));
        assert!(s.contains("forever"));
    }

    fn keys(s: &MemoryStore, prefix: &str, after: Option<&str>, limit: Option<u32>) -> Vec<String> {
        let request = KeysRequest {
            prefix: prefix.into(),
            after: after.map(Into::into),
            limit,
        };
        s.keys(KeyPage::new(&request)).unwrap()
    }

    #[test]
    fn keys_come_in_pages_that_skip_expired_ones() {
        let s = MemoryStore::default();
        for key in ["a", "b/1", "b/2", "b/3", "b/4", "c"] {
            s.set(key, b"v".to_vec(), None);
        }
        s.set("b/2", b"v".to_vec(), Some(Duration::ZERO));
        assert_eq!(keys(&s, "b/", None, Some(2)), ["b/1", "b/3"]);
        assert_eq!(keys(&s, "b/", Some("b/3"), Some(2)), ["b/4"]);
        assert_eq!(keys(&s, "b/", Some("b/4"), Some(2)), Vec::<String>::new());
        assert_eq!(
            keys(&s, "", Some("b/"), Some(10)),
            ["b/1", "b/3", "b/4", "c"]
        );
        assert_eq!(keys(&s, "b/", Some("a"), None), ["b/1", "b/3", "b/4"]);
        assert_eq!(keys(&s, "b/", Some("zz"), None), Vec::<String>::new());
    }
}
