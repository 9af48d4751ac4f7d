//! The shared language of a Lattice mesh.
//!
//! Every process that takes part in a lattice — hosts, the `lattice` command-line
//! client, providers written in any language — agrees on what is in this crate:
//!
//! * [`id`]: the names of lattices, hosts and actors, checked so they are safe NATS
//!   subject tokens;
//! * [`subject`]: the NATS subjects of the control interface, events and the data plane;
//! * [`ctl`] and [`event`]: the JSON messages of the control plane;
//! * [`rpc`]: the msgpack envelope of an invocation on the data plane;
//! * [`placement`]: which hosts take new actor replicas and providers;
//! * [`digest`]: sha256 content addresses of actor modules;
//! * [`claims`]: what an actor module may do, embedded in a custom section;
//! * [`link`] and [`contracts`]: links between actors and providers, and the
//!   msgpack payloads of every capability contract;
//! * [`auth`]: NATS credentials and TLS, shared by hosts, the CLI and providers;
//! * [`client`]: a typed client for the control interface, used by the CLI and by tests
//!   (feature `client`, on by default; without it the crate is plain types and
//!   builds for `wasm32-wasip1`);
//! * [`process`]: the few process helpers every binary needs (host name,
//!   executables on `$PATH`, waiting for SIGINT/SIGTERM; feature `client`).
//!
//! The crate deliberately knows nothing of wasmtime, and of processes only
//! those helpers.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), lattice::Error> {
//! use lattice::{client::CtlClient, id::LatticeId};
//!
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let ctl = CtlClient::new(nats, LatticeId::default());
//! for host in ctl.ping_hosts(std::time::Duration::from_millis(500)).await? {
//!     println!("{} {}", host.id, host.name);
//! }
//! let reply = ctl.call("hello", "SayHello", &"world").await?;
//! let text: String = rmp_serde::from_slice(&reply)?;
//! assert_eq!(text, "Hello, world!");
//! # Ok(()) }
//! ```

pub mod app;
#[cfg(feature = "client")]
pub mod app_store;
#[cfg(feature = "client")]
pub mod artifact;
#[cfg(feature = "client")]
pub mod auth;
pub mod claims;
#[cfg(feature = "client")]
pub mod client;
pub mod contracts;
pub mod ctl;
pub mod digest;
pub mod error;
pub mod event;
#[cfg(feature = "client")]
pub mod host_registry;
pub mod id;
pub mod link;
#[cfg(feature = "client")]
pub mod link_store;
pub mod placement;
#[cfg(feature = "client")]
pub mod process;
pub mod rpc;
pub mod subject;
pub mod trace;

pub use error::Error;

/// The version of this crate, reported by hosts in heartbeats and `ctl get hosts`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
