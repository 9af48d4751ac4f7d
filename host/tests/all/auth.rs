//! NATS itself enforces the roles of `lattice auth init`: a real nats-server
//! runs the generated config; hosts, the CLI and raw clients connect with the
//! generated nkeys. Also TLS with a CA made in the test.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use lattice::{
    auth::{NatsAuth, Refusal, Refusals},
    id::LatticeId,
};
use lattice_harness::{HostOptions, HostProcess, NatsServer, unique_lattice_id};
use lattice_host::auth::{LatticeUsers, Role};

use crate::{
    common::{BIN, CliOutput, HOST_DEFAULTS, actor_wasm, run_cli},
    ui::Dashboard,
};

/// How long a refusal may take to arrive: "at once", far below any timeout.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// A lattice whose nats-server runs the config of `lattice auth init`.
struct Secured {
    nats: NatsServer,
    id: String,
    keys: PathBuf,
    dir: tempfile::TempDir,
}

impl Secured {
    /// `lattice auth init` for a new lattice, and a server running its config.
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lattice-auth-").tempdir()?;
        std::fs::write(dir.path().join("config.toml"), "")?;
        let id = unique_lattice_id();
        let keys = dir.path().join("keys");
        init(&id, &keys).await?;
        let nats = NatsServer::start_with_config(keys.join("nats.conf"))?;
        Ok(Secured {
            nats,
            id,
            keys,
            dir,
        })
    }

    fn seed(&self, role: Role) -> PathBuf {
        role.seed_file(&self.keys)
    }

    fn auth(&self, role: Role) -> NatsAuth {
        NatsAuth {
            nats_nkey: Some(self.seed(role)),
            ..Default::default()
        }
    }

    /// `lattice --nats-url … --lattice … --nats-nkey ROLE.nk ARGS…`
    async fn cli_as(&self, role: Option<Role>, args: &[&str]) -> Result<CliOutput> {
        let url = self.nats.url();
        let config = self.dir.path().join("config.toml").display().to_string();
        let seed = role.map(|r| self.seed(r).display().to_string());
        let mut full = vec![
            "--nats-url",
            url.as_str(),
            "--lattice",
            self.id.as_str(),
            "--config",
            config.as_str(),
            "--timeout",
            "10s",
        ];
        if let Some(seed) = &seed {
            full.extend(["--nats-nkey", seed.as_str()]);
        }
        full.extend_from_slice(args);
        run_cli(&full, &[]).await
    }

    /// A host with the host role's seed.
    async fn host(&self, name: &str) -> Result<HostProcess> {
        let mut opts = HostOptions::new(self.nats.url(), &self.id, name)
            .env_var(
                "LATTICE_CONFIG",
                self.dir.path().join("config.toml").display().to_string(),
            )
            .env_var(
                "LATTICE_NATS_NKEY",
                self.seed(Role::Host).display().to_string(),
            )
            .watch_auth(self.auth(Role::Observer))
            .arg("--no-cache");
        for (k, v) in HOST_DEFAULTS {
            opts = opts.arg(*k).arg(*v);
        }
        HostProcess::spawn(BIN, &opts)
            .await
            .with_context(|| format!("starting host {name}"))
    }

    /// A raw client of `role` and the refusals NATS reports to it.
    async fn connect(&self, role: Role) -> Result<(async_nats::Client, Refusals)> {
        let refusals = Refusals::new();
        let client = lattice::auth::connect(
            &self.nats.url(),
            "auth-test",
            &self.auth(role),
            Some(refusals.clone()),
        )
        .await?;
        Ok((client, refusals))
    }
}

async fn init(lattice: &str, out: &std::path::Path) -> Result<()> {
    let out = out.display().to_string();
    run_cli(&["--lattice", lattice, "auth", "init", "--out", &out], &[])
        .await?
        .success()?;
    Ok(())
}

/// Waits for the refusal of `subject` on `rx`.
async fn refused(
    rx: &mut tokio::sync::broadcast::Receiver<Refusal>,
    subject: &str,
) -> Result<Refusal> {
    let wait = async {
        loop {
            let r = Refusals::next(rx).await;
            if r.subject() == Some(subject) {
                return r;
            }
        }
    };
    tokio::time::timeout(REFUSED_WITHIN, wait)
        .await
        .with_context(|| format!("NATS did not refuse {subject} within {REFUSED_WITHIN:?}"))
}

