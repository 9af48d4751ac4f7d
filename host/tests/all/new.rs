//! `lattice new` and `lattice build`: a project for each language, made in an
//! empty directory outside the workspace, built with its toolchain and the
//! SDK it carries, started on a host and called; and the bad inputs.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use lattice_harness::{go_binary, go_cache_dir, workspace_root};

use crate::common::{TestLattice, run_cli, run_cli_within};

/// A cold Rust build compiles the SDK's dependencies once.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The environment a build gets: the harness's Go caches (no downloads) and
/// `go` on PATH; Rust builds share one target directory across test runs.
fn toolchain_env() -> Result<Vec<(String, String)>> {
    let go = go_binary()?;
    let go_dir = go.parent().context("go has no directory")?;
    let path = format!(
        "{}:{}",
        go_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cache = go_cache_dir();
    let dir = |p: &Path| p.display().to_string();
    Ok(vec![
        ("PATH".into(), path),
        ("GOCACHE".into(), dir(&cache.join("cache"))),
        ("GOPATH".into(), dir(&cache.join("path"))),
        ("GOMODCACHE".into(), dir(&cache.join("path/pkg/mod"))),
        ("GOPROXY".into(), "off".into()),
        ("GOTOOLCHAIN".into(), "local".into()),
        ("GOTELEMETRY".into(), "off".into()),
        ("GOWORK".into(), "off".into()),
        ("GOENV".into(), "off".into()),
        (
            "CARGO_TARGET_DIR".into(),
            dir(&workspace_root().join("target/new-actors")),
        ),
        (
            "COMPONENTIZE_PY".into(),
            dir(&lattice_harness::componentize_py()?),
        ),
        (
            "COMPONENTIZE_JS".into(),
            dir(&lattice_harness::componentize_js()?),
        ),
    ])
}

async fn lattice(args: &[&str]) -> Result<crate::common::CliOutput> {
    let env = toolchain_env()?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_cli_within(args, &env, BUILD_TIMEOUT).await
}

#[tokio::test]
async fn a_new_project_in_each_language_builds_starts_and_answers() -> Result<()> {
    let lat = TestLattice::start().await?;
    let _host = lat.host("new-host", &[]).await?;
    let scratch = tempfile::Builder::new().prefix("lattice-new-").tempdir()?;
    for language in ["c", "go", "rust"] {
        let name = format!("demo-{language}");
        let dir = scratch.path().join(&name);
        let dir_arg = dir.display().to_string();
        let out = lattice(&["new", language, &name, "--dir", &dir_arg])
            .await?
            .success()?;
        ensure!(out.stdout.contains("lattice build"), "{}", out.stdout);

        let out = lattice(&["build", &dir_arg, "--output", "json"])
            .await?
            .success()?;
        let built: serde_json::Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("build output: {}", out.stdout))?;
        let module = dir.join("build").join(format!("{name}.wasm"));
        ensure!(
            built["module"] == module.display().to_string() && built["claims"]["name"] == name,
            "{language}: {built}"
        );
        let module_arg = module.display().to_string();
        lat.cli(&["ctl", "start", "actor", &module_arg])
            .await?
            .success()?;
        let reply: String = lat.call(&name, "SayHello", "world").await?;
        assert_eq!(reply, "Hello, world!", "{language}");
        let inspect = lat
            .cli(&["claims", "inspect", &module_arg])
            .await?
            .success()?;
        ensure!(
            inspect.stdout.contains(&format!("name:      {name}")),
            "{}",
            inspect.stdout
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_component_project_in_rust_python_and_javascript_serves_http() -> Result<()> {
    let py = lattice_harness::componentize_py()?.display().to_string();
    let js = lattice_harness::componentize_js()?.display().to_string();
    let target = workspace_root()
        .join("target/new-actors")
        .display()
        .to_string();
    let env = [
        ("COMPONENTIZE_PY", py.as_str()),
        ("COMPONENTIZE_JS", js.as_str()),
        // Rust components share the target directory of new Rust projects.
        ("CARGO_TARGET_DIR", target.as_str()),
    ];
    let lat = TestLattice::start().await?;
    let _host = lat.host("new-host", &[]).await?;
    lat.cli(&["ctl", "start", "provider", "builtin:httpserver"])
        .await?
        .success()?;
    let scratch = tempfile::Builder::new().prefix("lattice-new-").tempdir()?;
    for language in ["rust-component", "python", "js"] {
        let name = format!("web-{language}");
        let dir = scratch.path().join(&name);
        let dir_arg = dir.display().to_string();
        let out = run_cli(&["new", language, &name, "--dir", &dir_arg], &env)
            .await?
            .success()?;
        ensure!(out.stdout.contains("link put"), "{}", out.stdout);
        run_cli_within(&["build", &dir_arg], &env, BUILD_TIMEOUT)
            .await?
            .success()?;
        let module = dir.join("build").join(format!("{name}.wasm"));
        let module_arg = module.display().to_string();
        lat.cli_within(
            &["ctl", "start", "actor", &module_arg, "--timeout", "300s"],
            Duration::from_secs(330),
        )
        .await?
        .success()?;
        let port = lattice_harness::free_port();
        let address = format!("address=127.0.0.1:{port}");
        lat.link_put(&name, "httpserver", "lattice:httpserver", &[&address])
            .await?;
        let body = crate::common::get_until(&format!("http://127.0.0.1:{port}/hi"), 200).await?;
        ensure!(
            body.contains(&format!("Hello from {name}!")) && body.contains("/hi"),
            "{language}: {body:?}"
        );
    }
    Ok(())
}

/// `lattice dev` on a component project in each component language: it
/// builds, starts the HTTP server and links it as `lattice.toml` says, serves,
/// and replaces the component after a save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_a_component_over_http_and_replaces_it_on_save() -> Result<()> {
    let lat = TestLattice::start().await?;
    let _host = lat.host("dev-joined", &[]).await?;
    let scratch = tempfile::Builder::new().prefix("lattice-dev-").tempdir()?;
    for (language, source) in [
        ("rust-component", "src/lib.rs"),
        ("python", "app.py"),
        ("js", "app.js"),
    ] {
        let name = format!("live-{language}");
        let dir = scratch.path().join(&name);
        let dir_arg = dir.display().to_string();
        lattice(&["new", language, &name, "--dir", &dir_arg])
            .await?
            .success()?;
        let port = lattice_harness::free_port();
        let project = dir.join("lattice.toml");
        let mut toml = std::fs::read_to_string(&project)?;
        toml.push_str(&format!(
            "\n[[dev.links]]\ncontract = \"lattice:httpserver\"\nprovider = \"builtin:httpserver\"\nconfig = {{ address = \"127.0.0.1:{port}\" }}\n"
        ));
        std::fs::write(&project, toml)?;

        let (mut dev, out) = spawn_dev(&lat, &dir_arg)?;

        let page = format!("http://127.0.0.1:{port}/page");
        let body =
            lattice_harness::wait_until("the component to answer", BUILD_TIMEOUT, || async {
                Ok(match reqwest::get(&page).await {
                    Ok(r) if r.status() == 200 => Some(r.text().await?),
                    _ => None,
                })
            })
            .await
            .with_context(|| {
                format!(
                    "{language}: dev did not serve the component:\n{}",
                    dump(&out)
                )
            })?;
        ensure!(
            body.starts_with(&format!("Hello from {name}!")) && body.contains("/page"),
            "{language}: {body:?}"
        );

        let source = dir.join(source);
        let text = std::fs::read_to_string(&source)?;
        std::fs::write(&source, text.replace("Hello from", "Hi from"))?;
        lattice_harness::wait_until("the new component", BUILD_TIMEOUT, || async {
            Ok(match reqwest::get(&page).await {
                Ok(r) if r.status() == 200 => r.text().await?.starts_with("Hi from").then_some(()),
                _ => None,
            })
        })
        .await
        .with_context(|| format!("{language}: the save did not take:\n{}", dump(&out)))?;
        ensure!(saw(&out, &format!("replaced {name}")), "{}", dump(&out));

        stop_dev(&mut dev, &out)
            .await
            .with_context(|| language.to_string())?;
    }
    Ok(())
}

#[tokio::test]
async fn new_and_build_refuse_bad_input_by_name() -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("lattice-new-").tempdir()?;
    let at = |p: &str| scratch.path().join(p).display().to_string();

    run_cli(&["new", "cobol", "x"], &[])
        .await?
        .failure()?
        .stderr_has(&["cobol", "rust", "go", "c"])?;
    run_cli(&["new", "c", "bad name", "--dir", &at("bad")], &[])
        .await?
        .failure()?
        .stderr_has(&["bad name"])?;
    run_cli(&["new", "rust", "9lives", "--dir", &at("nine")], &[])
        .await?
        .failure()?
        .stderr_has(&["9lives", "start with a letter"])?;

    let dir = at("taken");
    run_cli(&["new", "c", "taken", "--dir", &dir], &[])
        .await?
        .success()?;
    run_cli(&["new", "c", "taken", "--dir", &dir], &[])
        .await?
        .failure()?
        .stderr_has(&["already exists"])?;

    // Signed when an issuer is given; an unusable seed is named.
    let issuer = at("issuer.nk");
    run_cli(&["keys", "gen", "--out", &issuer], &[])
        .await?
        .success()?;
    let out = lattice(&["build", &dir, "--issuer", &issuer, "--output", "json"])
        .await?
        .success()?;
    let built: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let issuer_key = built["issuer"].as_str().unwrap_or_default().to_string();
    ensure!(issuer_key.starts_with('A'), "not signed: {built}");
    let module = scratch
        .path()
        .join("taken/build/taken.wasm")
        .display()
        .to_string();
    let inspect = run_cli(&["claims", "inspect", &module], &[])
        .await?
        .success()?;
    ensure!(
        inspect.stdout.contains(&issuer_key) && inspect.stdout.contains("signature: valid"),
        "{}",
        inspect.stdout
    );
    std::fs::write(at("junk.nk"), "not a seed")?;
    lattice(&["build", &dir, "--issuer", &at("junk.nk")])
        .await?
        .failure()?
        .stderr_has(&["junk.nk", "lattice keys gen"])?;

    run_cli(&["build", &at("")], &[])
        .await?
        .failure()?
        .stderr_has(&["lattice.toml", "lattice new"])?;

    // A compile error: the compiler's words and the file, no module.
    let source = scratch.path().join("taken/taken.c");
    std::fs::write(&source, "int broken( {\n")?;
    lattice(&["build", &dir])
        .await?
        .failure()?
        .stderr_has(&["taken.c", "clang failed"])?;
    let last_good = std::fs::read(scratch.path().join("taken/build/taken.wasm"))?;
    ensure!(!last_good.is_empty(), "the last good module is kept");

    // lattice.toml with an unknown language, an unknown key, a bad contract.
    let manifest = scratch.path().join("taken/lattice.toml");
    let good = std::fs::read_to_string(&manifest)?;
    for (bad, words) in [
        (
            good.replace("language = \"c\"", "language = \"cobol\""),
            &["cobol", "language"][..],
        ),
        (format!("{good}\n[extra]\n"), &["extra"][..]),
        (
            good.replace("contracts = []", "contracts = [\"nocolon\"]"),
            &["nocolon"][..],
        ),
    ] {
        std::fs::write(&manifest, bad)?;
        std::fs::write(&source, "")?;
        lattice(&["build", &dir])
            .await?
            .failure()?
            .stderr_has(words)?;
    }
    Ok(())
}

/// Output lines of a process, collected as they come.
type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Lines) {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
}

