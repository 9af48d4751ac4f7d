//! The CLI on its own, with no lattice: shell completions.

use anyhow::{Result, ensure};

use crate::common::run_cli;

#[tokio::test]
async fn completions_for_each_shell_and_a_clear_error_for_others() -> Result<()> {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef lattice"),
        ("fish", "complete -c lattice"),
    ] {
        let out = run_cli(&["completions", shell], &[]).await?.success()?;
        ensure!(
            out.stdout.contains(marker) && out.stdout.contains("metrics-addr"),
            "{shell} completions lack {marker:?} or the `up` flags:\n{}",
            &out.stdout[..out.stdout.len().min(400)]
        );
    }
    let out = run_cli(&["completions", "tcsh"], &[]).await?.failure()?;
    out.stderr_has(&["tcsh", "bash", "zsh", "fish"])?;
    Ok(())
}