/// Fails unless the CLI failed quickly with a refusal naming `role` and `subject_part`.
fn refused_cli(out: CliOutput, role: Role, subject_part: &str) -> Result<()> {
    refused_cli_any(out, role, &[subject_part])
}

/// [`refused_cli`] for a command that sends several things at once: the
/// refusal names one of `subject_parts`, whichever NATS refused first.
fn refused_cli_any(out: CliOutput, role: Role, subject_parts: &[&str]) -> Result<()> {
    let elapsed = out.elapsed;
    let out = out.failure()?;
    let expect = format!("role {role} may not");
    ensure!(
        out.stderr.contains(&expect) && subject_parts.iter().any(|p| out.stderr.contains(p)),
        "`{}`: expected a refusal naming {expect:?} and one of {subject_parts:?}, got:\n{}",
        out.command,
        out.stderr
    );
    ensure!(
        elapsed < Duration::from_secs(5),
        "`{}` took {elapsed:?} to be refused",
        out.command
    );
    Ok(())
}

#[tokio::test]
async fn a_host_without_credential_exits_naming_the_auth_failure() -> Result<()> {
    let lattice = Secured::start().await?;
    let out = lattice
        .cli_as(None, &["up", "--name", "anon", "--no-cache"])
        .await?
        .failure()?;
    ensure!(
        out.stderr.contains("authorization violation") && out.stderr.contains("no credential"),
        "{}",
        out.stderr
    );
    // A wrong credential (another lattice's seed) is named too.
    let other = lattice.dir.path().join("other");
    init(&unique_lattice_id(), &other).await?;
    let seed = Role::Host.seed_file(&other).display().to_string();
    let out = lattice
        .cli_as(None, &["--nats-nkey", &seed, "ctl", "get", "hosts"])
        .await?
        .failure()?;
    ensure!(
        out.stderr.contains("authorization violation") && out.stderr.contains(&seed),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_caller_calls_actors_and_nothing_else() -> Result<()> {
    let lattice = Secured::start().await?;
    let host = lattice.host("h1").await?;
    let wasm = actor_wasm("hello")?.display().to_string();
    lattice
        .cli_as(
            Some(Role::Admin),
            &["ctl", "start", "actor", &wasm, "--host", host.host_id()],
        )
        .await?
        .success()?;

    let out = lattice
        .cli_as(
            Some(Role::Caller),
            &["call", "hello", "SayHello", "\"ana\""],
        )
        .await?
        .success()?;
    ensure!(out.stdout.contains("Hello, ana!"), "{}", out.stdout);

    let stop = lattice
        .cli_as(
            Some(Role::Caller),
            &["ctl", "stop", "actor", "hello", "--host", host.host_id()],
        )
        .await?;
    refused_cli(stop, Role::Caller, &format!("lattice.{}.ctl", lattice.id))?;
    let start = lattice
        .cli_as(
            Some(Role::Caller),
            &["ctl", "start", "actor", &wasm, "--host", host.host_id()],
        )
        .await?;
    // The start goes out while the module uploads: either may be refused first.
    let ctl_subject = format!("lattice.{}.ctl", lattice.id);
    refused_cli_any(start, Role::Caller, &["$JS.API", &ctl_subject])?;

    // Raw publishes a caller might try: each refused by NATS, at once.
    let (client, refusals) = lattice.connect(Role::Caller).await?;
    let mut rx = refusals.subscribe();
    let l = &lattice.id;
    for subject in [
        format!("lattice.{l}.rpc.provider.keyvalue"),
        format!("lattice.{l}.evt.host_heartbeat"),
        format!("lattice.{l}.evt.host_stopped"),
        format!("lattice.{l}.ctl.host.{}.stop", host.host_id()),
        format!("$KV.LATTICE_{l}.lease.reconciler"),
    ] {
        client.publish(subject.clone(), "{}".into()).await?;
        let r = refused(&mut rx, &subject).await?;
        ensure!(r.role.as_deref() == Some("caller"), "{r}");
    }

    // Even the admin, who writes links and tags, cannot write the lease or
    // pose as a host.
    let (admin, refusals) = lattice.connect(Role::Admin).await?;
    let mut rx = refusals.subscribe();
    let js = async_nats::jetstream::new(admin.clone());
    let kv = js.get_key_value(format!("LATTICE_{l}")).await?;
    let put = tokio::time::timeout(
        Duration::from_secs(2),
        kv.put("lease.reconciler", "me".into()),
    );
    let lease = format!("$KV.LATTICE_{l}.lease.reconciler");
    let (_, r) = tokio::join!(put, refused(&mut rx, &lease));
    r?;
    let subject = format!("lattice.{l}.evt.host_stopped");
    admin.publish(subject.clone(), "{}".into()).await?;
    refused(&mut rx, &subject).await?;

    // The host noticed nothing: it still serves.
    let out = lattice
        .cli_as(Some(Role::Caller), &["call", "hello", "SayHello", "\"bo\""])
        .await?
        .success()?;
    ensure!(out.stdout.contains("Hello, bo!"), "{}", out.stdout);
    Ok(())
}

#[tokio::test]
async fn an_observer_reads_hosts_and_events_but_cannot_call() -> Result<()> {
    let lattice = Secured::start().await?;
    let (observer, refusals) = lattice.connect(Role::Observer).await?;
    let mut events = observer
        .subscribe(format!("lattice.{}.evt.>", lattice.id))
        .await?;
    // A round trip (no responders yet): the subscription is registered.
    let _ = observer
        .request(
            format!("lattice.{}.ctl.ping.hosts", lattice.id),
            "null".into(),
        )
        .await;
    let host = lattice.host("h1").await?;
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .context("no event reached the observer")?
        .context("event subscription ended")?;
    ensure!(
        event
            .subject
            .starts_with(&format!("lattice.{}.evt.host_", lattice.id))
    );

    let out = lattice
        .cli_as(Some(Role::Observer), &["ctl", "get", "hosts"])
        .await?
        .success()?;
    ensure!(out.stdout.contains(host.host_id()), "{}", out.stdout);
    lattice
        .cli_as(Some(Role::Observer), &["ctl", "get", "links"])
        .await?
        .success()?;

    let call = lattice
        .cli_as(
            Some(Role::Observer),
            &["call", "hello", "SayHello", "\"x\""],
        )
        .await?;
    refused_cli(
        call,
        Role::Observer,
        &format!("lattice.{}.rpc.actor.hello", lattice.id),
    )?;
    let stop = lattice
        .cli_as(
            Some(Role::Observer),
            &["ctl", "stop", "actor", "hello", "--host", host.host_id()],
        )
        .await?;
    refused_cli(stop, Role::Observer, "actor.stop")?;

    let mut rx = refusals.subscribe();
    let subject = format!("lattice.{}.evt.host_heartbeat", lattice.id);
    observer.publish(subject.clone(), "{}".into()).await?;
    refused(&mut rx, &subject).await?;
    Ok(())
}

#[tokio::test]
async fn an_observer_dashboard_shows_the_lattice_and_its_actions_are_refused() -> Result<()> {
    let wasm = actor_wasm("hello")?.display().to_string();
    let lattice = Secured::start().await?;
    let host = lattice.host("h1").await?;
    lattice
        .cli_as(Some(Role::Admin), &["ctl", "start", "actor", &wasm])
        .await?
        .success()?;
    let url = lattice.nats.url();
    let config = lattice.dir.path().join("config.toml").display().to_string();
    let seed = lattice.seed(Role::Observer).display().to_string();
    let ui = Dashboard::spawn(&[
        "--nats-url",
        &url,
        "--lattice",
        &lattice.id,
        "--config",
        &config,
        "--nats-nkey",
        &seed,
    ])
    .await?;
    let http = reqwest::Client::new();
    let state = format!("{}api/state", ui.url);
    let read = |body: String| -> Result<serde_json::Value> { Ok(serde_json::from_str(&body)?) };

    let got = read(http.get(&state).send().await?.text().await?)?;
    ensure!(
        got["hosts"][0]["host"]["id"] == host.host_id()
            && got["hosts"][0]["actors"][0]["id"] == "hello",
        "an observer's dashboard lacks the host or the actor: {got}"
    );
    let resp = http
        .post(format!("{}api/actors/hello/scale", ui.url))
        .header("content-type", "application/json")
        .body(r#"{"replicas":2}"#)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let error = read(resp.text().await?)?;
    let error = error["error"].as_str().unwrap_or_default();
    ensure!(
        status == 403 && error.contains("role observer") && error.contains("actor.scale"),
        "an observer's scale: {status} {error}"
    );
    // The refusal failed that request only: the dashboard still reads.
    let again = read(http.get(&state).send().await?.text().await?)?;
    ensure!(again["hosts"][0]["actors"][0]["replicas"] == 1, "{again}");
    Ok(())
}

#[tokio::test]
async fn another_lattices_credentials_see_nothing() -> Result<()> {
    // One server, two lattices: one account each.
    let dir = tempfile::Builder::new().prefix("lattice-auth-").tempdir()?;
    std::fs::write(dir.path().join("config.toml"), "")?;
    let (a, b) = (unique_lattice_id(), unique_lattice_id());
    let (keys_a, keys_b) = (dir.path().join("a"), dir.path().join("b"));
    init(&a, &keys_a).await?;
    init(&b, &keys_b).await?;
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        lattice_host::auth::nats_conf(&[
            LatticeUsers::load(LatticeId::new(&a)?, &keys_a)?,
            LatticeUsers::load(LatticeId::new(&b)?, &keys_b)?,
        ]),
    )?;
    let nats = NatsServer::start_with_config(&conf)?;
    let lattice_a = Secured {
        nats,
        id: a.clone(),
        keys: keys_a,
        dir,
    };
    let host = lattice_a.host("ha").await?;

    // B's host credential, the broadest of B, gets nothing of A: not its
    // events, not a wildcard over everything.
    let b_host = NatsAuth {
        nats_nkey: Some(Role::Host.seed_file(&keys_b)),
        ..Default::default()
    };
    let refusals = Refusals::new();
    let client =
        lattice::auth::connect(&lattice_a.nats.url(), "b", &b_host, Some(refusals.clone())).await?;
    let mut rx = refusals.subscribe();
    for subject in [format!("lattice.{a}.evt.>"), ">".to_string()] {
        let _sub = client.subscribe(subject.clone()).await?;
        refused(&mut rx, &subject).await?;
    }
    // Its own lattice's wildcard is allowed but, in its own account, silent:
    // A's heartbeats (every second) never arrive.
    let mut own = client.subscribe(format!("lattice.{b}.>")).await?;
    let quiet = tokio::time::timeout(Duration::from_millis(2500), own.next()).await;
    ensure!(quiet.is_err(), "B saw a message: {quiet:?}");

    // B's admin asking for A's hosts with --lattice A: refused; for its own: none.
    let seed_b = Role::Admin.seed_file(&keys_b).display().to_string();
    let config = lattice_a
        .dir
        .path()
        .join("config.toml")
        .display()
        .to_string();
    let url = lattice_a.nats.url();
    let base = [
        "--nats-url",
        &url,
        "--config",
        &config,
        "--nats-nkey",
        &seed_b,
    ];
    let mut args = base.to_vec();
    args.extend(["--lattice", &a, "ctl", "get", "hosts"]);
    let out = run_cli(&args, &[]).await?;
    refused_cli(out, Role::Admin, &format!("lattice.{a}.ctl.ping.hosts"))?;
    let mut args = base.to_vec();
    args.extend(["--lattice", &b, "ctl", "get", "hosts", "--output", "json"]);
    let out = run_cli(&args, &[]).await?.success()?;
    ensure!(!out.stdout.contains(host.host_id()), "{}", out.stdout);
    Ok(())
}

#[tokio::test]
async fn a_host_connects_over_tls_with_a_test_ca() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("lattice-tls-").tempdir()?;
    let path = |n: &str| dir.path().join(n);
    let ca = crate::common::TestCa::new()?;
    std::fs::write(path("ca.pem"), &ca.ca_pem)?;
    std::fs::write(path("server.pem"), &ca.server_pem)?;
    std::fs::write(path("server-key.pem"), &ca.server_key_pem)?;
    std::fs::write(path("config.toml"), "")?;
    std::fs::write(
        path("nats.conf"),
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
            path("server.pem"),
            path("server-key.pem")
        ),
    )?;
    let nats = NatsServer::start_with_config(path("nats.conf"))?;
    let url = nats.url().replace("nats://", "tls://");
    let lattice = unique_lattice_id();
    let tls = NatsAuth {
        tls_ca: Some(path("ca.pem")),
        ..Default::default()
    };
    let mut opts = HostOptions::new(&url, &lattice, "tls-host")
        .env_var("LATTICE_CONFIG", path("config.toml").display().to_string())
        .env_var("LATTICE_TLS_CA", path("ca.pem").display().to_string())
        .watch_auth(tls.clone())
        .arg("--no-cache");
    for (k, v) in HOST_DEFAULTS {
        opts = opts.arg(*k).arg(*v);
    }
    let host = HostProcess::spawn(BIN, &opts).await?;

    let config = path("config.toml").display().to_string();
    let ca = path("ca.pem").display().to_string();
    let with_ca = [
        "--nats-url",
        &url,
        "--lattice",
        &lattice,
        "--config",
        &config,
        "--tls-ca",
        &ca,
        "ctl",
        "get",
        "hosts",
    ];
    let out = run_cli(&with_ca, &[]).await?.success()?;
    ensure!(out.stdout.contains(host.host_id()), "{}", out.stdout);

    // Without the test CA the server's certificate is not trusted.
    let without = [
        "--nats-url",
        &url,
        "--lattice",
        &lattice,
        "--config",
        &config,
        "ctl",
        "get",
        "hosts",
    ];
    let out = run_cli(&without, &[]).await?.failure()?;
    ensure!(out.stderr.contains("could not connect"), "{}", out.stderr);
    Ok(())
}

