//! `backend=memory`: a sorted map behind a mutex, private to one provider
//! instance and lost when the link goes away.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::StoreError;

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

    /// The live keys starting with `prefix`, sorted; drops expired ones on the way.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keys = Vec::new();
        let mut expired = Vec::new();
        for (key, entry) in map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            if entry.live(now) {
                keys.push(key.clone());
            } else {
                expired.push(key.clone());
            }
        }
        for key in expired {
            map.remove(&key);
        }
        keys
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
        assert_eq!(s.keys("a"), vec!["a", "ab"]);
        assert_eq!(s.keys(""), vec!["a", "ab", "m", "n"]);
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
        assert!(s.keys("").iter().all(|k| k != "u"));
        s.set("forever", b"v".to_vec(), Some(Duration::MAX));
        assert!(s.contains("forever"));
    }
}
