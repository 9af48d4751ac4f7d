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
