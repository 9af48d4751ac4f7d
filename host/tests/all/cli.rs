//! The CLI itself: shell completions, and errors that end with the command that fixes them.

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

#[tokio::test]
async fn errors_end_with_the_command_that_fixes_them() -> Result<()> {
    // Nothing listens on port 1: start a lattice.
    let out = run_cli(
        &["--nats-url", "nats://127.0.0.1:1", "ctl", "get", "hosts"],
        &[],
    )
    .await?
    .failure()?;
    out.stderr_has(&["could not connect", "hint:", "lattice up", "--nats-url"])?;

    let lat = crate::common::TestLattice::start().await?;
    let _host = lat.host("hint-host", &[]).await?;
    for (args, fix) in [
        (&["call", "nobody", "Op"][..], "lattice ctl get inventory"),
        (
            &["ctl", "get", "inventory", "nohost"][..],
            "lattice ctl get hosts",
        ),
        (
            &["ctl", "start", "actor", "nosuchtag:v9"][..],
            "lattice ctl start actor FILE.wasm",
        ),
        (
            &["ctl", "stop", "actor", "nobody"][..],
            "lattice ctl get inventory",
        ),
        (
            &["ctl", "link", "del", "a", "lattice:keyvalue"][..],
            "lattice ctl get links",
        ),
        (&["app", "status", "nope"][..], "lattice app list"),
    ] {
        lat.cli(args).await?.failure()?.stderr_has(&[fix])?;
    }
    Ok(())
}
