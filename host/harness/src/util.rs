//! Small helpers shared by the harness and by tests: ids, ports, deadline
//! polling, stopping child processes, finding executables.

use std::fmt::Display;
use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Returns a fresh lattice id such as `test-3f2a9c0d5e7b4a18`, unique per call.
///
/// It is a valid NATS subject token and KV bucket name fragment (only
/// `[a-z0-9-]`), so every test can have a lattice of its own on a shared server.
pub fn unique_lattice_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("test-{}", &id[..16])
}

/// Returns a TCP port on `127.0.0.1` that was free at the time of the call.
///
/// The port is found by binding port 0 and releasing it, so another process may
/// take it before it is used; [`crate::NatsServer`] retries with a new port when
/// that happens.
///
/// # Panics
///
/// If no local port can be bound at all (the machine is out of ports).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("lattice-harness: could not bind 127.0.0.1:0 to find a free port")
}

/// Polls `check` until it yields a value, fails, or `timeout` elapses.
///
/// `check` returns `Ok(Some(value))` when the awaited condition holds (the value
/// is returned), `Ok(None)` when it does not hold yet (it is polled again after a
/// short, growing pause: 10 ms up to 200 ms), and `Err(_)` for a failure that
/// polling cannot fix (returned at once). A single call of `check` that outlives
/// the deadline is cancelled. On timeout the error names `what` and the timeout,
/// e.g. `timed out after 5s waiting for actor "echo" to be running`.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> anyhow::Result<()> {
/// use std::time::Duration;
/// let reply = lattice_harness::wait_until("an answer on svc.ping", Duration::from_secs(5), || {
///     let client = client.clone();
///     async move {
///         match client.request("svc.ping", "".into()).await {
///             Ok(msg) => Ok(Some(msg.payload)),
///             Err(_) => Ok(None), // no responder yet: try again
///         }
///     }
/// })
/// .await?;
/// # let _ = reply; Ok(()) }
/// ```
pub async fn wait_until<T, F, Fut>(what: impl Display, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e.context(format!("while waiting for {what}"))),
            Err(_) => break,
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep_until((now + pause).min(deadline)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Blocking twin of [`wait_until`] for the harness's synchronous parts.
pub(crate) fn wait_until_blocking<T>(
    what: impl Display,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().with_context(|| format!("while waiting for {what}"))? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Asks `child` to shut down (SIGTERM) and waits up to `grace` for it to exit,
/// returning its exit status. If it does not exit in time it is killed
/// (SIGKILL) and reaped, and the error names `what` and the timeout. A child
/// that has already exited just reports its status.
pub async fn terminate_child(
    child: &mut Child,
    what: impl Display,
    grace: Duration,
) -> Result<ExitStatus> {
    if let Some(status) = child
        .try_wait()
        .with_context(|| format!("polling {what}"))?
    {
        return Ok(status);
    }
    let pid = libc::pid_t::try_from(child.id()).with_context(|| format!("pid of {what}"))?;
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is that of
    // our un-reaped child, so it cannot have been reused by another process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!("sending SIGTERM to {what} (pid {pid}): {err}");
    }
    wait_for_child_exit(child, what, grace).await
}

/// Waits up to `timeout` for `child` to exit on its own and returns its exit
/// status. On timeout it is killed (SIGKILL) and reaped, and the error names
/// `what` and the timeout.
pub async fn wait_for_child_exit(
    child: &mut Child,
    what: impl Display,
    timeout: Duration,
) -> Result<ExitStatus> {
    let waited = wait_until(format!("{what} to exit"), timeout, || {
        let status = child.try_wait().context("polling the process");
        async move { status }
    })
    .await;
    if waited.is_err() {
        // An error here means it exited meanwhile; the wait reaps it either way.
        let _ = child.kill();
        let _ = child.wait();
    }
    waited
}

pub(crate) use lattice::process::{find_in_path, find_on_path};

/// The last `n` lines of a text file (lossy UTF-8), or a note saying why not.
pub(crate) fn file_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

/// Builds that run at most once per process and key: concurrent callers for
/// one key wait for its one build and share its result, a failure included
/// (its message kept, so every caller sees the same error). Builds of
/// different keys run in parallel.
pub(crate) struct OncePerProcess<K> {
    cells: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<K, BuildCell>>>,
}

/// One build's result, shared by every caller for its key (errors as text).
type BuildCell = std::sync::Arc<std::sync::OnceLock<Result<std::path::PathBuf, String>>>;

impl<K: std::hash::Hash + Eq> OncePerProcess<K> {
    /// No builds yet.
    pub(crate) const fn new() -> Self {
        OncePerProcess {
            cells: std::sync::OnceLock::new(),
        }
    }

    /// The result of `build` for `key`, built now unless this process built
    /// it (or is building it) already.
    pub(crate) fn get(
        &self,
        key: K,
        build: impl FnOnce() -> Result<std::path::PathBuf>,
    ) -> Result<std::path::PathBuf> {
        let cell = {
            let mut cells = self
                .cells
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::sync::Arc::clone(cells.entry(key).or_default())
        };
        // The map lock is released: only callers for this key wait here.
        cell.get_or_init(|| build().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// Removes from `cmd` the variables a nested cargo must not inherit from the
/// outer build (target, flags and jobserver meant for the host target).
pub(crate) fn clean_cargo_env(cmd: &mut std::process::Command) {
    for var in [
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lattice_ids_are_unique_subject_tokens() {
        let a = unique_lattice_id();
        let b = unique_lattice_id();
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[tokio::test]
    async fn terminate_child_sends_sigterm_then_kills() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::{Command, Stdio};
        let spawn = |script: &str| {
            Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        };
        // Exits on SIGTERM: its status says so.
        let mut child = spawn("exec sleep 30");
        let status = terminate_child(&mut child, "sleep", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
        // Already exited: just its status.
        let again = terminate_child(&mut child, "sleep", Duration::from_secs(10)).await;
        assert_eq!(again.unwrap(), status);

        // Ignores SIGTERM: killed after the grace period, and reaped.
        let mut child = spawn("trap '' TERM; echo ready; while :; do sleep 0.05; done");
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
        let err = terminate_child(&mut child, "stubborn", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("stubborn to exit"), "{err:#}");
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
    }

    #[tokio::test]
    async fn wait_until_returns_value_and_names_what_on_timeout() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { Ok((n >= 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        let err = wait_until("godot", Duration::from_millis(50), || async {
            Ok(None::<()>)
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("waiting for godot"), "{err}");

        let err = wait_until("a failing check", Duration::from_secs(5), || async {
            Err::<Option<()>, _>(anyhow::anyhow!("boom"))
        })
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("boom"), "{err:#}");
    }
}