/// Everything `lattice dev` printed so far, for failure messages.
fn dump(lines: &Lines) -> String {
    lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
}

/// `lattice dev DIR` on `lat`'s lattice (polling every 100 ms), with the
/// toolchains of [`toolchain_env`]; its stdout and stderr are collected.
fn spawn_dev(lat: &TestLattice, dir: &str) -> Result<(tokio::process::Child, Lines)> {
    let url = lat.nats.url();
    let mut cmd = tokio::process::Command::new(crate::common::BIN);
    crate::common::without_lattice_env(cmd.as_std_mut());
    cmd.args([
        "--nats-url",
        &url,
        "--lattice",
        &lat.id,
        "dev",
        dir,
        "--poll",
        "100ms",
    ])
    .envs(toolchain_env()?)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut dev = cmd.spawn().context("starting lattice dev")?;
    let out: Lines = Default::default();
    collect(dev.stdout.take().context("stdout")?, out.clone());
    collect(dev.stderr.take().context("stderr")?, out.clone());
    Ok((dev, out))
}

/// Ctrl-C to `dev`; fails unless it exits successfully within 30 s.
async fn stop_dev(dev: &mut tokio::process::Child, out: &Lines) -> Result<()> {
    let pid = dev.id().context("dev exited early")? as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = tokio::time::timeout(Duration::from_secs(30), dev.wait())
        .await
        .with_context(|| format!("dev did not stop:\n{}", dump(out)))??;
    ensure!(status.success(), "dev exited with {status}:\n{}", dump(out));
    Ok(())
}

