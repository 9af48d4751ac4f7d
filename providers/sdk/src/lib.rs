//! Write Lattice capability providers.
//!
//! A provider serves one contract (`lattice:keyvalue`, `lattice:httpserver`, ...)
//! for the actors linked to it. Implement [`Provider`]; the same implementation
//! runs two ways:
//!
//! * **inside a host** (built-in, the fast path): the host calls
//!   [`ProviderRuntime::handle_local`] directly when an actor on that host calls the
//!   contract;
//! * **as its own process** joined over NATS: [`run_standalone`] (what
//!   `lattice provider run NAME` does, and what any executable built with this SDK
//!   can call from `main`).
//!
//! A standalone process connects with [`connect`] and a [`NatsAuth`] (from the
//! `LATTICE_NATS_*`/`LATTICE_TLS_*` environment and `--nats-creds`,
//! `--nats-nkey`, `--tls-ca`, `--tls-cert`, `--tls-key` flags).
//!
//! In both cases [`ProviderRuntime`] watches the lattice's links (JetStream KV) and
//! tells the provider when links for it come and go, serves calls from other hosts
//! on `lattice.{lid}.rpc.{provider_id}`, and answers `ping.providers`.
//!
//! # Example
//!
//! ```no_run
//! use lattice_provider::{BoxFuture, Provider, ProviderCall, ProviderContext, ProviderError};
//! use lattice::link::LinkDefinition;
//!
//! struct Clock;
//!
//! impl Provider for Clock {
//!     fn contract(&self) -> &'static str { "example:clock" }
//!     fn start(&self, _ctx: ProviderContext) -> BoxFuture<'_, Result<(), ProviderError>> {
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn put_link(&self, _link: LinkDefinition) -> BoxFuture<'_, Result<(), ProviderError>> {
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn delete_link(&self, _link: LinkDefinition) -> BoxFuture<'_, ()> { Box::pin(async {}) }
//!     fn handle(&self, call: ProviderCall) -> BoxFuture<'_, Result<Vec<u8>, ProviderError>> {
//!         Box::pin(async move {
//!             match call.operation.as_str() {
//!                 "Clock.Now" => Ok(rmp_serde::to_vec(&0u64).unwrap()),
//!                 _ => Err(ProviderError::unknown_operation(&call.operation, &["Clock.Now"])),
//!             }
//!         })
//!     }
//!     fn shutdown(&self) -> BoxFuture<'_, ()> { Box::pin(async {}) }
//! }
//! ```

pub mod http_stream;
mod runtime;

use std::{future::Future, pin::Pin, sync::Arc};

pub use lattice::auth::{AuthError, NatsAuth};
pub use lattice::ctl::{Health, LinkStatus};
use lattice::id::{ActorId, ContractId, LatticeId, ProviderId};
pub use lattice::link::LinkDefinition;
pub use runtime::{NatsActorCaller, ProviderRuntime, call_error, run_standalone};

/// Connects a standalone provider process to NATS with the same credentials
/// and TLS settings as every other Lattice process: `auth` is usually
/// [`NatsAuth::from_env`] (`LATTICE_NATS_CREDS`, `LATTICE_NATS_NKEY`,
/// `LATTICE_NATS_USER`/`LATTICE_NATS_PASSWORD`, `LATTICE_NATS_TOKEN`,
/// `LATTICE_TLS_CA`, `LATTICE_TLS_CERT`, `LATTICE_TLS_KEY`), with
/// [`NatsAuth::apply_args`] for `--nats-creds`/`--nats-nkey`/`--tls-*` flags.
/// With `lattice auth init`, a provider process uses the `provider` role's seed.
///
/// # Errors
/// [`AuthError::Connect`] naming the URL, the credential and NATS's answer.
pub async fn connect(
    url: &str,
    name: &str,
    auth: &NatsAuth,
) -> Result<async_nats::Client, AuthError> {
    lattice::auth::connect(url, name, auth, None).await
}

/// A boxed, sendable future: what [`Provider`] methods return so the trait stays
/// object safe (`Arc<dyn Provider>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A call from an actor to the provider.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    /// The calling actor.
    pub actor_id: ActorId,
    /// The link name it used (`default` when it gave none).
    pub link_name: String,
    /// The operation, e.g. `KeyValue.Get`.
    pub operation: String,
    /// The msgpack payload.
    pub payload: Vec<u8>,
}

