//! A cluster of real `nats-server` processes with clustered JetStream, for
//! tests of what happens when one server of the mesh is lost.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::nats::{find_nats_server, read_from};
use crate::util::{file_tail, free_port, wait_until_blocking};

/// How long [`NatsCluster::start`] and [`NatsCluster::restart`] wait for the
/// cluster to be ready (every server healthy, JetStream meta leader elected).
///
/// On loopback a 3-server cluster forms in 0.5 to 5 s (the first JetStream
/// meta leader election sometimes waits out a raft election timeout), and a
/// restarted server rejoins in 0.7 to 4 s (its `/healthz` waits until every
/// replicated stream it holds has caught up); the deadline leaves room for
/// loaded CI machines.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `--cluster_name` every [`NatsCluster`] uses.
pub const CLUSTER_NAME: &str = "lattice-test";

/// How many fresh port sets [`NatsCluster::start`] tries when a port it picked
/// was taken by another process before a server could bind it.
const PORT_ATTEMPTS: usize = 5;

/// Marker written to a server's log before each start, so that readiness and
/// port-race checks only look at the lines of the current process.
const START_MARKER: &str = "==== lattice-harness: starting";

/// One server of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
    /// Length of the log file before the current process was started.
    log_offset: u64,
}

/// `n` `nats-server` processes on `127.0.0.1` forming one cluster
/// (`--cluster_name lattice-test`) with JetStream, each with its own client,
/// cluster and monitoring port, store directory and log file.
///
/// Every server is started as
///
/// ```text
/// nats-server -js -a 127.0.0.1 -p PORT -m MONITOR_PORT --server_name nI -sd DIR/nI/store
///     --cluster nats://127.0.0.1:CLUSTER_PORT --cluster_name lattice-test
///     --routes nats://127.0.0.1:C0,nats://127.0.0.1:C1,...
/// ```
///
/// (the route list names every server, itself included; a server ignores the
/// route to itself). Server `i` is named `n{i}`: JetStream reports stream
/// leaders and replicas by server name, see [`index_of`](Self::index_of).
///
/// Like [`crate::NatsServer`] the API is synchronous and blocks while waiting.
/// The cluster is *ready* when, for every running server: its process is alive
/// and logged `Server is ready`, `GET /healthz` answers 200 (in a cluster that
/// means JetStream is enabled, current with an elected meta leader, and every
/// replicated stream it holds is current), its `/jsz` names a *running* meta
/// leader (survivors keep naming a killed one for a while), all running
/// servers agree on it, and its `/routez` shows routes to every other running
/// server.
///
/// Dropping it kills every server (SIGKILL), reaps them and removes the
/// temporary directory; if the thread is panicking, the tail of each server's
/// log is printed to stderr first.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    // Declared last so that it is removed after the children are gone.
    dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` clustered servers on free ports and waits (up to
    /// [`CLUSTER_READY_TIMEOUT`]) until the cluster is ready.
    ///
    /// The binary comes from `$LATTICE_NATS_SERVER` or `PATH`. When another
    /// process grabs one of the picked ports first, the whole cluster is started
    /// again on fresh ports (the route list has to name them all).
    pub fn start(n: usize) -> Result<Self> {
        if n == 0 {
            bail!("a NatsCluster needs at least one server");
        }
        let bin = find_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("lattice-nats-cluster-")
            .tempdir()
            .context("creating a temporary directory for the nats cluster")?;
        let nodes = (0..n)
            .map(|i| Node {
                name: format!("n{i}"),
                port: 0,
                cluster_port: 0,
                monitor_port: 0,
                child: None,
                log_offset: 0,
            })
            .collect();
        let mut cluster = NatsCluster { bin, nodes, dir };
        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.assign_fresh_ports();
            let started = (0..n).try_for_each(|i| cluster.spawn(i)).and_then(|()| {
                cluster.wait_ready_for(
                    format!("a nats cluster of {n} to be ready"),
                    CLUSTER_READY_TIMEOUT,
                )
            });
            match started {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let raced = (0..n).any(|i| cluster.lost_port_race(i));
                    cluster.kill_all();
                    if raced && attempt < PORT_ATTEMPTS {
                        // Forget the half-formed cluster: its JetStream meta
                        // state names peers on the old ports.
                        for i in 0..n {
                            let _ = std::fs::remove_dir_all(cluster.store_dir(i));
                        }
                        continue;
                    }
                    return Err(e.context(format!(
                        "the nats cluster of {n} did not become ready\n{}",
                        cluster.all_log_tails(30)
                    )));
                }
            }
        }
    }

    /// Number of servers (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always `false`: a cluster has at least one server.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URLs of all servers, `nats://127.0.0.1:PORT`, in server order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Client URL of server `i`. Panics if `i >= len()`, as do all `i` accessors.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// All client URLs joined by commas, the usual way to write a seed list in
    /// configuration (`--nats-url a,b,c`).
    ///
    /// async-nats does **not** accept this string as is: `async_nats::connect`
    /// parses a `&str` as a single URL and fails. Split it first:
    /// `async_nats::connect(seed.split(',').collect::<Vec<_>>())`.
    pub fn seed_urls(&self) -> String {
        self.urls().join(",")
    }

    /// Client port of server `i`; it stays the same across restarts.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Route (cluster) port of server `i`.
    pub fn cluster_port(&self, i: usize) -> u16 {
        self.nodes[i].cluster_port
    }

    /// HTTP monitoring base URL of server `i`, `http://127.0.0.1:PORT`.
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// The `--server_name` of server `i`: `n{i}`.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the server called `name` (as JetStream reports stream
    /// leaders, e.g. `stream.info().cluster.leader`), if it is one of ours.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The index of the server with client port `port` (e.g. from
    /// `client.server_info().port`), if it is one of ours.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }

    /// JetStream store directory of server `i` (kept across restarts).
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name).join("store")
    }

    /// Log file of server `i` (stdout and stderr, across restarts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}-nats-server.log", self.nodes[i].name))
    }

    /// The last `n` lines of server `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        file_tail(&self.log_path(i), n)
    }

    /// Process id of server `i`, or `None` while it is killed.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Whether server `i` is running (not killed and not exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        match &mut self.nodes[i].child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills server `i` abruptly (SIGKILL, like a crash) and reaps it. Its
    /// ports, store directory and log are kept for [`restart`](Self::restart).
    /// Killing a killed server does nothing. Does not wait for the survivors to
    /// elect new leaders; see [`wait_ready`](Self::wait_ready).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            // kill() fails only if the process has already exited: fine.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("reaping nats-server {}", self.nodes[i].name))?;
        }
        Ok(())
    }

    /// Starts server `i` again (killing it first if it runs) with the same
    /// ports and store directory, and waits (up to [`CLUSTER_READY_TIMEOUT`])
    /// until it has rejoined: it and every other running server are ready (see
    /// the type docs; the restarted server's `/healthz` only answers 200 once
    /// its JetStream is current with the meta leader and its streams).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.spawn(i).and_then(|()| {
                let what = format!("nats-server {} to rejoin the cluster", self.nodes[i].name);
                self.wait_ready_for(what, CLUSTER_READY_TIMEOUT)
            });
            match result {
                Ok(()) => return Ok(()),
                // The ports must stay the same; if another socket holds one
                // for a moment, try again a few times.
                Err(_) if attempt < PORT_ATTEMPTS && self.lost_port_race(i) => {
                    self.kill(i)?;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "restarting nats-server {} (port {})\n{}",
                        self.nodes[i].name,
                        self.nodes[i].port,
                        self.all_log_tails(30)
                    )));
                }
            }
        }
    }

    /// Waits (up to `timeout`) until every *running* server is ready (see the
    /// type docs), e.g. after [`kill`](Self::kill) to let the survivors elect
    /// a new meta leader.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        self.wait_ready_for(
            "the running servers of the nats cluster to be ready",
            timeout,
        )
    }

    fn wait_ready_for(&mut self, what: impl std::fmt::Display, timeout: Duration) -> Result<()> {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        if running.is_empty() {
            bail!("no server of the nats cluster is running");
        }
        let mut last_state = String::new();
        wait_until_blocking(what, timeout, || {
            let mut pending = Vec::new();
            let mut leaders = BTreeSet::new();
            for &i in &running {
                match self.readiness(i, &running)? {
                    Ok(leader) => {
                        leaders.insert(leader);
                    }
                    Err(why) => pending.push(format!("{}: {why}", self.nodes[i].name)),
                }
            }
            if pending.is_empty() && leaders.len() > 1 {
                pending.push(format!("servers disagree on the meta leader: {leaders:?}"));
            }
            last_state = pending.join("; ");
            Ok(pending.is_empty().then_some(()))
        })
        .map_err(|e| {
            if last_state.is_empty() {
                e
            } else {
                anyhow::anyhow!("{e:#} (still not ready: {last_state})")
            }
        })
    }

    /// `GET` a monitoring endpoint of server `i` (e.g. `/jsz?streams=true`,
    /// `/routez`) and parse the JSON body.
    pub fn monitor_json(&self, i: usize, path: &str) -> Result<serde_json::Value> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[i].monitor_port));
        let (status, body) =
            http_get(addr, path).with_context(|| format!("GET {}{path}", self.monitor_url(i)))?;
        if status != 200 {
            bail!(
                "GET {}{path} answered {status}: {}",
                self.monitor_url(i),
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("parsing the JSON of {}{path}", self.monitor_url(i)))
    }

    /// The index of the JetStream meta leader as seen by running server `i`.
    pub fn meta_leader(&self, i: usize) -> Result<Option<usize>> {
        let jsz = self.monitor_json(i, "/jsz")?;
        Ok(jsz["meta_cluster"]["leader"]
            .as_str()
            .and_then(|name| self.index_of(name)))
    }

    /// `Ok(meta leader index)` when running server `i` is ready, `Err(why)`
    /// when not yet. Fails only when the process has exited (polling cannot
    /// fix that).
    fn readiness(&mut self, i: usize, running: &[usize]) -> Result<Result<usize, String>> {
        let node = &mut self.nodes[i];
        let child = node.child.as_mut().context("server is not running")?;
        if let Some(status) = child.try_wait().context("polling nats-server")? {
            bail!("nats-server {} exited with {status}", node.name);
        }
        if !read_from(&self.log_path(i), self.nodes[i].log_offset).contains("Server is ready") {
            return Ok(Err("has not logged `Server is ready`".into()));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[i].monitor_port));
        match http_get(addr, "/healthz") {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                return Ok(Err(format!(
                    "/healthz {status} {}",
                    String::from_utf8_lossy(&body).trim()
                )));
            }
            Err(e) => return Ok(Err(format!("/healthz: {e}"))),
        }
        // After a kill, survivors keep naming the dead meta leader until
        // they notice it is gone and elect a new one.
        let leader = match self.meta_leader(i) {
            Ok(Some(leader)) if running.contains(&leader) => leader,
            Ok(Some(leader)) => {
                return Ok(Err(format!(
                    "meta leader {} is not running",
                    self.nodes[leader].name
                )));
            }
            Ok(None) => return Ok(Err("no JetStream meta leader in /jsz".into())),
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let routez = match self.monitor_json(i, "/routez") {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let routed: BTreeSet<&str> = routez["routes"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| r["remote_name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&str> = running
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| self.nodes[j].name.as_str())
            .filter(|name| !routed.contains(name))
            .collect();
        if !missing.is_empty() {
            return Ok(Err(format!("no route to {}", missing.join(", "))));
        }
        Ok(Ok(leader))
    }

    fn assign_fresh_ports(&mut self) {
        let mut taken = BTreeSet::new();
        let mut fresh = || loop {
            let port = free_port();
            if taken.insert(port) {
                return port;
            }
        };
        for node in &mut self.nodes {
            node.port = fresh();
            node.cluster_port = fresh();
            node.monitor_port = fresh();
        }
    }

    fn routes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts the process of server `i` without waiting for it.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let log_path = self.log_path(i);
        let store = self.store_dir(i);
        let routes = self.routes();
        std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let node = &mut self.nodes[i];
        node.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(
            log,
            "{START_MARKER} {} as {} on port {} (cluster port {}, monitor port {}) ====",
            self.bin.display(),
            node.name,
            node.port,
            node.cluster_port,
            node.monitor_port
        )
        .context("writing nats-server log")?;
        let stderr = log.try_clone().context("duplicating log file handle")?;
        let child = Command::new(&self.bin)
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["--server_name", &node.name])
            .arg("-sd")
            .arg(&store)
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--cluster_name", CLUSTER_NAME])
            .args(["--routes", &routes])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Whether the last start of server `i` failed because a port was taken.
    fn lost_port_race(&self, i: usize) -> bool {
        read_from(&self.log_path(i), self.nodes[i].log_offset).contains("address already in use")
    }

    fn kill_all(&mut self) {
        for i in 0..self.len() {
            let _ = self.kill(i);
        }
    }

    fn all_log_tails(&self, n: usize) -> String {
        (0..self.len())
            .map(|i| {
                format!(
                    "---- nats-server {} ({}) log tail ----\n{}",
                    self.nodes[i].name,
                    self.url(i),
                    self.log_tail(i, n)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}\n---- end of nats cluster logs ----",
                self.all_log_tails(25)
            );
        }
        self.kill_all();
        // `dir` (stores + logs) is removed when the TempDir field drops.
    }
}

/// A minimal HTTP/1.0 `GET`: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("HTTP response without a header end"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP status line: {head}")))?;
    Ok((status, response[split + 4..].to_vec()))
}
