//! A typed client for the `lattice:keyvalue` contract.
//!
//! The free functions use the actor's default link; [`KeyValue::link`] names
//! another one, for an actor linked to two stores:
//!
//! ```
//! use lattice_actor::keyvalue::{self, KeyValue};
//!
//! fn handle(user: String) -> Result<i64, lattice_actor::Error> {
//!     // default link
//!     let visits = keyvalue::increment(&format!("visits:{user}"), 1)?;
//!     // the link named "cache"
//!     let cache = KeyValue::link("cache");
//!     cache.set_with_ttl(&user, "seen", 60)?;
//!     Ok(visits)
//! }
//! # assert_eq!(handle("ada".into()), Err(lattice_actor::Error::NoHost));
//! ```
//!
//! The actor needs `lattice:keyvalue` in its [claims](crate::claims!) and a link
//! to a key-value provider (`lattice ctl link put ACTOR PROVIDER lattice:keyvalue
//! [--link-name NAME]`); otherwise every call fails with [`Error::Host`] naming
//! the actor, the contract and the link name.
//!
//! Keys are any UTF-8 string (the empty one too); values any bytes, the empty
//! value too. Counters written by [`increment`] are stored as decimal text, so
//! [`get`] on a counter of 42 returns `b"42"`. The payloads are the types of
//! [`lattice::contracts::keyvalue`], re-exported here; `docs/contracts.md`
//! describes them field by field.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use lattice::contracts::keyvalue::{
    CONTAINS, CONTRACT, DELETE, GET, GetRequest, GetResponse, INCREMENT, IncrementRequest, KEYS,
    KeyRequest, KeysRequest, MAX_KEYS_PER_PAGE, OPERATIONS, SET, SetRequest, TOO_MANY_KEYS,
};

use crate::{Error, encode, host_call};

/// The `lattice:keyvalue` store behind one of the actor's links.
///
/// [`KeyValue::DEFAULT`] (what the free functions of this module use) is the
/// default link; [`KeyValue::link`] picks another by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    link: Cow<'static, str>,
}

impl Default for KeyValue {
    fn default() -> Self {
        KeyValue::DEFAULT
    }
}

impl KeyValue {
    /// The store behind the default link (link name `default`).
    pub const DEFAULT: KeyValue = KeyValue {
        link: Cow::Borrowed(""),
    };

    /// The store behind the link named `name` (`""` and `"default"` both mean
    /// the default link).
    pub fn link(name: impl Into<Cow<'static, str>>) -> Self {
        KeyValue { link: name.into() }
    }

    /// The link name as passed to the host (`""` for the default link).
    pub fn link_name(&self) -> &str {
        &self.link
    }