#[tokio::test]
async fn up_listening_beyond_loopback_runs_the_generated_roles() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("lattice-listen-")
        .tempdir()?;
    std::fs::write(dir.path().join("config.toml"), "")?;
    let port = lattice_harness::free_port();
    let lattice = unique_lattice_id();
    let data = dir.path().join("data");
    let log = dir.path().join("up.log");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--lattice", &lattice, "--config"])
        .arg(dir.path().join("config.toml"))
        .args(["up", "--name", "open", "--no-cache", "--listen"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.path().join("up.err"))?);
    crate::common::without_lattice_env(&mut cmd);
    let mut child = cmd.spawn()?;
    let started =
        lattice_harness::wait_until("the --listen host to join", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { Ok(text.contains("joined lattice").then_some(())) }
        })
        .await;
    let err = std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default();
    let result = (|| {
        started.with_context(|| format!("host stderr:\n{err}"))?;
        let seed = Role::Host.seed_file(&data.join("auth"));
        ensure!(
            err.contains(&seed.display().to_string()),
            "the host should name the seed a second machine needs:\n{err}"
        );
        Ok(seed)
    })();
    let check = async {
        result?;
        let url = format!("nats://127.0.0.1:{port}");
        let config = dir.path().join("config.toml").display().to_string();
        let base = [
            "--nats-url",
            &url,
            "--lattice",
            &lattice,
            "--config",
            &config,
        ];
        let mut args = base.to_vec();
        args.extend(["ctl", "get", "hosts"]);
        let out = run_cli(&args, &[]).await?.failure()?;
        ensure!(
            out.stderr.contains("authorization violation"),
            "{}",
            out.stderr
        );
        let observer = Role::Observer.seed_file(&data.join("auth"));
        let observer = observer.display().to_string();
        let mut args = base.to_vec();
        args.extend(["--nats-nkey", &observer, "ctl", "get", "hosts"]);
        let out = run_cli(&args, &[]).await?.success()?;
        ensure!(out.stdout.contains("open"), "{}", out.stdout);
        Ok(())
    }
    .await;
    let _ =
        lattice_harness::terminate_child(&mut child, "the --listen host", Duration::from_secs(10))
            .await;
    check
}

