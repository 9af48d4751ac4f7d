//! [`Bytes`]: a byte string that travels as msgpack `bin`.

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A byte string that is encoded as msgpack `bin` (a plain `Vec<u8>` would be
/// encoded as an array of integers).
///
/// Decoding accepts `bin`, `str` (its UTF-8 bytes) and arrays of integers in
/// `0..=255`, so payloads from other SDKs decode whichever way they were written.
///
/// ```
/// use lattice_actor::Bytes;
/// let packed = lattice_actor::encode(&Bytes::from(vec![1, 2, 3])).unwrap();
/// assert_eq!(packed, [0xc4, 3, 1, 2, 3]); // bin8, length 3
/// let back: Bytes = lattice_actor::decode(&packed).unwrap();
/// assert_eq!(&back[..], &[1, 2, 3]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Returns the bytes, consuming the wrapper.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes (msgpack bin, str or array of integers 0..=255)")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes(v.as_bytes().to_vec()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes(v.into_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_bin() {
        let packed = rmp_serde::to_vec_named(&Bytes(vec![7, 8])).unwrap();
        assert_eq!(packed, [0xc4, 2, 7, 8]);
    }

    #[test]
    fn decodes_bin_str_and_array() {
        let from_bin: Bytes = rmp_serde::from_slice(&[0xc4, 2, 7, 8]).unwrap();
        assert_eq!(from_bin, Bytes(vec![7, 8]));
        let from_array: Bytes = rmp_serde::from_slice(&[0x92, 7, 8]).unwrap();
        assert_eq!(from_array, Bytes(vec![7, 8]));
        let from_str: Bytes = rmp_serde::from_slice(&[0xa2, b'h', b'i']).unwrap();
        assert_eq!(from_str, Bytes(b"hi".to_vec()));
        assert!(rmp_serde::from_slice::<Bytes>(&[0x91, 0xcd, 0x01, 0x00]).is_err());
    }
}