    /// The value of `key`, or `None` when it does not exist (or has expired).
    /// An existing empty value is `Some(vec![])`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let reply: GetResponse = self.call(
            GET,
            &GetRequest {
                key: key.to_owned(),
            },
        )?;
        Ok(reply.found.then_some(reply.value))
    }

    /// Sets `key` to `value` with no expiry (clearing any earlier expiry).
    pub fn set(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.send_set(key, value.into(), None)
    }

    /// Sets `key` to `value`, expiring `ttl_secs` seconds from now.
    ///
    /// `ttl_secs` must be at least 1; providers refuse 0.
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        ttl_secs: u64,
    ) -> Result<(), Error> {
        self.send_set(key, value.into(), Some(ttl_secs))
    }

    fn send_set(&self, key: &str, value: Vec<u8>, ttl_secs: Option<u64>) -> Result<(), Error> {
        let request = SetRequest {
            key: key.to_owned(),
            value,
            ttl_secs,
        };
        // The reply is msgpack nil; its bytes carry nothing, so any are accepted.
        host_call(&self.link, CONTRACT, SET, &encode(&request)?)?;
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.call(
            DELETE,
            &KeyRequest {
                key: key.to_owned(),
            },
        )
    }

    /// Whether `key` exists (and has not expired).
    pub fn contains(&self, key: &str) -> Result<bool, Error> {
        self.call(
            CONTAINS,
            &KeyRequest {
                key: key.to_owned(),
            },
        )
    }

    /// Adds `delta` (may be negative) to the counter at `key`, atomically, and
    /// returns the new value. A missing key counts as 0; the counter is stored
    /// as decimal text. Fails when the value is not a decimal `i64` or the sum
    /// overflows.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        self.call(
            INCREMENT,
            &IncrementRequest {
                key: key.to_owned(),
                delta,
            },
        )
    }

    /// The keys starting with `prefix` (all keys for `""`), sorted, however
    /// many: asked for in one answer, and when the provider finds them too
    /// many for one ([`TOO_MANY_KEYS`]), in pages of [`MAX_KEYS_PER_PAGE`]
    /// ([`KeyValue::keys_page`] takes one page).
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let request = KeysRequest {
            prefix: prefix.to_owned(),
            ..KeysRequest::default()
        };
        match self.call(KEYS, &request) {
            Err(Error::Host { message, .. }) if message.contains(TOO_MANY_KEYS) => {}
            answer => return answer,
        }
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = self.keys_page(prefix, all.last().map(String::as_str), MAX_KEYS_PER_PAGE)?;
            let ended = page.len() < MAX_KEYS_PER_PAGE as usize;
            all.extend(page);
            if ended {
                return Ok(all);
            }
        }
    }

    /// One page of the keys starting with `prefix`, sorted: at most `limit`
    /// (1 to [`MAX_KEYS_PER_PAGE`]) of those after `after`. Fewer than `limit`
    /// means the listing ended; else ask again after the page's last key.
    ///
    /// # Errors
    /// A `limit` out of range is refused by the provider, naming the range;
    /// an answer that is not such a page (more keys than `limit`, not sorted,
    /// or keys not after `after`: a provider that does not know pages) is
    /// [`Error::Decode`], so a listing cannot go round in circles.
    pub fn keys_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        let request = KeysRequest {
            prefix: prefix.to_owned(),
            after: after.map(str::to_owned),
            limit: Some(limit),
        };
        let page: Vec<String> = self.call(KEYS, &request)?;
        if !request.is_page(&page) {
            return Err(Error::Decode(format!(
                "the reply to {CONTRACT} {KEYS} is not a page of at most {limit} keys after {after:?}: {} keys from {:?} (a provider that does not know pages?)",
                page.len(),
                page.first()
            )));
        }
        Ok(page)
    }

    fn call<In: Serialize, Out: DeserializeOwned>(
        &self,
        operation: &str,
        request: &In,
    ) -> Result<Out, Error> {
        let reply = host_call(&self.link, CONTRACT, operation, &encode(request)?)?;
        rmp_serde::from_slice(&reply).map_err(|e| {
            Error::Decode(format!(
                "the reply to {CONTRACT} {operation} is not a {}: {e}",
                std::any::type_name::<Out>()
            ))
        })
    }
}

/// [`KeyValue::get`] on the default link.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    KeyValue::DEFAULT.get(key)
}

/// [`KeyValue::set`] on the default link.
pub fn set(key: &str, value: impl Into<Vec<u8>>) -> Result<(), Error> {
    KeyValue::DEFAULT.set(key, value)
}

/// [`KeyValue::set_with_ttl`] on the default link.
pub fn set_with_ttl(key: &str, value: impl Into<Vec<u8>>, ttl_secs: u64) -> Result<(), Error> {
    KeyValue::DEFAULT.set_with_ttl(key, value, ttl_secs)
}

/// [`KeyValue::delete`] on the default link.
pub fn delete(key: &str) -> Result<bool, Error> {
    KeyValue::DEFAULT.delete(key)
}

/// [`KeyValue::contains`] on the default link.
pub fn contains(key: &str) -> Result<bool, Error> {
    KeyValue::DEFAULT.contains(key)
}

/// [`KeyValue::increment`] on the default link.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    KeyValue::DEFAULT.increment(key, delta)
}