/// A call that runs past the progress interval gets its progress messages
/// and then its reply through the roles: hosts and providers may publish to
/// `_INBOX.>` (`allow_responses` alone allows one message per request, so the
/// reply after a progress message was refused and the caller reported the
/// serving side lost).
#[tokio::test(flavor = "multi_thread")]
async fn replies_after_progress_get_through_for_hosts_and_providers() -> Result<()> {
    use lattice::rpc::remote::{Caller, PROGRESS, STATUS_HEADER};

    let lattice = Secured::start().await?;
    let host = lattice.host("h1").await?;
    let probe = actor_wasm("probe-actor")?.display().to_string();
    lattice
        .cli_as(
            Some(Role::Admin),
            &[
                "ctl",
                "start",
                "actor",
                &probe,
                "--id",
                "probe",
                "--host",
                host.host_id(),
            ],
        )
        .await?
        .success()?;
    // 600 ms: two progress messages from the host before the reply.
    let out = lattice
        .cli_as(Some(Role::Caller), &["call", "probe", "Sleep", "600"])
        .await?
        .success()?;
    ensure!(out.stdout.trim() == "600", "{}", out.stdout);

    // A provider answering a host's request: progress three times, then the reply.
    let (provider, _) = lattice.connect(Role::Provider).await?;
    let subject = format!("lattice.{}.rpc.provider.slow", lattice.id);
    let mut sub = provider.subscribe(subject.clone()).await?;
    provider.flush().await?;
    let responder = tokio::spawn(async move {
        let msg = sub
            .next()
            .await
            .context("no request reached the provider")?;
        let reply = msg.reply.context("the request has no reply subject")?;
        let mut progress = async_nats::HeaderMap::new();
        progress.insert(STATUS_HEADER, PROGRESS);
        for _ in 0..3 {
            provider
                .publish_with_headers(reply.clone(), progress.clone(), bytes::Bytes::new())
                .await?;
        }
        provider.publish(reply, msg.payload).await?;
        provider.flush().await?;
        anyhow::Ok(())
    });
    let (host_client, _) = lattice.connect(Role::Host).await?;
    let answer = Caller::new(host_client)
        .request(
            subject,
            async_nats::HeaderMap::new(),
            "ping".into(),
            Duration::from_secs(10),
            "the test provider",
        )
        .await
        .context("the provider's reply after its progress messages")?;
    ensure!(answer.payload.as_ref() == b"ping", "{:?}", answer.payload);
    responder.await??;
    Ok(())
}

