//! Helpers shared by the integration tests: a lattice on a real `nats-server`,
//! hosts of the built `lattice` binary, the CLI run as a subprocess, events.
//!
//! Nothing here sleeps and hopes: hosts are ready once they published
//! `host_started` (see [`HostProcess::spawn`]), events are awaited with a
//! deadline, and everything else is polled with [`wait_until`].

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use lattice::{
    app_store::AppStore,
    client::CtlClient,
    ctl::{ActorDescription, ActorStarted, HostInventory, StartActor},
    digest::Digest,
    event::Event,
    id::{ActorId, HostId, LatticeId},
};
use lattice_harness::{
    HostOptions, HostProcess, NatsServer, free_port, go_command, unique_lattice_id, wait_until,
    workspace_root,
};

/// The `lattice` binary built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_lattice");

/// How long a CLI invocation may take before the test gives up on it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`get_until`] polls an HTTP server.
pub const HTTP_WAIT: Duration = Duration::from_secs(20);

/// Flags every test host gets unless the test overrides them: short intervals
/// and deadlines so faults show quickly, no shared on-disk module cache.
pub const HOST_DEFAULTS: &[(&str, &str)] = &[
    ("--heartbeat-interval", "1s"),
    ("--call-timeout", "2s"),
    ("--drain-timeout", "5s"),
];

/// The `.wasm` of a workspace actor package, built once per test process.
pub fn actor_wasm(package: &str) -> Result<PathBuf> {
    lattice_harness::build_actor(package)
        .with_context(|| format!("building actor package {package}"))
}

/// `examples/NAME` of the workspace.
pub fn example_dir(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}

/// One lattice of its own on a nats-server of its own, plus a client for it.
pub struct TestLattice {
    /// The server; `nats.restart()` for reconnect tests.
    pub nats: NatsServer,
    /// The lattice id (unique per test).
    pub id: String,
    /// Control client on its own connection.
    pub ctl: CtlClient,
    /// Scratch directory: module files, an empty config file, host caches.
    pub dir: tempfile::TempDir,
}

impl TestLattice {
    /// Starts a nats-server with JetStream on a free port and connects to it.
    pub async fn start() -> Result<Self> {
        Self::on(NatsServer::start().context("starting nats-server")?).await
    }

    /// A lattice on `nats`, a server the test started (e.g. with a config).
    pub async fn on(nats: NatsServer) -> Result<Self> {
        let id = unique_lattice_id();
        let client = async_nats::connect(nats.url())
            .await
            .with_context(|| format!("connecting to {}", nats.url()))?;
        let ctl = CtlClient::new(client, LatticeId::new(id.as_str())?)
            .with_timeout(Duration::from_secs(10));
        let dir = tempfile::Builder::new()
            .prefix("lattice-test-")
            .tempdir()
            .context("creating a scratch directory")?;
        // An empty config file keeps a developer's ~/.config/lattice/config.toml
        // out of the tests.
        std::fs::write(dir.path().join("config.toml"), "")?;
        Ok(TestLattice { nats, id, ctl, dir })
    }

    /// The empty config file every process of this lattice is pointed at.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Options for a host named `name`: [`HOST_DEFAULTS`] with `flags`
    /// overriding or adding to them, and `--no-cache`.
    pub fn host_options(&self, name: &str, flags: &[(&str, &str)]) -> HostOptions {
        let mut merged: Vec<(&str, &str)> = HOST_DEFAULTS.to_vec();
        for (k, v) in flags {
            match merged.iter_mut().find(|(dk, _)| dk == k) {
                Some(slot) => slot.1 = v,
                None => merged.push((k, v)),
            }
        }
        let mut opts = HostOptions::new(self.nats.url(), &self.id, name)
            .env_var("LATTICE_CONFIG", self.config_file().display().to_string())
            .arg("--no-cache");
        for (k, v) in merged {
            opts = opts.arg(k).arg(v);
        }
        opts
    }