/// [`KeyValue::keys`] on the default link.
pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
    KeyValue::DEFAULT.keys(prefix)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{HostCall, MockHost, mock_host};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// (binding, operation, payload) of each call.
    type Calls = Rc<RefCell<Vec<(String, String, Vec<u8>)>>>;

    /// Records every call, answering each with `reply`.
    fn recording(reply: Vec<u8>) -> (crate::testing::MockHost, Calls) {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let log = Rc::clone(&calls);
        let host = mock_host(move |c: HostCall<'_>| {
            assert_eq!(c.namespace, "lattice:keyvalue");
            log.borrow_mut().push((
                c.binding.to_owned(),
                c.operation.to_owned(),
                c.payload.to_vec(),
            ));
            Ok(reply.clone())
        });
        (host, calls)
    }

    /// msgpack fixstr
    fn s(text: &str) -> Vec<u8> {
        assert!(text.len() < 32);
        let mut v = vec![0xa0 | text.len() as u8];
        v.extend_from_slice(text.as_bytes());
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn without_host_every_call_is_no_host() {
        assert_eq!(get("k"), Err(Error::NoHost));
        assert_eq!(set("k", "v"), Err(Error::NoHost));
        assert_eq!(set_with_ttl("k", "v", 5), Err(Error::NoHost));
        assert_eq!(delete("k"), Err(Error::NoHost));
        assert_eq!(contains("k"), Err(Error::NoHost));
        assert_eq!(increment("k", 1), Err(Error::NoHost));
        assert_eq!(keys(""), Err(Error::NoHost));
        assert_eq!(KeyValue::link("cache").get("k"), Err(Error::NoHost));
    }

    #[test]
    fn get_sends_named_key_and_reads_found() {
        let found = encode(&GetResponse {
            found: true,
            value: b"v".to_vec(),
        })
        .unwrap();
        let (_host, calls) = recording(found);
        assert_eq!(get("k"), Ok(Some(b"v".to_vec())));
        assert_eq!(
            calls.borrow()[0],
            (
                "".into(),
                "KeyValue.Get".into(),
                cat(&[&[0x81], &s("key"), &s("k")])
            )
        );
    }

    #[test]
    fn get_distinguishes_missing_from_empty() {
        let (_host, _) = recording(encode(&GetResponse::default()).unwrap());
        assert_eq!(get("k"), Ok(None));
        drop(_host);
        // {found: true} with no value field: an empty value.
        let reply = cat(&[&[0x81], &s("found"), &[0xc3]]);
        let (_host, _) = recording(reply);
        assert_eq!(get("k"), Ok(Some(vec![])));
    }

    #[test]
    fn set_encodes_value_as_bin_and_ttl_only_when_given() {
        let (_host, calls) = recording(vec![0xc0]);
        set("k", "ab").unwrap();
        set_with_ttl("k", vec![0u8, 255], 30).unwrap();
        KeyValue::link("cache").set("k", &b""[..]).unwrap();
        let calls = calls.borrow();
        assert_eq!(
            calls[0],
            (
                "".into(),
                "KeyValue.Set".into(),
                cat(&[&[0x82], &s("key"), &s("k"), &s("value"), &[0xc4, 2], b"ab"])
            )
        );
        assert_eq!(
            calls[1].2,
            cat(&[
                &[0x83],
                &s("key"),
                &s("k"),
                &s("value"),
                &[0xc4, 2, 0, 255],
                &s("ttl_secs"),
                &[30]
            ])
        );
        assert_eq!(calls[2].0, "cache");
        assert_eq!(
            calls[2].2,
            cat(&[&[0x82], &s("key"), &s("k"), &s("value"), &[0xc4, 0]])
        );
    }

    #[test]
    fn set_accepts_any_reply_bytes() {
        let (_host, _) = recording(vec![]);
        assert_eq!(set("k", "v"), Ok(()));
    }

    #[test]
    fn bool_int_and_list_replies() {
        let (_host, calls) = recording(vec![0xc3]);
        assert_eq!(delete("k"), Ok(true));
        assert_eq!(contains("k"), Ok(true));
        assert_eq!(calls.borrow()[0].1, "KeyValue.Delete");
        assert_eq!(calls.borrow()[1].1, "KeyValue.Contains");
        assert_eq!(calls.borrow()[1].2, cat(&[&[0x81], &s("key"), &s("k")]));
        drop(_host);

        let (_host, calls) = recording(encode(&-3i64).unwrap());
        assert_eq!(KeyValue::link("counters").increment("n", -5), Ok(-3));
        assert_eq!(
            calls.borrow()[0],
            (
                "counters".into(),
                "KeyValue.Increment".into(),
                // delta -5 is a negative fixint
                cat(&[&[0x82], &s("key"), &s("n"), &s("delta"), &[0xfb]])
            )
        );
        drop(_host);

        let (_host, calls) = recording(encode(&["a1", "a2"]).unwrap());
        assert_eq!(keys("a"), Ok(vec!["a1".to_owned(), "a2".to_owned()]));
        assert_eq!(
            calls.borrow()[0],
            (
                "".into(),
                "KeyValue.Keys".into(),
                // {prefix: "a"}: one answer first, pages only when refused
                cat(&[&[0x81], &s("prefix"), &s("a")])
            )
        );
    }

    /// A provider holding `stored`: refuses an answer without a limit past
    /// `unpaged_max` keys (as the built-in one does past 512 KiB), honours
    /// pages unless `ignores_pages`. Logs each request's (after, limit).
    fn provider(stored: Vec<String>, unpaged_max: usize, ignores_pages: bool) -> (MockHost, Asked) {
        let asked = Rc::new(RefCell::new(Vec::new()));
        let log = Rc::clone(&asked);
        let host = mock_host(move |c: HostCall<'_>| {
            let request: KeysRequest = rmp_serde::from_slice(c.payload).unwrap();
            log.borrow_mut()
                .push((request.after.clone(), request.limit));
            let (after, limit) = match request.limit {
                None if stored.len() > unpaged_max => {
                    return Err(format!(
                        "KeyValue.Keys: the keys are more than 512 KiB, {TOO_MANY_KEYS}; ask for them in pages"
                    ));
                }
                Some(limit) if !ignores_pages => (request.after, limit as usize),
                _ => (None, usize::MAX),
            };
            let page: Vec<&String> = stored
                .iter()
                .filter(|k| after.as_ref().is_none_or(|a| *k > a))
                .take(limit)
                .collect();
            Ok(encode(&page).unwrap())
        });
        (host, asked)
    }

    type Asked = Rc<RefCell<Vec<(Option<String>, Option<u32>)>>>;

    fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i:04}")).collect()
    }

    #[test]
    fn keys_asks_once_and_in_pages_only_when_refused() {
        let (host, asked) = provider(numbered(2500), 5000, false);
        assert_eq!(keys(""), Ok(numbered(2500)));
        assert_eq!(*asked.borrow(), [(None, None)], "one answer held them");
        drop(host);

        let (host, asked) = provider(numbered(2500), 100, false);
        assert_eq!(keys(""), Ok(numbered(2500)));
        let page = |after: Option<&str>| (after.map(str::to_owned), Some(1000));
        assert_eq!(
            *asked.borrow(),
            [
                (None, None),
                page(None),
                page(Some("k0999")),
                page(Some("k1999"))
            ]
        );
        drop(host);

        // An exact multiple of the page: the last page is empty, no key twice.
        let (_host, asked) = provider(numbered(2000), 100, false);
        assert_eq!(keys(""), Ok(numbered(2000)));
        assert_eq!(asked.borrow().len(), 4);
        assert_eq!(
            KeyValue::DEFAULT.keys_page("", Some("k1997"), 5),
            Ok(vec!["k1998".to_owned(), "k1999".to_owned()])
        );
    }

    #[test]
    fn a_provider_that_ignores_pages_is_an_error_not_a_loop() {
        let (host, asked) = provider(numbered(2500), 100, true);
        let err = keys("").unwrap_err().to_string();
        assert!(
            err.contains("not a page of at most 1000 keys") && err.contains("2500 keys"),
            "{err}"
        );
        assert_eq!(asked.borrow().len(), 2);
        drop(host);
        // A page not after `after` is caught too, whatever its length.
        let (_host, _) = provider(numbered(10), 100, true);
        let err = KeyValue::DEFAULT
            .keys_page("", Some("k0005"), 1000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from Some(\"k0000\")"), "{err}");
    }

    #[test]
    fn wrong_reply_is_a_decode_error_naming_the_operation() {
        let (_host, _) = recording(vec![0xa1, b'x']);
        let err = increment("n", 1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "could not decode msgpack: the reply to lattice:keyvalue KeyValue.Increment is not a i64: "
            ),
            "{msg}"
        );
    }

    #[test]
    fn provider_errors_name_the_call() {
        let _host = mock_host(|_| {
            Err("actor kvcounter may not call contract lattice:keyvalue through link \"default\": there is no such link".into())
        });
        assert_eq!(
            get("k").unwrap_err().to_string(),
            "call to lattice:keyvalue KeyValue.Get failed: actor kvcounter may not call contract lattice:keyvalue through link \"default\": there is no such link"
        );
    }

    #[test]
    fn handles() {
        assert_eq!(KeyValue::default(), KeyValue::DEFAULT);
        assert_eq!(KeyValue::DEFAULT.link_name(), "");
        assert_eq!(KeyValue::link(String::from("x")).link_name(), "x");
    }
}