fn saw(lines: &Lines, needle: &str) -> bool {
    lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|l| l.contains(needle))
}

/// `lattice dev` for each language: C on a lattice with no host (dev starts
/// one and shows its call log), Go and Rust joining a running host. Each
/// answers, is replaced after a save, and is gone after Ctrl-C.
#[tokio::test]
async fn dev_runs_each_language_and_replaces_it_on_save() -> Result<()> {
    let lat = TestLattice::start().await?;
    let scratch = tempfile::Builder::new().prefix("lattice-dev-").tempdir()?;
    let mut joined_host = None;
    for language in ["c", "go", "rust"] {
        if language != "c" && joined_host.is_none() {
            joined_host = Some(lat.host("dev-joined", &[]).await?);
        }
        let name = format!("live-{language}");
        let dir = scratch.path().join(&name);
        let dir_arg = dir.display().to_string();
        lattice(&["new", language, &name, "--dir", &dir_arg])
            .await?
            .success()?;

        let (mut dev, out) = spawn_dev(&lat, &dir_arg)?;

        let started = lattice_harness::wait_until("dev to start", BUILD_TIMEOUT, || async {
            Ok(saw(&out, "watching").then_some(()))
        })
        .await;
        started.with_context(|| format!("{language}: dev did not start:\n{}", dump(&out)))?;
        let reply: String = lat.call(&name, "SayHello", "world").await?;
        assert_eq!(reply, "Hello, world!", "{language}");

        let source = match language {
            "c" => dir.join(format!("{name}.c")),
            "go" => dir.join("main.go"),
            _ => dir.join("src/lib.rs"),
        };
        let text = std::fs::read_to_string(&source)?;
        std::fs::write(&source, text.replace("Hello, ", "Hi, "))?;
        let replaced = lattice_harness::wait_until("the new module", BUILD_TIMEOUT, || async {
            let reply = lat.call::<_, String>(&name, "SayHello", "world").await;
            Ok((reply.as_deref().ok() == Some("Hi, world!")).then_some(()))
        })
        .await;
        replaced.with_context(|| format!("{language}: the save did not take:\n{}", dump(&out)))?;
        ensure!(saw(&out, &format!("replaced {name}")), "{}", dump(&out));
        if language != "c" {
            // Joined: dev lists the calls that reach the actor over NATS.
            ensure!(
                saw(&out, &format!("call {name} SayHello")),
                "no call line:\n{}",
                dump(&out)
            );
        }
        if language == "c" {
            // dev started the host, whose log has a line per call.
            ensure!(
                saw(&out, "dev-live-c") || saw(&out, "starting one"),
                "{}",
                dump(&out)
            );
            ensure!(
                saw(&out, "SayHello"),
                "no call line in the dev host's log:\n{}",
                dump(&out)
            );
        }

        // Ctrl-C: the actor (and the host dev started) stop.
        stop_dev(&mut dev, &out)
            .await
            .with_context(|| language.to_string())?;
        let left = lat.ctl.inventories(Duration::from_secs(1)).await?;
        ensure!(
            !left
                .iter()
                .any(|i| i.actors.iter().any(|a| a.id.as_str() == name)),
            "{language}: {name} still runs after dev stopped"
        );
        if language == "c" {
            ensure!(
                !left.iter().any(|i| i.host.name == "dev-live-c"),
                "the host dev started still runs"
            );
        }
    }
    Ok(())
}