    /// Spawns a host process and waits until it announced itself.
    pub async fn host(&self, name: &str, flags: &[(&str, &str)]) -> Result<HostProcess> {
        HostProcess::spawn(BIN, &self.host_options(name, flags))
            .await
            .with_context(|| format!("starting host {name}"))
    }

    /// Runs `lattice --nats-url URL --lattice ID ARGS...` and collects its output.
    pub async fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        self.cli_within(args, CLI_TIMEOUT).await
    }

    /// [`TestLattice::cli`] for a command that may take up to `timeout` (the
    /// start of a large module, compiled on a loaded machine).
    pub async fn cli_within(&self, args: &[&str], timeout: Duration) -> Result<CliOutput> {
        self.cli_env(args, &[], timeout).await
    }

    /// [`TestLattice::cli_within`] with extra environment `env`.
    pub async fn cli_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CliOutput> {
        let url = self.nats.url();
        let config = self.config_file().display().to_string();
        let mut full = vec![
            "--nats-url",
            url.as_str(),
            "--lattice",
            self.id.as_str(),
            "--config",
            config.as_str(),
        ];
        full.extend_from_slice(args);
        run_cli_within(&full, env, timeout).await
    }

    /// Starts the counter module `wasm` (actor id `actor`, from its file
    /// name) with the built-in HTTP server and key-value providers, wherever
    /// the lattice places them, and links both (HTTP on a free port of
    /// 127.0.0.1); returns the port.
    pub async fn serve_counter(&self, wasm: &str, actor: &str) -> Result<u16> {
        self.cli(&["ctl", "start", "actor", wasm])
            .await?
            .success()?;
        for provider in ["builtin:httpserver", "builtin:keyvalue"] {
            self.cli(&["ctl", "start", "provider", provider])
                .await?
                .success()?;
        }
        let port = free_port();
        let address = format!("address=127.0.0.1:{port}");
        self.link_put(actor, "httpserver", "lattice:httpserver", &[&address])
            .await?;
        self.link_put(actor, "keyvalue", "lattice:keyvalue", &[])
            .await?;
        Ok(port)
    }

    /// Runs `lattice ctl start provider REFERENCE --host HOST` (e.g.
    /// `builtin:keyvalue`), which must succeed.
    pub async fn start_provider_on(&self, reference: &str, host: &str) -> Result<CliOutput> {
        self.cli(&["ctl", "start", "provider", reference, "--host", host])
            .await?
            .success()
    }

    /// Runs `lattice ctl link put ACTOR PROVIDER CONTRACT [K=V]...`, which
    /// must succeed.
    pub async fn link_put(
        &self,
        actor: &str,
        provider: &str,
        contract: &str,
        config: &[&str],
    ) -> Result<CliOutput> {
        let mut args = vec!["ctl", "link", "put", actor, provider, contract];
        args.extend_from_slice(config);
        self.cli(&args).await?.success()
    }

    /// Uploads a module to the lattice's artifact store and starts it with
    /// `replicas` replicas on `host`, through the control client.
    pub async fn start_actor(
        &self,
        host: &HostProcess,
        wasm: &Path,
        actor: &str,
        replicas: u32,
    ) -> Result<ActorStarted> {
        let host_id = HostId::new(host.host_id())?;
        self.start_actor_on(&host_id, wasm, actor, replicas).await
    }

    /// As [`TestLattice::start_actor`], for a host given by id (e.g. in-process).
    pub async fn start_actor_on(
        &self,
        host: &HostId,
        wasm: &Path,
        actor: &str,
        replicas: u32,
    ) -> Result<ActorStarted> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let digest = self
            .ctl
            .artifacts()
            .await?
            .put(&bytes, None)
            .await
            .context("uploading the module")?;
        let cmd = StartActor {
            actor_id: ActorId::new(actor)?,
            digest,
            reference: wasm
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            replicas,
            config: Default::default(),
        };
        self.ctl
            .start_actor(host, &cmd)
            .await
            .with_context(|| format!("starting actor {actor} on host {host}"))
    }

    /// The inventory of a host.
    pub async fn inventory(&self, host: &HostProcess) -> Result<HostInventory> {
        let id = HostId::new(host.host_id())?;
        self.ctl
            .inventory(&id)
            .await
            .with_context(|| format!("inventory of host {}", host.name()))
    }

    /// The entry of `actor` in a host's inventory, if it runs there.
    pub async fn actor_on(
        &self,
        host: &HostProcess,
        actor: &str,
    ) -> Result<Option<ActorDescription>> {
        Ok(find_actor(&self.inventory(host).await?, actor))
    }

    /// Calls `hello`'s `SayHello` with `name` and decodes the greeting.
    pub async fn say_hello(&self, name: &str) -> Result<String> {
        let reply = self
            .ctl
            .call("hello", "SayHello", name)
            .await
            .context("calling hello SayHello")?;
        rmp_serde::from_slice(&reply).context("decoding the greeting")
    }

    /// Calls an actor operation with a msgpack-encoded argument and decodes the
    /// msgpack reply.
    pub async fn call<In, Out>(
        &self,
        actor: &str,
        op: &str,
        arg: &In,
    ) -> Result<Out, lattice::Error>
    where
        In: serde::Serialize + ?Sized,
        Out: serde::de::DeserializeOwned,
    {
        let reply = self.ctl.call(actor, op, arg).await?;
        Ok(rmp_serde::from_slice(&reply)?)
    }

    /// Subscribes to every event of this lattice; the subscription is
    /// registered with the server when this returns.
    pub async fn events(&self) -> Result<Events> {
        let sub = self.ctl.events().await?;
        sync_with_server(self.ctl.nats()).await?;
        Ok(Events { sub })
    }
}

