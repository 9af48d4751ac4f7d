//! A Lattice host (`lattice up ...`) run as a child process.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tempfile::TempDir;

use crate::util::{file_tail, terminate_child, wait_for_child_exit};

/// How long [`HostProcess::spawn`] waits for the host's `host_started` event
/// unless [`HostOptions::ready_timeout`] says otherwise.
pub const HOST_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`HostProcess::terminate`] waits for the host to exit after SIGTERM.
pub const HOST_TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`HostProcess`] is started: `lattice up --nats-url URL --lattice LID
/// --name NAME [--label K=V]... [ARGS]...` with extra environment variables.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// NATS URL passed as `--nats-url`, e.g. [`crate::NatsServer::url`].
    pub nats_url: String,
    /// Lattice id passed as `--lattice`, e.g. [`crate::unique_lattice_id`].
    pub lattice: String,
    /// Host name passed as `--name`; readiness waits for a `host_started`
    /// event with this name, so it should be unique within the lattice.
    pub name: String,
    /// Labels, each passed as `--label K=V`.
    pub labels: BTreeMap<String, String>,
    /// Further arguments appended after the ones above.
    pub args: Vec<String>,
    /// Environment variables set for the host (on top of the test's own).
    pub env: Vec<(String, String)>,
    /// How long to wait for readiness; `None` means [`HOST_READY_TIMEOUT`].
    pub ready_timeout: Option<Duration>,
    /// Credentials of the harness's own connection that waits for the host's
    /// `host_started` event (on a server with auth, e.g. an observer's nkey).
    pub watch_auth: Option<lattice::auth::NatsAuth>,
}