/// The HTTP server as a process of its own, under the provider role, streams
/// both bodies to and from a component on a host over NATS: the chunks,
/// credits and cancels of the exchange need nothing the roles do not allow.
#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_http_server_streams_bodies_under_the_provider_role() -> Result<()> {
    let faults = lattice_harness::build_component(crate::components::FAULTS)?;
    let faults = faults.display().to_string();
    let lattice = Secured::start().await?;
    let host = lattice.host("h1").await?;
    lattice
        .cli_as(
            Some(Role::Admin),
            &[
                "ctl",
                "start",
                "actor",
                &faults,
                "--id",
                "faults",
                "--host",
                host.host_id(),
            ],
        )
        .await?
        .success()?;
    let url = lattice.nats.url();
    let seed = lattice.seed(Role::Provider).display().to_string();
    let _provider = tokio::process::Command::new(BIN)
        .args([
            "--nats-url",
            &url,
            "--lattice",
            &lattice.id,
            "--nats-nkey",
            &seed,
            "provider",
            "run",
            "httpserver",
            "--id",
            "web",
        ])
        .env("LATTICE_CONFIG", lattice.dir.path().join("config.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning lattice provider run httpserver")?;
    let port = lattice_harness::free_port();
    let address = format!("address=127.0.0.1:{port}");
    lattice
        .cli_as(
            Some(Role::Admin),
            &[
                "ctl",
                "link",
                "put",
                "faults",
                "web",
                "lattice:httpserver",
                &address,
            ],
        )
        .await?
        .success()?;
    let base = format!("http://127.0.0.1:{port}");
    crate::common::get_until(&format!("{base}/echo"), 200).await?;
    let streamed = crate::components::stream_echo(
        &format!("127.0.0.1:{port}"),
        "/stream-echo",
        &["first-chunk", "second-chunk"],
    )
    .await?;
    ensure!(
        streamed.head.starts_with("HTTP/1.1 200") && streamed.whole,
        "streamed through the provider role: {:?}, whole: {}",
        streamed.head,
        streamed.whole
    );
    Ok(())
}