/// The entry of `actor` in an inventory.
pub fn find_actor(inv: &HostInventory, actor: &str) -> Option<ActorDescription> {
    inv.actors.iter().find(|a| a.id.as_str() == actor).cloned()
}

/// A live subscription to a lattice's events.
pub struct Events {
    sub: async_nats::Subscriber,
}

impl Events {
    /// Waits up to `timeout` for the next event for which `pred` holds; events
    /// before it are skipped.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.sub.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => bail!("event subscription ended while waiting for {what}"),
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for event {what}; saw: {}",
                    seen.join(", ")
                ),
            };
            let event: Event = serde_json::from_slice(&msg.payload)
                .with_context(|| format!("event on {} is not a CloudEvent", msg.subject))?;
            if pred(&event) {
                return Ok(event);
            }
            seen.push(event.kind.clone());
        }
    }
}

/// Waits for a round trip to the server, so every command sent before (a SUB)
/// has been processed.
pub async fn sync_with_server(client: &async_nats::Client) -> Result<()> {
    let subject = format!("_test.sync.{}", uuid::Uuid::new_v4().simple());
    match tokio::time::timeout(Duration::from_secs(10), client.request(subject, "".into())).await {
        Err(_) => bail!("no answer from the NATS server within 10 s"),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(e).context("round trip to the NATS server"),
    }
}

