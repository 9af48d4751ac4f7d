//! Typed errors of the host runtime.

use lattice::id::{ActorId, HostId, ProviderId, ProviderRef};

/// Failures loading or starting an actor module.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be created.
    #[error("could not create the wasmtime engine: {0}")]
    Engine(String),
    /// The bytes are not a WebAssembly module at all.
    #[error("{what} is not a WebAssembly module: {reason}")]
    NotWasm {
        /// Which module (actor id or reference).
        what: String,
        /// What we found instead.
        reason: String,
    },
    /// The module is WebAssembly but does not follow the actor ABI.
    #[error("{what} does not follow the Lattice actor ABI: {reason}")]
    BadAbi {
        /// Which module.
        what: String,
        /// The broken rule, naming the export or import.
        reason: String,
    },
    /// The module's memory or table starts larger than an instance may be.
    #[error("{what} cannot run on this host: {reason}")]
    TooLarge {
        /// Which module.
        what: String,
        /// Which size, the limit, and the setting behind it.
        reason: String,
    },
    /// wasmtime refused to compile or link the module.
    #[error("could not compile {what}: {reason}")]
    Compile {
        /// Which module.
        what: String,
        /// wasmtime's message.
        reason: String,
    },
    /// Instantiation or the guest's init function failed.
    #[error("could not instantiate actor {actor}: {reason}")]
    Instantiate {
        /// The actor id.
        actor: String,
        /// What failed.
        reason: String,
    },
}

/// Failures of one call into an actor. Each names the actor and operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The guest's handler returned an error (the instance stays healthy).
    #[error("actor {actor} failed {operation}: {message}")]
    Guest {
        /// Actor id.
        actor: String,
        /// Operation.
        operation: String,
        /// The guest's message.
        message: String,
    },
    /// The instance trapped; it was thrown away and the next call gets a fresh one.
    #[error("actor {actor} trapped in {operation}: {message}")]
    Trap {
        /// Actor id.
        actor: String,
        /// Operation.
        operation: String,
        /// The trap, with the guest's last stderr output when there was some.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("actor {actor} exceeded the call deadline of {deadline_ms} ms in {operation}{detail}")]
    Deadline {
        /// Actor id.
        actor: String,
        /// Operation.
        operation: String,
        /// The deadline in milliseconds.
        deadline_ms: u64,
        /// Extra context (e.g. "while waiting for a free instance").
        detail: String,
    },
    /// Every instance of the actor on this host is busy and its queue is full:
    /// the call was refused at once, without waiting. Retrying later (or on
    /// another host) may work.
    #[error(
        "actor {actor} is busy: {in_flight} calls in flight and {queued} queued on host {host}; retry later"
    )]
    Busy {
        /// Actor id.
        actor: String,
        /// This host's name.
        host: String,
        /// Calls running (the actor's concurrency limit on this host).
        in_flight: u32,
        /// Calls waiting for an instance (the actor's queue limit on this host).
        queued: u32,
    },
    /// The host holds `max_calls_per_host` calls (in flight and queued, all
    /// actors together): the call was refused at once, without waiting.
    #[error(
        "host {host} is busy: {limit} calls in flight or queued across its actors, its limit; actor {actor} was not called; retry later"
    )]
    HostBusy {
        /// Actor id.
        actor: String,
        /// This host's name.
        host: String,
        /// The host's `max_calls_per_host`.
        limit: u32,
    },
    /// The actor is stopping or stopped on this host.
    #[error("actor {actor} is stopping on this host")]
    Stopped {
        /// Actor id.
        actor: String,
    },
    /// A fresh instance could not be created (linking, or the guest's init
    /// functions failed).
    #[error("could not instantiate actor {actor}: {reason}")]
    Instantiate {
        /// Actor id.
        actor: String,
        /// What failed, with the guest's last stderr output when there was some.
        reason: String,
    },
}

impl InvokeError {
    /// Whether the call was refused because the actor or the host is at its
    /// limit ([`InvokeError::Busy`], [`InvokeError::HostBusy`]).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            InvokeError::Busy { .. } | InvokeError::HostBusy { .. }
        )
    }
}

