//! One answer of `KeyValue.Keys`: which keys it holds, in bounded memory.
//!
//! A bucket can hold any number of keys, so an answer is bounded: a page holds
//! at most its `limit` keys (the smallest ones past `after`), and an answer
//! without a limit at most [`MAX_UNPAGED_BYTES`] of keys. A store offers its
//! keys in any order (JetStream delivers them in stream order), and this keeps
//! no more than the answer will hold.

use std::collections::BinaryHeap;

use lattice::contracts::keyvalue::KeysRequest;

use crate::error::StoreError;

/// The most key bytes an answer without `limit` holds; past it the request is
/// refused, naming pages as the way. Half of NATS's default 1 MiB message.
pub(crate) const MAX_UNPAGED_BYTES: usize = 512 * 1024;

/// msgpack's cost of one string beyond its bytes, at most (`str 32` header).
const PER_KEY_OVERHEAD: usize = 5;

/// The keys of one answer, gathered as a store finds them.
#[derive(Debug)]
pub(crate) struct KeyPage<'r> {
    prefix: &'r str,
    after: Option<&'r str>,
    collected: Collected,
}

#[derive(Debug)]
enum Collected {
    /// A page: the `limit` smallest keys seen so far (a max-heap, so the
    /// largest is the one to drop when a smaller one comes).
    Page {
        limit: usize,
        keys: BinaryHeap<String>,
    },
    /// Every key, up to [`MAX_UNPAGED_BYTES`].
    All { keys: Vec<String>, bytes: usize },
}

impl<'r> KeyPage<'r> {
    /// The answer `request` asks for; its `limit` must already be checked
    /// (1 to the contract's maximum).
    pub(crate) fn new(request: &'r KeysRequest) -> Self {
        let collected = match request.limit {
            Some(limit) => Collected::Page {
                limit: limit as usize,
                keys: BinaryHeap::new(),
            },
            None => Collected::All {
                keys: Vec::new(),
                bytes: 0,
            },
        };
        KeyPage {
            prefix: &request.prefix,
            after: request.after.as_deref(),
            collected,
        }
    }

    /// The first key a sorted store should look at: the prefix, or `after`
    /// when that sorts later (`after` itself is skipped by [`Self::wants`]).
    pub(crate) fn start(&self) -> &'r str {
        match self.after {
            Some(after) if after > self.prefix => after,
            _ => self.prefix,
        }
    }

    /// The prefix every key of the answer starts with.
    pub(crate) fn prefix(&self) -> &'r str {
        self.prefix
    }

    /// Whether `key` starts with the prefix: for a store offering keys in
    /// sorted order from [`Self::start`], the first key that does not ends
    /// the search.
    pub(crate) fn has_prefix(&self, key: &str) -> bool {
        key.starts_with(self.prefix)
    }

    /// Whether `key` belongs in this answer (prefix, past `after`).
    pub(crate) fn wants(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.after.is_none_or(|after| key > after)
    }

    /// Whether a store offering keys in sorted order can stop: the page is
    /// full, and every later key sorts after all it holds.
    pub(crate) fn full(&self) -> bool {
        matches!(&self.collected, Collected::Page { limit, keys } if keys.len() >= *limit)
    }

    /// Adds `key`, which [`Self::wants`].
    ///
    /// # Errors
    /// [`StoreError::TooManyKeys`] when an answer without a limit grows past
    /// [`MAX_UNPAGED_BYTES`].
    pub(crate) fn offer(&mut self, key: String) -> Result<(), StoreError> {
        match &mut self.collected {
            Collected::Page { limit, keys } => {
                if keys.len() < *limit {
                    keys.push(key);
                } else if keys.peek().is_some_and(|largest| key < *largest) {
                    keys.pop();
                    keys.push(key);
                }
            }
            Collected::All { keys, bytes } => {
                *bytes += key.len() + PER_KEY_OVERHEAD;
                if *bytes > MAX_UNPAGED_BYTES {
                    return Err(StoreError::TooManyKeys {
                        prefix: self.prefix.to_string(),
                        max_bytes: MAX_UNPAGED_BYTES,
                    });
                }
                keys.push(key);
            }
        }
        Ok(())
    }

    /// The answer: its keys, sorted.
    pub(crate) fn into_keys(self) -> Vec<String> {
        match self.collected {
            Collected::Page { keys, .. } => keys.into_sorted_vec(),
            Collected::All { mut keys, .. } => {
                keys.sort();
                keys
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prefix: &str, after: Option<&str>, limit: Option<u32>) -> KeysRequest {
        KeysRequest {
            prefix: prefix.into(),
            after: after.map(Into::into),
            limit,
        }
    }

    /// Offers `keys` in the given (unsorted) order to a page of `request`.
    fn answer(request: &KeysRequest, keys: &[&str]) -> Result<Vec<String>, StoreError> {
        let mut page = KeyPage::new(request);
        for key in keys {
            if page.wants(key) {
                page.offer((*key).to_string())?;
            }
        }
        Ok(page.into_keys())
    }

    #[test]
    fn a_page_holds_the_smallest_keys_past_after_whatever_the_order() {
        let keys = ["d", "a", "c", "e", "b", "x/1", "c2"];
        let first = answer(&request("", None, Some(3)), &keys).unwrap();
        assert_eq!(first, ["a", "b", "c"]);
        let second = answer(&request("", Some("c"), Some(3)), &keys).unwrap();
        assert_eq!(second, ["c2", "d", "e"]);
        let last = answer(&request("", Some("e"), Some(3)), &keys).unwrap();
        assert_eq!(last, ["x/1"], "fewer than the limit: the listing ended");
        let prefixed = answer(&request("x/", Some("c"), Some(3)), &keys).unwrap();
        assert_eq!(prefixed, ["x/1"]);
    }

    #[test]
    fn a_sorted_store_starts_at_the_later_of_prefix_and_after_and_stops_when_full() {
        let paged = request("b", Some("bb"), Some(1));
        let mut page = KeyPage::new(&paged);
        assert_eq!(page.start(), "bb");
        assert!(!page.wants("bb"), "after itself is not in the page");
        assert!(page.wants("bc") && !page.wants("c"));
        page.offer("bc".into()).unwrap();
        assert!(page.full());
        assert_eq!(KeyPage::new(&request("b", Some("a"), None)).start(), "b");
    }

    #[test]
    fn an_unpaged_answer_past_its_bound_is_refused_naming_pages() {
        let long = "k".repeat(1000);
        let keys: Vec<String> = (0..600).map(|i| format!("{long}{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let err = answer(&request("", None, None), &refs).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("512 KiB") && text.contains("limit"), "{text}");
        assert_eq!(
            answer(&request("", None, None), &refs[..100])
                .unwrap()
                .len(),
            100
        );
        assert_eq!(answer(&request("", None, Some(7)), &refs).unwrap().len(), 7);
    }
}
