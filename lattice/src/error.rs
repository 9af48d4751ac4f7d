//! The error type of the `lattice` crate.

use std::time::Duration;

/// Everything that can go wrong when talking to a lattice.
///
/// Each variant names the input that failed, so a message printed to a user says
/// what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id (lattice, host, actor, link name) is not a valid NATS subject token.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId {
        /// What kind of id was being checked (`actor id`, `lattice id`, ...).
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Nobody in the lattice serves the target of a call or a control request.
    #[error("no responders for {what} on subject {subject} (is it running in this lattice?)")]
    NoResponders {
        /// What was asked for, e.g. `actor "hello"` or `host "NABC..."`.
        what: String,
        /// The subject the request went to.
        subject: String,
    },
    /// A request was sent and somebody listens, but no answer came in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The host serving a call went silent: no reply and no progress message
    /// for `silence`, although it sends progress while a call runs. It has most
    /// likely died or lost its connection; the call may or may not have run.
    #[error(
        "no reply and no sign of life for {silence:?} from the host serving {what}: \
         it has probably stopped; the call may or may not have run"
    )]
    ServerLost {
        /// What was called, e.g. `actor "hello"`.
        what: String,
        /// How long nothing came.
        silence: Duration,
    },
    /// A message is larger than the NATS server accepts.
    #[error("{what} is {size} bytes, larger than the server's max payload of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The server's limit in bytes.
        max: usize,
    },
    /// The remote side (a host, a provider, an actor) answered, with an error;
    /// the message is the peer's own and names what failed. Only for answers
    /// from a peer: local failures have their own variants.
    #[error("{0}")]
    Remote(String),
    /// An app manifest is inconsistent (an item declared twice, a link to an
    /// undeclared actor, a missing ref, ...).
    #[error("app {app:?}: {reason}")]
    InvalidManifest {
        /// The app's name as the manifest gives it.
        app: String,
        /// What is wrong, naming the item.
        reason: String,
    },
    /// An app record kept changing under us (other clients deploying or
    /// undeploying it at the same time); retrying later may work.
    #[error(
        "app {app} is being changed by too many clients at once, could not {action} it; try again"
    )]
    AppContention {
        /// The app's name.
        app: String,
        /// What we tried: `deploy` or `undeploy`.
        action: &'static str,
    },
    /// No host in the lattice has this id (or name).
    #[error("no host with {by} {host:?} in lattice {lattice:?}{answered}")]
    HostNotFound {
        /// How it was looked up: `id` or `id or name`.
        by: &'static str,
        /// What was looked up.
        host: String,
        /// The lattice searched.
        lattice: String,
        /// ` (N hosts answered)` when the hosts were asked, else empty.
        answered: String,
    },
    /// Several hosts carry the name; the caller must use an id.
    #[error("host name {name:?} is ambiguous: {count} hosts have it; use the id")]
    AmbiguousHost {
        /// The name given.
        name: String,
        /// How many hosts have it.
        count: usize,
    },
    /// An artifact's stored bytes do not hash to its digest.
    #[error("artifact {digest} is corrupt in the store: its bytes hash to {actual}")]
    CorruptArtifact {
        /// The digest asked for.
        digest: crate::digest::Digest,
        /// What the stored bytes hash to.
        actual: crate::digest::Digest,
    },
    /// A message could not be encoded or decoded.
    #[error("could not {action} {what}: {reason}")]
    Codec {
        /// `encode` or `decode`.
        action: &'static str,
        /// What was being (de)serialised.
        what: String,
        /// The underlying error.
        reason: String,
    },
    /// The artifact reference could not be resolved.
    #[error("artifact {reference:?} not found in lattice {lattice:?}: {reason}")]
    ArtifactNotFound {
        /// The reference as given.
        reference: String,
        /// The lattice that was searched.
        lattice: String,
        /// Detail from the store.
        reason: String,
    },
    /// A NATS or JetStream operation failed.
    #[error("nats: {context}: {source}")]
    Nats {
        /// What we were doing.
        context: String,
        /// The error from async-nats.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An app was deployed again while it was being undeployed; the new
    /// revision stays and nothing of it is deleted.
    #[error(
        "app {name} was deployed again (revision {revision}) while it was being undeployed; \
         the new revision stays"
    )]
    AppRedeployed {
        /// The app.
        name: String,
        /// The revision that was deployed meanwhile.
        revision: u64,
    },
    /// Local I/O failed (reading a module file, ...).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps any NATS-side error with a short description of what was being done.
    pub fn nats(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Nats {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

#[cfg(feature = "client")]
impl From<async_nats::ConnectError> for Error {
    fn from(e: async_nats::ConnectError) -> Self {
        Error::nats("connect", e)
    }
}

impl From<rmp_serde::decode::Error> for Error {
    fn from(e: rmp_serde::decode::Error) -> Self {
        Error::Codec {
            action: "decode",
            what: "msgpack payload".into(),
            reason: e.to_string(),
        }
    }
}

impl From<rmp_serde::encode::Error> for Error {
    fn from(e: rmp_serde::encode::Error) -> Self {
        Error::Codec {
            action: "encode",
            what: "msgpack payload".into(),
            reason: e.to_string(),
        }
    }
}
