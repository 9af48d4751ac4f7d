//! An actor reference (a local file, a digest or a name:tag) as the lattice's
//! artifact store knows it.

use std::path::Path;

use anyhow::Context;
use lattice::{client::CtlClient, digest::Digest};

use crate::output::spinner;

/// A local file is pushed to the lattice's artifact store (tagged `<stem>:latest`);
/// anything else must already be there. Also returns the contracts the module's
/// claims list, for the auction.
pub(super) async fn push_or_resolve(
    ctl: &CtlClient,
    reference: &str,
) -> anyhow::Result<(Digest, Vec<String>)> {
    let path = Path::new(reference);
    let looks_like_file = path.exists() || reference.ends_with(".wasm") || reference.contains('/');
    let store = ctl
        .artifacts()
        .await
        .context("could not open the lattice's artifact store")?;
    let contracts_of = |bytes: &[u8]| {
        lattice::claims::read(bytes)
            .ok()
            .flatten()
            .map(|c| c.contracts)
            .unwrap_or_default()
    };
    if !looks_like_file {
        let digest = store.resolve(reference).await?;
        let bytes = store.get(&digest).await?;
        return Ok((digest, contracts_of(&bytes)));
    }
    let bytes = std::fs::read(path).with_context(|| format!("could not read {reference}"))?;
    let stem = crate::default_actor_id(reference)?;
    let pb = spinner(format!(
        "uploading {} ({:.1} KiB)",
        path.display(),
        bytes.len() as f64 / 1024.0
    ));
    let digest = store
        .put(&bytes, Some((stem.as_str(), "latest")))
        .await
        .with_context(|| format!("could not upload {reference}"));
    pb.finish_and_clear();
    Ok((digest?, contracts_of(&bytes)))
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