/// Why a call from a provider to an actor failed; lets an HTTP provider choose
/// 503 / 504 / 500.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Nobody runs the actor.
    #[error("actor {0} is not running anywhere in the lattice")]
    NotRunning(String),
    /// The actor did not answer in time.
    #[error("actor {0} did not answer in time")]
    Timeout(String),
    /// The actor (or its host, or a provider) is at its limit of calls in
    /// flight and queued and refused the call at once; retrying later may work.
    /// The message names who is busy and its limits. An HTTP server answers
    /// 503 with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// The host serving the call went silent mid-call (it most likely died):
    /// the call may or may not have run. An HTTP server answers 502; a
    /// request that is safe to repeat may be sent again (another replica
    /// takes it).
    #[error("{0}")]
    Lost(String),
    /// The actor answered with an error.
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    /// Whether an error message from a peer is a "busy" refusal: hosts and
    /// providers word every one as `X is busy: ...; retry later`, so a caller
    /// that only gets the message over NATS can tell it from other failures.
    pub fn is_busy_message(message: &str) -> bool {
        message.contains(" is busy: ") && message.trim_end().ends_with("; retry later")
    }

    /// Whether an error message from a peer says the callee ran out of time:
    /// hosts word every one as `X exceeded the call deadline of N ms in OP`.
    pub fn is_deadline_message(message: &str) -> bool {
        message.contains(" exceeded the call deadline of ")
    }
}

/// A boxed error a streamed HTTP body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP body streamed between a provider and an actor in one process: the
/// frames flow as they are produced, nothing is collected first. An error
/// frame means the body ended badly (the sender failed or trapped mid-body);
/// an HTTP server then aborts the response rather than end it cleanly.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// How a provider calls actors (e.g. the HTTP server calling
/// `HttpServer.HandleRequest`). In a host, calls go in-process to local replicas;
/// elsewhere over NATS.
pub trait ActorCaller: Send + Sync + 'static {
    /// Calls `operation` on `actor` with a msgpack payload.
    fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallError>>;

    /// Whether `actor` runs in this process and answers HTTP with streamed
    /// bodies (a `wasi:http` component): an HTTP server then hands the request
    /// to [`ActorCaller::call_http`] as it arrives instead of reading it whole
    /// into an `HttpRequest`. `false` (the default) everywhere else.
    fn streams_http(&self, actor: &str) -> bool {
        let _ = actor;
        false
    }

    /// Serves `request` with `actor`, bodies streamed both ways: the response
    /// comes back once the actor has set its status and headers and written
    /// the first chunk of its body (or ended it), and the rest follows while
    /// the actor writes it. Only for actors [`ActorCaller::streams_http`] said
    /// yes to.
    ///
    /// # Errors
    /// As [`ActorCaller::call_actor`]; [`CallError::NotRunning`] when the actor
    /// no longer runs here (stopped in between), or when this caller cannot
    /// stream (the default).
    fn call_http(
        &self,
        actor: &str,
        request: http::Request<HttpBody>,
    ) -> BoxFuture<'static, Result<http::Response<HttpBody>, CallError>> {
        drop(request);
        let actor = actor.to_string();
        Box::pin(async move { Err(CallError::NotRunning(actor)) })
    }

    /// How to reach `actor` over NATS when its calls leave this process, so
    /// a provider can speak a conversation of more than one message with the
    /// host serving it (an HTTP server streaming bodies, [`http_stream`]).
    /// `None` when the actor runs in this process (or the caller cannot say):
    /// use [`ActorCaller::call_actor`] then.
    fn remote(&self, actor: &str) -> Option<RemoteActor> {
        let _ = actor;
        None
    }
}

/// Where calls to an actor in another process go ([`ActorCaller::remote`]).
#[derive(Clone)]
pub struct RemoteActor {
    /// Sends them, and opens inboxes for replies of more than one message.
    pub caller: lattice::rpc::remote::Caller,
    /// The subject of the actor's calls.
    pub subject: String,
    /// Who calls (the provider's id).
    pub origin: String,
    /// How long a call may take.
    pub timeout: std::time::Duration,
}

/// What a provider gets when it starts.
#[derive(Clone)]
pub struct ProviderContext {
    /// The lattice it serves.
    pub lattice: LatticeId,
    /// Its provider id.
    pub provider_id: String,
    /// The NATS connection of the host or process it runs in (for JetStream
    /// backends and the like).
    pub nats: async_nats::Client,
    /// How to call actors.
    pub actors: Arc<dyn ActorCaller>,
}

