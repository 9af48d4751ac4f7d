//! Typed errors of the host runtime.

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
    /// The actor is stopping or stopped on this host.
    #[error("actor {actor} is stopping on this host")]
    Stopped {
        /// Actor id.
        actor: String,
    },
    /// A fresh instance could not be created.
    #[error("{0}")]
    Instantiate(String),
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
