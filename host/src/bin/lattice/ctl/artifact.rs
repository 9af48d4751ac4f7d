//! An actor reference (a local file, a digest or a name:tag) as the lattice's
//! artifact store knows it.

use std::path::Path;

use anyhow::Context;
use lattice::{client::CtlClient, digest::Digest};

/// A module read from a local file: hashed here, so a start can be sent while
/// it is uploaded.
pub(super) struct LocalModule {
    pub(super) bytes: Vec<u8>,
    pub(super) digest: Digest,
    /// The contracts its claims list, for the auction.
    pub(super) contracts: Vec<String>,
}

impl LocalModule {
    /// Reads `reference` when it names a local file (it exists, ends in
    /// `.wasm` or has a `/`); `None` for a digest or `name:tag`.
    pub(super) fn read(reference: &str) -> anyhow::Result<Option<Self>> {
        let path = Path::new(reference);
        if !(path.exists() || reference.ends_with(".wasm") || reference.contains('/')) {
            return Ok(None);
        }
        let bytes = std::fs::read(path).with_context(|| format!("could not read {reference}"))?;
        Ok(Some(LocalModule {
            digest: Digest::of(&bytes),
            contracts: contracts_of(&bytes),
            bytes,
        }))
    }

    /// Stores the module in the lattice's artifact store, tagged
    /// `<file stem>:latest`; `true` when the store did not have it yet.
    pub(super) async fn upload(&self, ctl: &CtlClient, reference: &str) -> anyhow::Result<bool> {
        let stem = crate::default_actor_id(reference)?;
        let store = ctl
            .artifacts()
            .await
            .context("could not open the lattice's artifact store")?;
        let done = store
            .upload(&self.bytes, Some((stem.as_str(), "latest")))
            .await
            .with_context(|| format!("could not upload {reference}"))?;
        Ok(done.uploaded)
    }
}

/// A digest or `name:tag` already in the store, and the contracts its claims
/// list.
pub(super) async fn resolve(
    ctl: &CtlClient,
    reference: &str,
) -> anyhow::Result<(Digest, Vec<String>)> {
    let store = ctl
        .artifacts()
        .await
        .context("could not open the lattice's artifact store")?;
    let digest = store.resolve(reference).await?;
    let bytes = store.get(&digest).await?;
    Ok((digest, contracts_of(&bytes)))
}

fn contracts_of(bytes: &[u8]) -> Vec<String> {
    lattice::claims::read(bytes)
        .ok()
        .flatten()
        .map(|c| c.contracts)
        .unwrap_or_default()
}

/// What inventories show: a file's name rather than its full local path.
pub(super) fn display_reference(reference: &str) -> String {
    let path = Path::new(reference);
    if path.exists()
        && let Some(name) = path.file_name()
    {
        return name.to_string_lossy().into_owned();
    }
    reference.to_string()
}
