//! `lattice:keyvalue`: a key-value store per link.
//!
//! Keys are any UTF-8 string (providers encode what their backend cannot hold),
//! values any bytes, including empty. Counters used with `KeyValue.Increment` are
//! stored as decimal text, so `Get` on a counter returns e.g. `b"42"`.

use serde::{Deserialize, Serialize};

/// The contract id.
pub const CONTRACT: &str = "lattice:keyvalue";

/// `KeyValue.Get`: [`GetRequest`] → [`GetResponse`].
pub const GET: &str = "KeyValue.Get";
/// `KeyValue.Set`: [`SetRequest`] → nil.
pub const SET: &str = "KeyValue.Set";
/// `KeyValue.Delete`: [`KeyRequest`] → `bool` (whether the key existed).
pub const DELETE: &str = "KeyValue.Delete";
/// `KeyValue.Contains`: [`KeyRequest`] → `bool`.
pub const CONTAINS: &str = "KeyValue.Contains";
/// `KeyValue.Increment`: [`IncrementRequest`] → `i64`, the new value. Atomic.
pub const INCREMENT: &str = "KeyValue.Increment";
/// `KeyValue.Keys`: [`KeysRequest`] → `[string]`, sorted. With a `limit` the
/// answer is one page: fewer keys than the limit means the listing ended.
pub const KEYS: &str = "KeyValue.Keys";

/// The largest `limit` of a [`KeysRequest`]: a page of keys of the longest
/// kind (1 KiB, the built-in provider's bound) still fits in NATS's default
/// 1 MiB message.
pub const MAX_KEYS_PER_PAGE: u32 = 1000;

/// What the error of a `Keys` request without `limit` says when the keys are
/// too many for one answer: callers that see it ask again in pages.
pub const TOO_MANY_KEYS: &str = "too many for one answer";

/// Every operation of the contract.
pub const OPERATIONS: &[&str] = &[GET, SET, DELETE, CONTAINS, INCREMENT, KEYS];

/// Argument of `Get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The key.
    pub key: String,
}

/// Reply of `Get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GetResponse {
    /// Whether the key exists (an empty `value` with `found` is an empty value).
    pub found: bool,
    /// The value; empty when not found.
    #[serde(with = "serde_bytes", default)]
    pub value: Vec<u8>,
}

/// Argument of `Set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes", default)]
    pub value: Vec<u8>,
    /// Seconds until the key expires; absent or nil: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// Argument of `Delete` and `Contains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The key.
    pub key: String,
}

/// Argument of `Increment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementRequest {
    /// The key; a missing key counts as 0.
    pub key: String,
    /// Added to the value (may be negative).
    pub delta: i64,
}

/// Argument of `Keys`.
///
/// Without `limit` the answer holds every matching key, and a provider may
/// refuse when they are too many for one message (the built-in one past 512
/// KiB of keys); pages (`limit`, then `after` the last key of each page) list
/// any number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeysRequest {
    /// Only keys starting with this; empty: all keys.
    #[serde(default)]
    pub prefix: String,
    /// Only keys sorted after this one (not itself): the last key of the
    /// previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many keys, 1 to [`MAX_KEYS_PER_PAGE`]; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl KeysRequest {
    /// Whether `keys` can be this request's answer as a page: no more than
    /// its `limit`, sorted strictly, and all after its `after` (so the next
    /// page, after the last key, always moves on). A provider that ignores
    /// the two fields (one older than them) answers every key each time, and
    /// a caller that followed such "pages" would go round in circles;
    /// callers check each page with this. Requests without a limit accept
    /// anything.
    pub fn is_page(&self, keys: &[String]) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let behind =
            matches!((&self.after, keys.first()), (Some(after), Some(first)) if first <= after);
        let sorted = keys.windows(2).all(|w| w[0] < w[1]);
        keys.len() <= limit as usize && !behind && sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_within_its_limit_and_after_its_key() {
        let keys = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let page = |after: Option<&str>, limit| KeysRequest {
            prefix: String::new(),
            after: after.map(Into::into),
            limit,
        };
        assert!(page(None, Some(2)).is_page(&keys(&["a", "b"])));
        assert!(page(Some("a"), Some(2)).is_page(&keys(&["b"])));
        assert!(page(Some("a"), Some(2)).is_page(&[]));
        assert!(
            !page(None, Some(2)).is_page(&keys(&["a", "b", "c"])),
            "too many"
        );
        assert!(!page(Some("b"), Some(2)).is_page(&keys(&["a"])), "behind");
        assert!(
            !page(Some("b"), Some(2)).is_page(&keys(&["b"])),
            "after itself"
        );
        assert!(
            page(Some(""), Some(1)).is_page(&keys(&["a"])),
            "after the empty key"
        );
        assert!(
            !page(None, Some(3)).is_page(&keys(&["a", "c", "b"])),
            "unsorted"
        );
        assert!(!page(None, Some(3)).is_page(&keys(&["a", "a"])), "twice");
        assert!(page(None, None).is_page(&keys(&["a", "b", "c"])), "unpaged");
    }
}
