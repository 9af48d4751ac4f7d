//! How contract keys and values are laid out in a JetStream KV bucket.
//!
//! Keys: NATS KV keys may only hold `[-/_=.a-zA-Z0-9]` and no empty `.`-token,
//! contract keys are any UTF-8 string. [`encode_key`] maps every contract key to
//! exactly one valid KV key and [`decode_key`] maps it back:
//!
//! | contract key | KV key |
//! |---|---|
//! | `""` | `e` |
//! | only `[-/_=.a-zA-Z0-9]`, no empty `.`-token (`user.42`, `a/b=c`) | `r.` + key (`r.user.42`) |
//! | anything else (`a b`, `.lead`, `*`, `ünï`) | `b.` + base64url without padding of the UTF-8 bytes |
//!
//! Values: an envelope of one tag byte, then (tag 1 only) the expiry as unix
//! milliseconds, 8 bytes big-endian, then the value's bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// KV key of the empty contract key.
const EMPTY_KEY: &str = "e";
/// Prefix of contract keys stored as they are.
const RAW_PREFIX: &str = "r.";
/// Prefix of contract keys stored base64url-encoded.
const BASE64_PREFIX: &str = "b.";

/// Envelope tag: no expiry.
const TAG_PLAIN: u8 = 0;
/// Envelope tag: an 8-byte expiry follows.
const TAG_EXPIRING: u8 = 1;

/// Whether `key` can be stored as it is: only `[-/_=.a-zA-Z0-9]`, and no empty
/// `.`-separated token (no leading or trailing `.`, no `..`).
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        && key.split('.').all(|token| !token.is_empty())
}

/// The KV key that holds contract key `key`.
pub(crate) fn encode_key(key: &str) -> String {
    if key.is_empty() {
        EMPTY_KEY.to_string()
    } else if is_plain(key) {
        format!("{RAW_PREFIX}{key}")
    } else {
        format!("{BASE64_PREFIX}{}", URL_SAFE_NO_PAD.encode(key))
    }
}

/// The contract key stored under KV key `stored`, or `None` when `stored` is
/// not the (canonical) encoding of any key: it was not written by this provider.
pub(crate) fn decode_key(stored: &str) -> Option<String> {
    let key = if stored == EMPTY_KEY {
        String::new()
    } else if let Some(raw) = stored.strip_prefix(RAW_PREFIX) {
        raw.to_string()
    } else if let Some(encoded) = stored.strip_prefix(BASE64_PREFIX) {
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?
    } else {
        return None;
    };
    // Only the canonical form counts, so one key never shows up twice.
    (encode_key(&key) == stored).then_some(key)
}

/// A value as stored: its bytes and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Unix time in milliseconds after which the value counts as missing.
    pub(crate) expires_at_ms: Option<u64>,
    /// The value.
    pub(crate) value: Vec<u8>,
}

/// Why stored bytes are not an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// Zero bytes: not even a tag.
    #[error("the stored entry is empty (no envelope tag)")]
    Empty,
    /// A tag this version does not know.
    #[error("unknown envelope tag {0:#04x}")]
    UnknownTag(u8),
    /// Tag 1 with fewer than 8 bytes after it.
    #[error("the stored entry is too short to hold its expiry")]
    Truncated,
}

impl Envelope {
    /// Encodes a value with an optional expiry.
    pub(crate) fn encode(value: &[u8], expires_at_ms: Option<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len() + 9);
        match expires_at_ms {
            None => out.push(TAG_PLAIN),
            Some(at) => {
                out.push(TAG_EXPIRING);
                out.extend_from_slice(&at.to_be_bytes());
            }
        }
        out.extend_from_slice(value);
        out
    }

    /// Decodes stored bytes.
    pub(crate) fn decode(stored: &[u8]) -> Result<Self, EnvelopeError> {
        let (&tag, rest) = stored.split_first().ok_or(EnvelopeError::Empty)?;
        match tag {
            TAG_PLAIN => Ok(Envelope {
                expires_at_ms: None,
                value: rest.to_vec(),
            }),
            TAG_EXPIRING => {
                let (at, value) = rest.split_at_checked(8).ok_or(EnvelopeError::Truncated)?;
                let at: [u8; 8] = at.try_into().map_err(|_| EnvelopeError::Truncated)?;
                Ok(Envelope {
                    expires_at_ms: Some(u64::from_be_bytes(at)),
                    value: value.to_vec(),
                })
            }
            other => Err(EnvelopeError::UnknownTag(other)),
        }
    }

    /// Whether the value has expired at unix time `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_kv_key(k: &str) -> bool {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
            && k.split('.').all(|t| !t.is_empty())
    }

    #[test]
    fn keys_round_trip_into_valid_kv_keys() {
        let long = "ü".repeat(512);
        let keys = [
            "",
            "plain",
            "user.42",
            "a/b=c-d_e",
            "a b",
            "a.b",
            ".lead",
            "trail.",
            "a..b",
            ".",
            "*",
            ">",
            "a.*.>",
            "ünïcødé 🦀",
            "e",
            "r",
            "b",
            "r.x",
            "b.x",
            "tab\there",
            "nul\0byte",
            &long,
        ];
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            let stored = encode_key(key);
            assert!(valid_kv_key(&stored), "{key:?} → {stored:?}");
            assert!(seen.insert(stored.clone()), "{key:?} collides");
            assert_eq!(decode_key(&stored).as_deref(), Some(key), "{stored:?}");
        }
        assert_eq!(encode_key("user.42"), "r.user.42");
        assert_eq!(encode_key(""), "e");
        assert_eq!(encode_key("a b"), "b.YSBi");
    }

    #[test]
    fn foreign_and_non_canonical_keys_are_not_ours() {
        for stored in [
            "plain",
            "x.y",
            "r.",
            "r..a",
            "b.",
            "b.!!",
            "b.cGxhaW4",
            "b._w",
            "ee",
        ] {
            assert_eq!(decode_key(stored), None, "{stored:?}");
        }
    }

    #[test]
    fn envelopes_round_trip() {
        for (value, at) in [
            (&b""[..], None),
            (&b"42"[..], None),
            (&b""[..], Some(0)),
            (&b"\x00\x01abc"[..], Some(1_700_000_000_000)),
        ] {
            let stored = Envelope::encode(value, at);
            let env = Envelope::decode(&stored).unwrap();
            assert_eq!(env.value, value);
            assert_eq!(env.expires_at_ms, at);
        }
        assert_eq!(Envelope::decode(b""), Err(EnvelopeError::Empty));
        assert_eq!(
            Envelope::decode(b"hello"),
            Err(EnvelopeError::UnknownTag(b'h'))
        );
        assert_eq!(Envelope::decode(b"\x01abc"), Err(EnvelopeError::Truncated));
        let env = Envelope::decode(&Envelope::encode(b"v", Some(10))).unwrap();
        assert!(!env.expired(9));
        assert!(env.expired(10));
        assert!(!Envelope::decode(b"\x00").unwrap().expired(u64::MAX));
    }
}