impl HostOptions {
    /// Options for a host named `name` in lattice `lattice` on `nats_url`.
    pub fn new(
        nats_url: impl Into<String>,
        lattice: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        HostOptions {
            nats_url: nats_url.into(),
            lattice: lattice.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Adds a `--label key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Appends an extra command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets the credentials the harness uses to watch for `host_started`; they
    /// must allow subscribing to the lattice's events and publishing
    /// `lattice.{lid}.ctl.ping.hosts` (the observer role does).
    pub fn watch_auth(mut self, auth: lattice::auth::NatsAuth) -> Self {
        self.watch_auth = Some(auth);
        self
    }

    /// Sets an environment variable for the host process.
    pub fn env_var(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running `lattice up` host process, ready once it announced itself.
///
/// [`spawn`](Self::spawn) subscribes to `lattice.{lattice}.evt.host_started`
/// *before* starting the process and returns once the host published its
/// `host_started` CloudEvent with `data.name` equal to the requested name, so
/// there is no race and no sleeping. It fails early, with the host's log, if the
/// process exits first, and after the ready timeout (30 s by default).
///
/// The host's stdout and stderr go to a log file in a temporary directory of its
/// own ([`log`](Self::log), [`log_path`](Self::log_path)).
///
/// Dropping it kills the host (SIGKILL) and reaps it; if the thread is panicking
/// (a failing test) the tail of the host log is printed to stderr first. Only
/// the host process itself is signalled, not processes it started.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    host_id: String,
    name: String,
    started_event: serde_json::Value,
    // Declared last so that it is removed after the child is gone.
    dir: TempDir,
}

impl HostProcess {
    /// Starts `bin up ...` as described by `opts` and waits for its
    /// `host_started` event. Tests pass `env!("CARGO_BIN_EXE_lattice")` as `bin`.
    pub async fn spawn(bin: impl AsRef<Path>, opts: &HostOptions) -> Result<Self> {
        let bin = bin.as_ref();
        if opts.name.is_empty() || opts.lattice.is_empty() {
            bail!("HostOptions needs a non-empty `name` and `lattice`");
        }
        let dir = tempfile::Builder::new()
            .prefix("lattice-host-")
            .tempdir()
            .context("creating a temporary directory for the host")?;

        // Subscribe before spawning, and make sure the server has processed the
        // subscription, so that the event cannot be published before we listen.
        let client = match &opts.watch_auth {
            None => async_nats::connect(&opts.nats_url)
                .await
                .with_context(|| format!("connecting to NATS at {}", opts.nats_url))?,
            Some(auth) => lattice::auth::connect(&opts.nats_url, "lattice-harness", auth, None)
                .await
                .with_context(|| format!("connecting to NATS at {}", opts.nats_url))?,
        };
        let subject = format!("lattice.{}.evt.host_started", opts.lattice);
        let mut events = client
            .subscribe(subject.clone())
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        // With credentials the harness may publish only lattice subjects: a
        // host ping is a round trip too (no responders, or hosts answering).
        let sync_subject = opts
            .watch_auth
            .as_ref()
            .map(|_| format!("lattice.{}.ctl.ping.hosts", opts.lattice));
        sync_with_server(&client, sync_subject)
            .await
            .context("registering the host_started subscription")?;

        let log_path = dir.path().join("host.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating log file handle")?;
        let mut cmd = Command::new(bin);
        cmd.arg("up")
            .args(["--nats-url", &opts.nats_url])
            .args(["--lattice", &opts.lattice])
            .args(["--name", &opts.name]);
        for (key, value) in &opts.labels {
            cmd.arg("--label").arg(format!("{key}={value}"));
        }
        cmd.args(&opts.args)
            .env("NO_COLOR", "1")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning host {}", bin.display()))?;

        // From here on, dropping `host` (on any error) kills the process.
        let mut host = HostProcess {
            child,
            host_id: String::new(),
            name: opts.name.clone(),
            started_event: serde_json::Value::Null,
            dir,
        };

        let timeout = opts.ready_timeout.unwrap_or(HOST_READY_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut exit_check = tokio::time::interval(Duration::from_millis(50));
        exit_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let event = loop {
            tokio::select! {
                biased;
                msg = events.next() => {
                    let Some(msg) = msg else {
                        bail!(
                            "NATS subscription to {subject} ended before host {:?} started; host log:\n{}",
                            opts.name,
                            host.log_tail(60)
                        );
                    };
                    // Events of other hosts, or payloads that are not JSON, are skipped.
                    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                        && event["data"]["name"].as_str() == Some(opts.name.as_str())
                    {
                        break event;
                    }
                }
                _ = exit_check.tick() => {
                    if let Some(status) = host.child.try_wait().context("polling host process")? {
                        bail!(
                            "host {:?} exited with {status} before publishing host_started; host log:\n{}",
                            opts.name,
                            host.log_tail(60)
                        );
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    bail!(
                        "timed out after {timeout:?} waiting for host {:?} to publish host_started on {subject}; host log:\n{}",
                        opts.name,
                        host.log_tail(60)
                    );
                }
            }
        };

        host.host_id = event["data"]["host_id"]
            .as_str()
            .or_else(|| event["source"].as_str())
            .filter(|id| !id.is_empty())
            .with_context(|| format!("host_started event has no data.host_id: {event}"))?
            .to_owned();
        host.started_event = event;
        Ok(host)
    }

    /// The host id announced in the `host_started` event (`data.host_id`).
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The host name given in [`HostOptions::name`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id of the host.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole `host_started` CloudEvent the host published, for assertions
    /// on e.g. `data.labels` or `data.version`.
    pub fn started_event(&self) -> &serde_json::Value {
        &self.started_event
    }

    /// The file holding the host's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("host.log")
    }

    /// The host's output so far (stdout and stderr, lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the host's output.
    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log_path(), n)
    }

    /// The exit status if the host has exited, `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("polling host process")
    }

    /// Kills the host abruptly (SIGKILL, like a crash) and reaps it.
    /// Killing a host that has already exited does nothing.
    pub fn kill(&mut self) -> Result<()> {
        if self.try_wait()?.is_none() {
            // An error here means it exited meanwhile; wait() below tells.
            let _ = self.child.kill();
        }
        self.child.wait().context("reaping host process")?;
        Ok(())
    }

    /// Asks the host to shut down (SIGTERM) and waits up to 10 s for it to exit,
    /// returning its exit status. If it does not exit in time it is killed and
    /// an error with its log is returned. A host that already exited just
    /// reports its status.
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        let what = format!("host {:?}", self.name);
        let stopped = terminate_child(&mut self.child, what, HOST_TERMINATE_TIMEOUT).await;
        self.with_log(stopped)
    }

    /// Waits up to `timeout` for the host to exit on its own (e.g. after a stop
    /// command) and returns its exit status. On timeout the host is killed and
    /// an error with its log is returned.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("host {:?}", self.name);
        let exited = wait_for_child_exit(&mut self.child, what, timeout).await;
        self.with_log(exited)
    }

    fn with_log(&self, waited: Result<ExitStatus>) -> Result<ExitStatus> {
        waited.map_err(|e| e.context(format!("host log:\n{}", self.log_tail(60))))
    }
}

/// Waits for a round trip to the server on `client`'s connection, so that every
/// command sent before (such as a SUB) has been processed by the server.
///
/// `Client::flush` only writes the socket buffer; a request is answered (with
/// "no responders") only after the server has read everything sent before it.
async fn sync_with_server(client: &async_nats::Client, subject: Option<String>) -> Result<()> {
    let subject = subject
        .unwrap_or_else(|| format!("_lattice_harness.sync.{}", uuid::Uuid::new_v4().simple()));
    let request = client.request(subject, "".into());
    match tokio::time::timeout(Duration::from_secs(10), request).await {
        Err(_) => bail!("no answer from the NATS server within 10s"),
        // Ok (someone answered) or "no responders": either way the server replied.
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(e).context("round trip to the NATS server"),
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- host {:?} ({}) log tail ----\n{}\n---- end of host log ----",
                self.name,
                self.host_id,
                self.log_tail(60)
            );
        }
        let _ = self.kill();
    }
}