/// Why an actor's host call (`__host_call`) failed. The message is handed to the
/// guest as is, so each names the calling actor and what it called.
#[derive(Debug, thiserror::Error)]
pub enum HostCallError {
    /// The namespace is neither a contract id (`namespace:name`) nor an actor id.
    #[error(
        "actor {origin} called {namespace:?}, which is neither a contract id (namespace:name) nor a valid actor id: {reason}"
    )]
    BadTarget {
        /// The calling actor.
        origin: String,
        /// What it passed as namespace.
        namespace: String,
        /// Why neither parse accepted it.
        reason: String,
    },
    /// The claims or links of the caller do not allow the contract call.
    #[error("actor {actor} may not call contract {contract} through link {link:?}: {reason}")]
    ContractRefused {
        /// The calling actor.
        actor: String,
        /// The contract it called.
        contract: String,
        /// The link name it used.
        link: String,
        /// What is missing, with the command that adds it.
        reason: String,
    },
    /// The claims of the caller do not list the actor it called.
    #[error("actor {actor} may not call actor {target}: {reason}")]
    ActorRefused {
        /// The calling actor.
        actor: String,
        /// The actor it called.
        target: String,
        /// What is missing, with the command that adds it.
        reason: String,
    },
    /// A provider running in this host failed the call.
    #[error("provider {provider}: {source}")]
    Provider {
        /// The provider id.
        provider: String,
        /// The provider's error.
        #[source]
        source: lattice_provider::ProviderError,
    },
    /// The linked provider runs nowhere in the lattice.
    #[error(
        "provider {provider} for contract {contract} (link {link:?} of actor {actor}) is not running anywhere in the lattice"
    )]
    ProviderNotRunning {
        /// The provider id.
        provider: String,
        /// The contract.
        contract: String,
        /// The link name.
        link: String,
        /// The calling actor.
        actor: String,
    },
    /// An actor running in this host failed the call.
    #[error(transparent)]
    Actor(#[from] InvokeError),
    /// The call went over NATS and failed there, or the callee answered an error.
    #[error(transparent)]
    Remote(#[from] lattice::Error),
    /// A caller that is not an actor called a contract; only actors hold links.
    #[error("only actors call providers; {origin:?} is not an actor id: {reason}")]
    NotAnActor {
        /// The caller.
        origin: String,
        /// Why its name is not an actor id.
        reason: String,
    },
    /// [`crate::Host::call_local`] named an actor this host does not run.
    #[error("actor {actor:?} does not run on this host")]
    NotHere {
        /// The actor id asked for.
        actor: String,
    },
    /// The host is shutting down.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// This runtime serves no host calls (benchmarks, tests of one actor).
    #[error("actor {origin} called {namespace} {operation}, but this runtime serves no host calls")]
    Unsupported {
        /// The calling actor.
        origin: String,
        /// What it called.
        namespace: String,
        /// The operation.
        operation: String,
    },
}

/// Why a control request (start or stop an actor or a provider, ...) failed on
/// this host. Its [`Display`](std::fmt::Display) is what goes back on the wire in
/// [`lattice::ctl::CtlReply::Error`], so each names the actor, provider, host or
/// module once.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request body is not the JSON the operation expects.
    #[error("malformed {request} request: {reason}")]
    Malformed {
        /// The request type, e.g. `StartActor`.
        request: &'static str,
        /// The JSON decoder's message.
        reason: String,
    },
    /// The host is running as many starts and stops as it takes at once
    /// (32 per control subscription); the
    /// request was refused at once. Retrying later may work.
    #[error(
        "host {host} is busy: {limit} control requests (starts and stops) in progress; retry later"
    )]
    Busy {
        /// This host's name.
        host: String,
        /// Requests it runs at once.
        limit: usize,
    },
    /// The reply would not fit in one NATS message.
    #[error(
        "the reply is {size} bytes, more than the NATS max payload of {max} bytes; \
         raise max_payload in the server configuration"
    )]
    ReplyTooLarge {
        /// Bytes of the encoded reply.
        size: usize,
        /// The server's max payload.
        max: usize,
    },
    /// The subject names no operation this host knows.
    #[error("unknown control operation {0:?}")]
    UnknownOperation(String),
    /// A start asked for no replicas.
    #[error("replicas for actor {actor} must be at least 1")]
    NoReplicas {
        /// The actor.
        actor: ActorId,
    },
    /// A start would take an actor past the replicas one host runs.
    #[error(
        "actor {actor} may run at most {} replicas on host {host}; it runs {running} and {asked} more were asked for",
        lattice::app::MAX_REPLICAS
    )]
    TooManyReplicas {
        /// The actor.
        actor: ActorId,
        /// This host's name.
        host: String,
        /// Replicas it runs now.
        running: u32,
        /// Replicas the request adds.
        asked: u32,
    },
    /// A scale request asked for more replicas than one host runs.
    #[error(
        "actor {actor} may run at most {} replicas on host {host}; {asked} were asked for",
        lattice::app::MAX_REPLICAS
    )]
    ScaleTooLarge {
        /// The actor.
        actor: ActorId,
        /// This host's name.
        host: String,
        /// Replicas asked for.
        asked: u32,
    },
    /// The actor runs here already, from another module.
    #[error(
        "actor {actor} already runs module {running} on host {host}; stop it before starting {wanted}"
    )]
    OtherModule {
        /// The actor.
        actor: ActorId,
        /// The (short) digest it runs.
        running: String,
        /// This host's name.
        host: String,
        /// The (short) digest asked for.
        wanted: String,
    },
    /// The lattice's artifact store could not be opened.
    #[error("could not open the artifact store: {0}")]
    ArtifactStore(#[source] lattice::Error),
    /// The module could not be fetched from the artifact store.
    #[error("could not fetch actor {actor} ({reference}): {source}")]
    Fetch {
        /// The actor.
        actor: ActorId,
        /// The reference it is started from.
        reference: String,
        /// The store's error (missing, corrupt, timed out...).
        #[source]
        source: Box<lattice::Error>,
    },
    /// The module's claims are unreadable, or the issuer policy refuses it.
    #[error(transparent)]
    Refused(#[from] crate::trust::StartRefused),
    /// The module is not a usable actor, or could not be compiled or
    /// instantiated (the error names the actor).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The actor's rpc subscription failed.
    #[error("could not subscribe actor {actor}: {reason}")]
    Subscribe {
        /// The actor.
        actor: ActorId,
        /// The NATS error.
        reason: String,
    },
    /// A stop named an actor this host does not run.
    #[error("actor {actor} is not running on host {host} ({host_id})")]
    ActorNotHere {
        /// The actor.
        actor: ActorId,
        /// This host's name.
        host: String,
        /// This host's id.
        host_id: HostId,
    },
    /// The host is stopping: it starts and updates nothing more.
    #[error("host {host} is stopping; start the actor on another host")]
    HostClosing {
        /// This host's name.
        host: String,
    },
    /// An update found the actor stopped, or updated by another request,
    /// once its new module was ready.
    #[error(
        "actor {actor} changed on host {host} while its update was prepared (stopped or updated meanwhile); nothing was replaced"
    )]
    ActorChanged {
        /// The actor.
        actor: ActorId,
        /// This host's name.
        host: String,
    },
    /// A provider with this id runs here already.
    #[error("provider {provider} already runs on host {host}")]
    ProviderRunning {
        /// The provider id.
        provider: ProviderId,
        /// This host's name.
        host: String,
    },
    /// No provider of that name is built into the host.
    #[error("unknown built-in provider {reference}; built-ins are: {known}")]
    UnknownBuiltin {
        /// What was asked for.
        reference: ProviderRef,
        /// The built-ins, comma separated.
        known: String,
    },
    /// The provider failed to start (another with its id answers in the lattice,
    /// its backend is unreachable, ...); the provider's message names it.
    #[error(transparent)]
    ProviderStart(#[from] lattice_provider::ProviderError),
    /// A stop named a provider this host does not run.
    #[error("provider {provider} is not running on host {host} ({host_id})")]
    ProviderNotHere {
        /// The provider id.
        provider: ProviderId,
        /// This host's name.
        host: String,
        /// This host's id.
        host_id: HostId,
    },
}
