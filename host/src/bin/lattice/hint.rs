//! The command that would fix an error, printed after it (`hint: …`).
//!
//! Read from the typed errors in the chain (only a refused connection is told
//! from an unreachable server by the server's words, which async-nats passes
//! on as text); errors written in the CLI itself carry their fix in the
//! message.

use lattice::{Error, auth::AuthError};

/// What to run (or do) about `err`, when there is one thing to say.
pub fn fix_for(err: &anyhow::Error) -> Option<&'static str> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::NoResponders { what, .. } if what.starts_with("actor") => Some(
                    "`lattice ctl get inventory` lists the actors that run; `lattice ctl start actor FILE.wasm` starts one",
                ),
                Error::NoResponders { .. } | Error::HostNotFound { .. } => {
                    Some("`lattice ctl get hosts` lists the hosts that answer")
                }
                Error::AmbiguousHost { .. } => {
                    Some("`lattice ctl get hosts` shows the ids to use instead")
                }
                Error::ArtifactNotFound { .. } => Some(
                    "`lattice ctl start actor FILE.wasm` uploads a module; its tag is NAME:latest",
                ),
                _ => None,
            };
        }
        if let Some(AuthError::Connect { reason, .. }) = cause.downcast_ref::<AuthError>() {
            return Some(if reason.contains("authorization") {
                "pass a credential of this lattice, e.g. `--nats-nkey DIR/admin.nk` from `lattice auth init`"
            } else {
                "start a lattice with `lattice up`, or point --nats-url (LATTICE_NATS_URL) at a running one"
            });
        }
        if let Some(lattice_host::nats::NatsError::Connect { .. }) =
            cause.downcast_ref::<lattice_host::nats::NatsError>()
        {
            return Some(
                "start a lattice with `lattice up`, or point --nats-url (LATTICE_NATS_URL) at a running one",
            );
        }
        None
    })
}