/// Errors a provider reports. The message goes back to the calling actor, so it
/// names what failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The payload could not be decoded for the operation, or asks for what
    /// the contract does not allow (a key too long, a page too large).
    #[error("{operation}: {reason}")]
    BadRequest {
        /// The operation.
        operation: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider does not implement the operation.
    #[error("unknown operation {operation:?}; this provider handles: {known}")]
    UnknownOperation {
        /// What was asked.
        operation: String,
        /// What exists, comma separated.
        known: String,
    },
    /// The link's configuration is unusable, or applying it failed.
    #[error("link {link_name:?} of actor {actor_id}: {reason}")]
    Link {
        /// The actor.
        actor_id: String,
        /// The link name.
        link_name: String,
        /// What is wrong.
        reason: String,
    },
    /// No link (actor, link name) for this provider.
    #[error("actor {actor_id} has no link named {link_name:?} to this provider")]
    NotLinked {
        /// The actor.
        actor_id: String,
        /// The link name.
        link_name: String,
    },
    /// The backend failed (store unreachable, ...).
    #[error("{0}")]
    Backend(String),
}

/// Why a provider refused or failed a call that came over NATS (from an actor
/// on another host). The message goes back to the caller as is; each names the
/// provider once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteCallError {
    /// The caller is not an actor: only actors hold links.
    #[error("provider {provider} accepts calls from actors only: {reason}")]
    NotAnActor {
        /// This provider.
        provider: ProviderId,
        /// Why the origin is not an actor id.
        reason: String,
    },
    /// The provider holds no link (caller, contract, link name): the caller's
    /// host should have refused, or someone published a forged invocation.
    #[error(
        "provider {provider} refuses a call from actor {actor} through link {link:?}: it holds no such link for contract {contract}"
    )]
    NotLinked {
        /// This provider.
        provider: ProviderId,
        /// The calling actor.
        actor: ActorId,
        /// The link name the invocation carried (maybe not a valid one).
        link: String,
        /// The contract this provider serves.
        contract: ContractId,
    },
    /// The provider itself failed the call.
    #[error("provider {provider}: {source}")]
    Failed {
        /// This provider.
        provider: ProviderId,
        /// Its error.
        #[source]
        source: ProviderError,
    },
}

impl ProviderError {
    /// An [`ProviderError::UnknownOperation`] listing `known`.
    pub fn unknown_operation(operation: &str, known: &[&str]) -> Self {
        ProviderError::UnknownOperation {
            operation: operation.to_string(),
            known: known.join(", "),
        }
    }

    /// Decodes a msgpack payload, or a [`ProviderError::BadRequest`] naming the
    /// operation.
    ///
    /// # Errors
    /// [`ProviderError::BadRequest`].
    pub fn decode<T: serde::de::DeserializeOwned>(
        operation: &str,
        payload: &[u8],
    ) -> Result<T, ProviderError> {
        rmp_serde::from_slice(payload).map_err(|e| ProviderError::BadRequest {
            operation: operation.to_string(),
            reason: format!("malformed payload: {e}"),
        })
    }

    /// Encodes a reply as msgpack with named fields.
    ///
    /// # Errors
    /// [`ProviderError::Backend`] — practically unreachable for plain data.
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProviderError> {
        rmp_serde::to_vec_named(value).map_err(|e| ProviderError::Backend(e.to_string()))
    }
}

/// A capability provider.
///
/// Methods return [`BoxFuture`]s so `Arc<dyn Provider>` works. Implementations
/// must be safe to call concurrently: `handle` runs for many calls at once.
pub trait Provider: Send + Sync + 'static {
    /// The contract served, e.g. `lattice:keyvalue`.
    fn contract(&self) -> &'static str;

    /// Called once before any link or call.
    fn start(&self, ctx: ProviderContext) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// A link to this provider appeared (or changed). An error is reported on the
    /// link (event `link_failed`, inventory) and does not stop the provider.
    fn put_link(&self, link: LinkDefinition) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// A link to this provider went away: release what `put_link` took.
    fn delete_link(&self, link: LinkDefinition) -> BoxFuture<'_, ()>;

    /// Handles a call from a linked actor.
    fn handle(&self, call: ProviderCall) -> BoxFuture<'_, Result<Vec<u8>, ProviderError>>;

    /// Current health; the default is healthy.
    fn health(&self) -> Health {
        Health::ok()
    }

    /// Stop: close listeners, flush state.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
