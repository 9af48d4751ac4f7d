//! What a store operation can fail with, and how that reaches the caller.

use lattice::contracts::keyvalue::TOO_MANY_KEYS;
use lattice_provider::ProviderError;

use crate::codec::EnvelopeError;

/// A boxed error from the NATS client.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// `Increment` on a value that is not a decimal `i64`.
    #[error("the value of key {key:?} is not a decimal integer, so it cannot be incremented")]
    NotAnInteger {
        /// The key.
        key: String,
    },
    /// `Increment` would leave the `i64` range.
    #[error("incrementing key {key:?} (now {current}) by {delta} overflows a 64-bit integer")]
    Overflow {
        /// The key.
        key: String,
        /// Its current value.
        current: i64,
        /// The requested delta.
        delta: i64,
    },
    /// The bucket holds bytes under the key that this provider did not write.
    #[error("bucket {bucket}: the entry of key {key:?} is not in this provider's format: {source}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        source: EnvelopeError,
    },
    /// A JetStream request failed.
    #[error("JetStream bucket {bucket}: {action}: {source}")]
    JetStream {
        /// The bucket.
        bucket: String,
        /// What was being done, e.g. `reading key "a"`.
        action: String,
        /// The client's error.
        source: BoxError,
    },
    /// `Keys` without a limit matched more keys than one answer holds.
    #[error(
        "the keys starting with {prefix:?} are more than {} KiB, {TOO_MANY_KEYS}; ask for them in pages (`limit`, then `after` the last key of each page)",
        max_bytes / 1024
    )]
    TooManyKeys {
        /// The request's prefix.
        prefix: String,
        /// The bound that was passed.
        max_bytes: usize,
    },
    /// Optimistic concurrency kept losing.
    #[error(
        "JetStream bucket {bucket}: gave up updating key {key:?} after {attempts} attempts, each lost to a concurrent writer"
    )]
    Contention {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// How often it tried.
        attempts: u32,
    },
}

impl StoreError {
    /// The error the calling actor gets for `operation`: caller mistakes are
    /// [`ProviderError::BadRequest`], the rest [`ProviderError::Backend`].
    pub(crate) fn into_provider_error(self, operation: &str) -> ProviderError {
        match self {
            StoreError::NotAnInteger { .. }
            | StoreError::Overflow { .. }
            | StoreError::TooManyKeys { .. } => ProviderError::BadRequest {
                operation: operation.to_string(),
                reason: self.to_string(),
            },
            _ => ProviderError::Backend(format!("{operation}: {self}")),
        }
    }
}