/// What a CLI run printed, and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl CliOutput {
    /// Fails unless the command exited 0.
    pub fn success(self) -> Result<Self> {
        ensure!(
            self.status.success(),
            "`{}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Fails unless the command exited non-zero (not by a signal).
    pub fn failure(self) -> Result<Self> {
        ensure!(
            matches!(self.status.code(), Some(c) if c != 0),
            "`{}` was expected to fail but exited with {}:\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }

    /// Fails unless stderr contains every one of `needles`.
    pub fn stderr_has(&self, needles: &[&str]) -> Result<()> {
        for n in needles {
            ensure!(
                self.stderr.contains(n),
                "stderr of `{}` does not contain {n:?}:\n{}",
                self.command,
                self.stderr
            );
        }
        Ok(())
    }
}

/// Runs the `lattice` binary with `args` and extra environment `env`, without
/// any `LATTICE_*` variables of the test's own environment.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Result<CliOutput> {
    run_cli_within(args, env, CLI_TIMEOUT).await
}

/// [`run_cli`] for a command that may take up to `timeout` (builds).
pub async fn run_cli_within(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<CliOutput> {
    let command = format!("lattice {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("NO_COLOR", "1")
        // What users see by default: `error: ...` with causes, no backtrace.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    without_lattice_env(cmd.as_std_mut());
    cmd.envs(env.iter().copied());
    let started = Instant::now();
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| anyhow!("`{command}` did not finish within {timeout:?}"))?
        .with_context(|| format!("running `{command}`"))?;
    Ok(CliOutput {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// Keeps the `LATTICE_*` variables of the test's own environment away from
/// a `lattice` process.
pub fn without_lattice_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LATTICE_") {
            cmd.env_remove(k);
        }
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Compiles WebAssembly text to a binary module.
pub fn wat(text: &str) -> Result<Vec<u8>> {
    wat::parse_str(text).map_err(|e| anyhow!("invalid WAT in the test: {e}"))
}

/// The msgpack payload of the probe's `Call` operation.
pub fn probe_call(target: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>> {
    use rmpv::Value;
    let value = Value::Map(vec![
        (Value::from("target"), Value::from(target)),
        (Value::from("operation"), Value::from(operation)),
        (Value::from("payload"), Value::Binary(payload.to_vec())),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value)?;
    Ok(out)
}

/// The digest the lattice gives a module file.
pub fn digest_of(path: &Path) -> Result<Digest> {
    Ok(Digest::of(&std::fs::read(path)?))
}

/// Polls until `hosts` answer a ping and every one of them shows up.
pub async fn wait_for_hosts(ctl: &CtlClient, names: &[&str], timeout: Duration) -> Result<()> {
    wait_until(
        format!("hosts {names:?} to answer pings"),
        timeout,
        || async {
            let hosts = ctl.ping_hosts(Duration::from_millis(300)).await;
            Ok(hosts
                .ok()
                .filter(|hs| names.iter().all(|n| hs.iter().any(|h| h.name == *n)))
                .map(|_| ()))
        },
    )
    .await
}

/// Replicas of `actor` on each host that answers a ping now, as
/// (host name, replicas).
pub async fn replicas_by_host(ctl: &CtlClient, actor: &str) -> Result<Vec<(String, u32)>> {
    let hosts = ctl.ping_hosts(Duration::from_millis(300)).await?;
    let mut out = Vec::new();
    for h in hosts {
        if let Ok(inv) = ctl.inventory(&h.id).await
            && let Some(a) = find_actor(&inv, actor)
        {
            out.push((inv.host.name.clone(), a.replicas));
        }
    }
    Ok(out)
}

/// The id of the host holding the reconciler lease, if one does.
pub async fn reconciler_leader(store: &AppStore) -> Result<Option<String>> {
    let e = store
        .kv()
        .entry(lattice_host::reconcile::lease::LEASE_KEY)
        .await?;
    Ok(
        e.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()),
    )
}

/// The manifest of app `counter`: `replicas` of `kvcounter` from `module`
/// behind the built-in HTTP server on `127.0.0.1:port`, counting in the
/// built-in key-value store. `httpserver_constraints` places the HTTP server
/// (an inline TOML table such as `{ role = "edge" }`; empty for anywhere).
pub fn kvcounter_app(
    module: &str,
    replicas: u32,
    port: u16,
    httpserver_constraints: &str,
) -> String {
    let constraints = if httpserver_constraints.is_empty() {
        String::new()
    } else {
        format!("constraints = {httpserver_constraints}\n")
    };
    format!(
        r#"
name = "counter"
description = "kvcounter behind HTTP"

[[actors]]
id = "kvcounter"
ref = "{module}"
replicas = {replicas}

[[providers]]
id = "httpserver"
ref = "builtin:httpserver"
{constraints}
[[providers]]
id = "keyvalue"
ref = "builtin:keyvalue"

[[links]]
actor = "kvcounter"
provider = "httpserver"
contract = "lattice:httpserver"
config = {{ address = "127.0.0.1:{port}" }}

[[links]]
actor = "kvcounter"
provider = "keyvalue"
contract = "lattice:keyvalue"
"#
    )
}

/// GETs `/hits` of the kvcounter app on `port` until it answers (within
/// `timeout`); returns the count.
pub async fn kvcounter_hits(port: u16, timeout: Duration) -> Result<i64> {
    let url = format!("http://127.0.0.1:{port}/hits");
    let v: serde_json::Value = wait_until(format!("GET {url}"), timeout, || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status() == 200 => Ok(Some(r.json().await?)),
            _ => Ok(None),
        }
    })
    .await?;
    v["count"].as_i64().context("count")
}

/// GETs `url` until it answers with `status` (within [`HTTP_WAIT`]), then
/// returns the body.
pub async fn get_until(url: &str, status: u16) -> Result<String> {
    let client = reqwest::Client::new();
    let last = std::sync::Mutex::new(String::from("no answer yet"));
    let got = wait_until(
        format!("GET {url} to answer {status}"),
        HTTP_WAIT,
        || async {
            match client.get(url).send().await {
                Ok(r) if r.status().as_u16() == status => Ok(Some(r.text().await?)),
                Ok(r) => {
                    let said = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = said;
                    Ok(None)
                }
                Err(e) => {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                    Ok(None)
                }
            }
        },
    )
    .await;
    let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
    got.with_context(|| format!("the last answer: {last}"))
}

/// `go vet ./...` for the build machine and for wasip1, then `go test ./...`,
/// in the Go module at `dir`; fails with the output of the first that fails.
pub fn go_vet_and_test(dir: &Path) -> Result<()> {
    let wasip1: &[(&str, &str)] = &[("GOOS", "wasip1"), ("GOARCH", "wasm")];
    let runs = [
        (["vet", "./..."], &[][..]),
        (["vet", "./..."], wasip1),
        (["test", "./..."], &[][..]),
    ];
    for (args, env) in runs {
        let mut cmd = go_command(dir)?;
        cmd.args(args).envs(env.iter().copied());
        let out = cmd
            .output()
            .with_context(|| format!("running go {args:?} in {}", dir.display()))?;
        ensure!(
            out.status.success(),
            "go {args:?} {env:?} in {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The value of the Prometheus sample line that starts with `series `
/// (labels included).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The metrics address a host printed (`lattice up --metrics-addr`).
pub fn metrics_url(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.strip_prefix("metrics on "))
        .map(|u| u.trim().to_string())
}

/// A CA made for one test and a server certificate it signed for 127.0.0.1
/// and localhost, in PEM (for files) and DER (for a rustls server).
pub struct TestCa {
    /// The CA's certificate.
    pub ca_pem: String,
    /// The server's certificate.
    pub server_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
    /// The server's certificate, DER.
    pub server_der: Vec<u8>,
    /// The server's private key, PKCS#8 DER.
    pub server_key_der: Vec<u8>,
}

impl TestCa {
    /// A new CA and server certificate.
    pub fn new() -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let key = KeyPair::generate()?;
        let server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
                .signed_by(&key, &issuer)?;
        Ok(TestCa {
            ca_pem: ca.pem(),
            server_pem: server.pem(),
            server_key_pem: key.serialize_pem(),
            server_der: server.der().to_vec(),
            server_key_der: key.serialize_der(),
        })
    }
}
