//! WASI 0.2 components as actors: the `wasmtime serve` hello component served
//! through the HTTP provider in-process and across hosts, shown as components
//! in the inventory, and bad components refused or survived.

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt};
use lattice::ctl::ActorKind;
use lattice_harness::{
    build_component, build_js_component, build_python_component, free_port, wait_until,
};

use crate::common::*;

/// The component `scripts/bench-http.sh` runs under `wasmtime serve`.
const HELLO: &str = "bench/wasi-http-hello";
/// A component that misbehaves on request.
pub(crate) const FAULTS: &str = "host/tests/components/http-faults";

/// Starts the component at `wasm` as `actor` on `host`, the HTTP provider on
/// `web` (unless it runs there already), links them on a free port; returns
/// the base URL.
async fn serve(
    t: &TestLattice,
    wasm: &std::path::Path,
    actor: &str,
    host: &str,
    web: Option<&str>,
) -> Result<String> {
    let wasm = wasm.display().to_string();
    // Python and JavaScript components (12-18 MB) compile for tens of
    // seconds, longer when the whole suite shares the cores.
    t.cli_within(
        &[
            "ctl",
            "start",
            "actor",
            &wasm,
            "--id",
            actor,
            "--host",
            host,
            "--timeout",
            "300s",
        ],
        std::time::Duration::from_secs(330),
    )
    .await?
    .success()?;
    if let Some(web) = web {
        t.start_provider_on("builtin:httpserver", web).await?;
    }
    let port = free_port();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put(actor, "httpserver", "lattice:httpserver", &[&address])
        .await?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// `lattice claims put WASM --name NAME CLAIMS...` into the lattice's
/// scratch directory; returns the new file (`NAME.wasm`).
async fn claims_put(
    t: &TestLattice,
    wasm: &std::path::Path,
    name: &str,
    claims: &[&str],
) -> Result<std::path::PathBuf> {
    let out = t.dir.path().join(format!("{name}.wasm"));
    let (wasm_s, out_s) = (wasm.display().to_string(), out.display().to_string());
    let mut args = vec!["claims", "put", &wasm_s, "--name", name, "-o", &out_s];
    args.extend_from_slice(claims);
    t.cli(&args).await?.success()?;
    Ok(out)
}

/// The `count` of a counter's JSON answer.
fn count(body: &str) -> Result<i64> {
    let v: serde_json::Value =
        serde_json::from_str(body).with_context(|| format!("a JSON count: {body:?}"))?;
    v["count"].as_i64().context("count")
}

#[tokio::test]
async fn a_wasi_http_component_serves_in_process_and_across_hosts() -> Result<()> {
    let wasm = build_component(HELLO)?;
    let t = TestLattice::start().await?;
    let app = t.host("app", &[]).await?;
    let _web = t.host("web", &[]).await?;

    // The provider on the actor's own host: called in-process.
    let url = serve(&t, &wasm, "hello-http", "app", Some("app")).await?;
    let body = get_until(&format!("{url}/"), 200).await?;
    ensure!(body == "Hello, world!", "in-process answer: {body:?}");
    let r = reqwest::get(format!("{url}/any/path?x=1")).await?;
    ensure!(r.status() == 200, "status {}", r.status());
    ensure!(
        r.headers()["content-type"] == "text/plain; charset=utf-8",
        "the component's headers pass through: {:?}",
        r.headers()
    );

    // The inventory says what it is.
    let seen = t
        .actor_on(&app, "hello-http")
        .await?
        .context("hello-http in app's inventory")?;
    ensure!(seen.kind == ActorKind::Component, "kind {:?}", seen.kind);
    let table = t.cli(&["ctl", "get", "inventory"]).await?.success()?;
    ensure!(
        table.stdout.contains("component"),
        "the inventory table shows the kind:\n{}",
        table.stdout
    );

    // The provider on another host: the request crosses NATS.
    let remote = serve(&t, &wasm, "hello-remote", "app", Some("web")).await?;
    let body = get_until(&format!("{remote}/"), 200).await?;
    ensure!(body == "Hello, world!", "cross-host answer: {body:?}");
    Ok(())
}

#[tokio::test]
async fn bad_components_get_clear_errors_and_the_host_serves_on() -> Result<()> {
    let hello = build_component(HELLO)?;
    let faults = build_component(FAULTS)?;
    let t = TestLattice::start().await?;
    let _h = t.host("h1", &[]).await?;
    let url = serve(&t, &faults, "faults", "h1", Some("h1")).await?;
    let hello_url = serve(&t, &hello, "hello-http", "h1", None).await?;
    get_until(&format!("{hello_url}/"), 200).await?;
    let client = reqwest::Client::new();

    // The request reaches the component whole.
    let r = client
        .post(format!("{url}/echo?q=1"))
        .header("x-greeting", "hi")
        .body("the body")
        .send()
        .await?;
    ensure!(r.status() == 200, "echo status {}", r.status());
    ensure!(r.headers()["x-echo"] == "yes", "echo header");
    let text = r.text().await?;
    ensure!(text == "Method::Post q=1 hi the body", "echo: {text:?}");

    // Each fault: the status, words naming what went wrong, and hello still
    // answering afterwards.
    let cases: &[(&str, u16, &[&str])] = &[
        (
            "/trap-mid-body",
            500,
            &["trapped in HttpServer.HandleRequest", "panicked"],
        ),
        ("/hang", 504, &["did not answer in time"]),
        ("/bad-header", 500, &["trapped", "panicked"]),
        ("/latin1-header", 500, &["x-name", "not visible ASCII"]),
        ("/no-response", 500, &["without setting a response"]),
    ];
    for (path, status, words) in cases {
        let sent = client.get(format!("{url}{path}")).send().await;
        match sent {
            // The provider here streams. Had the head left before the trap
            // (it rarely does; the guest traps in the same poll), the
            // response must be cut off rather than end as if whole: its body
            // fails, or, when the trap follows the first chunk at once,
            // hyper closes the connection before the head is flushed.
            Err(e) if *path == "/trap-mid-body" && !e.is_timeout() => {}
            Ok(r) if *path == "/trap-mid-body" && r.status() == 200 => {
                ensure!(
                    r.text().await.is_err(),
                    "{path}: a trapped body ended cleanly"
                );
            }
            sent => {
                let r = sent?;
                let got = r.status().as_u16();
                let text = r.text().await?;
                ensure!(got == *status, "{path}: status {got}, body {text:?}");
                for w in *words {
                    ensure!(
                        text.to_lowercase().contains(&w.to_lowercase()),
                        "{path}: {text:?} lacks {w:?}"
                    );
                }
            }
        }
        let hello = client.get(format!("{hello_url}/")).send().await?;
        ensure!(hello.status() == 200, "hello after {path}");
        let again = client.get(format!("{url}/echo")).send().await?;
        ensure!(
            again.status() == 200,
            "the faulty actor serves on after {path}"
        );
    }

    // A waPC operation on a component names what it does answer.
    let err = t
        .cli(&["call", "faults", "SayHello", "\"x\""])
        .await?
        .failure()?;
    err.stderr_has(&["HttpServer.HandleRequest"])?;
    Ok(())
}

/// How a streamed exchange with `/stream-echo` went.
pub(crate) struct Streamed {
    /// The response head, up to the blank line.
    pub(crate) head: String,
    /// Whether the chunked response ended with its last chunk (else the
    /// connection closed first).
    pub(crate) whole: bool,
}

/// POSTs `chunks` to `path` on `addr` as a chunked HTTP/1.1 body, sending
/// each only after the one before has come back in the response body: with
/// either body collected before it is passed on, this fails at its deadline.
pub(crate) async fn stream_echo(addr: &str, path: &str, chunks: &[&str]) -> Result<Streamed> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(
        format!("POST {path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut got = Vec::new();
    // Reads more of the response; false at its end.
    async fn more(
        conn: &mut tokio::net::TcpStream,
        got: &mut Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<bool> {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .context("no more of the response within 30 s")??;
        got.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }
    let mut from = 0;
    for chunk in chunks {
        conn.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await?;
        loop {
            if let Some(at) = find(&got[from..], chunk.as_bytes()) {
                from += at + chunk.len();
                break;
            }
            ensure!(
                more(&mut conn, &mut got, deadline)
                    .await
                    .with_context(|| format!("waiting for {chunk:?} to come back"))?,
                "the connection closed before {chunk:?} came back: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    conn.write_all(b"0\r\n\r\n").await?;
    while !got.ends_with(b"\r\n0\r\n\r\n") {
        if !more(&mut conn, &mut got, deadline).await? {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Streamed {
        head,
        whole: got.ends_with(b"\r\n0\r\n\r\n"),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn a_component_in_the_providers_host_streams_both_bodies() -> Result<()> {
    let faults = build_component(FAULTS)?;
    let t = TestLattice::start().await?;
    let _h = t.host("h1", &[]).await?;
    let url = serve(&t, &faults, "faults", "h1", Some("h1")).await?;
    get_until(&format!("{url}/echo"), 200).await?;
    streams_both_bodies(&url, 1 << 20).await
}

#[tokio::test]
async fn a_component_on_another_host_streams_both_bodies_over_nats() -> Result<()> {
    let faults = build_component(FAULTS)?;
    let t = TestLattice::start().await?;
    let h1 = t.host("h1", &[]).await?;
    let web = t.host("web", &[]).await?;
    // The provider on `web`, the component on `h1`: every exchange crosses
    // NATS. The limit lets a body through that is bigger than the NATS max
    // payload (1 MiB), which only a stream can carry.
    let url = serve(&t, &faults, "faults", "h1", Some("web")).await?;
    let port = url.rsplit(':').next().unwrap_or_default();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put(
        "faults",
        "httpserver",
        "lattice:httpserver",
        &[&address, "max_body_bytes=4194304"],
    )
    .await?;
    get_until(&format!("{url}/echo"), 200).await?;
    streams_both_bodies(&url, 4 << 20).await.with_context(|| {
        format!(
            "the component's host:\n{}\nthe provider's host:\n{}",
            h1.log_tail(40),
            web.log_tail(40)
        )
    })
}

/// The HTTP server's host dies (SIGKILL) while a component on another host
/// is still reading a streamed request body: the component's host finds,
/// after a silence, that nothing subscribes to the caller's reply subjects
/// any more and gives the call up, instead of holding the component and its
/// admission slot until the call deadline (ten minutes here); a caller that
/// is only quiet for a few seconds is asked, found there, and kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_call_whose_caller_died_is_given_up() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Well past the host's silence limit (1 s), well short of the deadline.
    const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    let faults = build_component(FAULTS)?;
    let t = TestLattice::start().await?;
    let h1 = t
        .host(
            "h1",
            &[
                ("--metrics-addr", "127.0.0.1:0"),
                ("--call-timeout", "600s"),
            ],
        )
        .await?;
    // The HTTP server's deadline too, or it ends the exchange itself.
    let mut web = t.host("web", &[("--call-timeout", "600s")]).await?;
    let url = serve(&t, &faults, "faults", "h1", Some("web")).await?;
    get_until(&format!("{url}/echo"), 200).await?;
    let metrics = wait_until("h1 to print its metrics address", WAIT, || {
        let url = metrics_url(&h1.log());
        async move { Ok(url) }
    })
    .await?;
    let in_flight = || async {
        let text = reqwest::get(&metrics).await?.text().await?;
        Ok::<_, anyhow::Error>(
            sample(&text, "lattice_actor_calls_in_flight{actor=\"faults\"}").unwrap_or(0.0),
        )
    };

    // A chunk of the request body goes out and comes back; the body goes on.
    let mut conn = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await?;
    conn.write_all(
        b"POST /stream-echo HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    )
    .await?;
    let mut got = Vec::new();
    for chunk in ["first", "second"] {
        if chunk == "second" {
            // A caller that is alive but quiet for longer than the host's
            // silence limit (1 s) is asked, found there, and kept: the
            // silence is the point here, not a wait for something.
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            conn.write_all(b"6\r\nsecond\r\n").await?;
        }
        while find(&got, chunk.as_bytes()).is_none() {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
                .await
                .with_context(|| format!("{chunk:?} did not come back"))??;
            ensure!(
                n > 0,
                "closed: {:?}\nh1:\n{}\nweb:\n{}",
                String::from_utf8_lossy(&got),
                h1.log_tail(20),
                web.log_tail(20)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }
    ensure!(in_flight().await? == 1.0, "the call runs on h1");

    let errors = || async {
        let faults = t.actor_on(&h1, "faults").await?;
        Ok::<_, anyhow::Error>(faults.context("faults on h1")?.errors)
    };
    let before = errors().await?;
    web.kill()?;
    wait_until(
        "h1 to give up the call of the dead caller",
        WAIT,
        || async { Ok((in_flight().await? == 0.0).then_some(())) },
    )
    .await
    .with_context(|| h1.log_tail(30))?;
    // Counted as a failed call, not left out of the host's numbers.
    let after = errors().await?;
    ensure!(
        after == before + 1,
        "the given-up call is an error: {before} errors before, {after} after"
    );
    Ok(())
}

/// Checks the streaming of both bodies through the HTTP server at `url`
/// serving the `http-faults` component with a `max` bytes body limit.
async fn streams_both_bodies(url: &str, max: usize) -> Result<()> {
    let addr = url.trim_start_matches("http://");

    // Each chunk comes back before the next is sent: neither body is
    // collected before it is passed on.
    let streamed = stream_echo(addr, "/stream-echo", &["first-chunk", "second-chunk"]).await?;
    ensure!(
        streamed.head.starts_with("HTTP/1.1 200"),
        "head {:?}",
        streamed.head
    );
    ensure!(streamed.whole, "a finished body ends with its last chunk");

    // A trap after the head and part of the body left: the response is cut
    // off, not passed off as whole.
    let streamed = stream_echo(addr, "/stream-echo?trap", &["only-chunk"]).await?;
    ensure!(
        streamed.head.starts_with("HTTP/1.1 200"),
        "head {:?}",
        streamed.head
    );
    ensure!(!streamed.whole, "a trapped body must not end cleanly");

    // A declared body past the provider's limit is refused before the
    // component sees any of it.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(
            format!(
                "POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
                max * 2
            )
            .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 12];
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            conn.read_exact(&mut head),
        )
        .await
        .context("no answer to a body over the limit")??;
        ensure!(
            head.starts_with(b"HTTP/1.1 413"),
            "over the limit: {:?}",
            String::from_utf8_lossy(&head)
        );
    }
    let client = reqwest::Client::new();

    // A big body both ways, within the limit, arrives whole and in order.
    let big: Vec<u8> = (0..max * 3 / 4).map(|i| (i % 251) as u8).collect();
    let r = client
        .post(format!("{url}/stream-echo"))
        .body(big.clone())
        .send()
        .await?;
    ensure!(r.status() == 200, "big echo: {}", r.status());
    let back = r.bytes().await.context("the big echo's body")?;
    ensure!(
        back.len() == big.len() && back[..] == big[..],
        "the big echo came back as {} bytes, not the {} sent (or out of order)",
        back.len(),
        big.len()
    );

    // An undeclared body past the limit: 413 or the component's read fails
    // (whichever sees it first), never a whole echo.
    let over: Vec<u8> = vec![b'x'; max + 1];
    let stream = futures::stream::iter(
        over.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = client
        .post(format!("{url}/stream-echo"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(r) = r {
        let status = r.status();
        let len = r.bytes().await.map(|b| b.len()).unwrap_or(0);
        ensure!(
            status == 413 || len <= max,
            "a body past the limit came back whole: {status}, {len} bytes"
        );
    }

    // The actor serves on.
    let r = client
        .post(format!("{url}/echo"))
        .body("after")
        .send()
        .await?;
    ensure!(r.status() == 200, "echo after: {}", r.status());
    ensure!(r.text().await?.ends_with("after"), "echo body");
    Ok(())
}

#[tokio::test]
async fn components_the_host_cannot_run_are_refused_naming_why() -> Result<()> {
    let t = TestLattice::start().await?;
    let _h = t.host("h1", &[]).await?;
    let dir = tempfile::tempdir()?;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "kv.wasm",
            r#"(component (import "wasi:keyvalue/batch@0.2.0-draft" (instance (export "get-many" (func)))))"#,
            &["wasi:keyvalue/batch@0.2.0-draft", "does not provide"],
        ),
        (
            "empty.wasm",
            "(component)",
            &[
                "exports neither wasi:http/incoming-handler",
                "lattice:actor/handler",
            ],
        ),
    ];
    for (file, text, words) in cases {
        let path = write_file(dir.path(), file, &wat(text)?)?;
        let out = t
            .cli(&["ctl", "start", "actor", &path.display().to_string()])
            .await?
            .failure()?;
        out.stderr_has(words)?;
    }
    Ok(())
}

#[tokio::test]
async fn signed_components_run_under_an_issuer_policy() -> Result<()> {
    let wasm = build_component(HELLO)?;
    let wasm_s = wasm.display().to_string();
    let t = TestLattice::start().await?;
    let seed = t.dir.path().join("issuer.nk").display().to_string();
    let issuer = t.cli(&["keys", "gen", "--out", &seed]).await?.success()?;
    let issuer = issuer.stdout.trim().to_string();
    let signed = t.dir.path().join("hello-signed.wasm").display().to_string();
    t.cli(&[
        "claims",
        "sign",
        &wasm_s,
        "--issuer",
        &seed,
        "--name",
        "hello-http",
        "-o",
        &signed,
    ])
    .await?
    .success()?;
    let inspected = t.cli(&["claims", "inspect", &signed]).await?.success()?;
    ensure!(
        inspected.stdout.contains("signature: valid"),
        "{}",
        inspected.stdout
    );
    let _a = t
        .host("a", &[("--allowed-issuer", issuer.as_str())])
        .await?;

    let refused = t
        .cli(&["ctl", "start", "actor", &wasm_s, "--id", "unsigned"])
        .await?
        .failure()?;
    refused.stderr_has(&["issuer policy", "not signed"])?;

    let url = serve(
        &t,
        std::path::Path::new(&signed),
        "hello-http",
        "a",
        Some("a"),
    )
    .await?;
    let body = get_until(&format!("{url}/"), 200).await?;
    ensure!(body == "Hello, world!", "signed component: {body:?}");
    Ok(())
}

/// The key-value counter component of `examples/components/rust-counter`.
const COUNTER: &str = "examples/components/rust-counter";

#[tokio::test]
async fn a_component_counts_in_the_same_jetstream_counter_as_a_wapc_actor() -> Result<()> {
    let counter = build_component(COUNTER)?;
    let kvcounter = actor_wasm("kvcounter")?.display().to_string();
    let t = TestLattice::start().await?;
    let _h = t.host("h1", &[]).await?;

    // Without claims for lattice:keyvalue the store refuses: access denied.
    let url = serve(&t, &counter, "bare", "h1", Some("h1")).await?;
    t.start_provider_on("builtin:keyvalue", "h1").await?;
    t.link_put("bare", "keyvalue", "lattice:keyvalue", &["bucket=shared"])
        .await?;
    let refused = get_until(&format!("{url}/hits"), 500).await?;
    ensure!(
        refused.contains("access denied"),
        "a component without claims: {refused:?}"
    );

    // With claims, through a link to the same bucket as the waPC kvcounter.
    let claimed = claims_put(&t, &counter, "counter", &["--contract", "lattice:keyvalue"]).await?;
    let url = serve(&t, &claimed, "counter", "h1", None).await?;
    t.link_put(
        "counter",
        "keyvalue",
        "lattice:keyvalue",
        &["bucket=shared"],
    )
    .await?;
    t.cli(&["ctl", "start", "actor", &kvcounter, "--host", "h1"])
        .await?
        .success()?;
    let port = free_port();
    let address = format!("address=127.0.0.1:{port}");
    t.link_put("kvcounter", "httpserver", "lattice:httpserver", &[&address])
        .await?;
    t.link_put(
        "kvcounter",
        "keyvalue",
        "lattice:keyvalue",
        &["bucket=shared"],
    )
    .await?;

    // kvcounter counts `/hits` under `counter/hits`: the component's path
    // `/counter/hits` is the same key.
    let wapc = format!("http://127.0.0.1:{port}/hits");
    let first = count(&get_until(&wapc, 200).await?)?;
    let client = reqwest::Client::new();
    let second = count(
        &client
            .get(format!("{url}/counter/hits"))
            .send()
            .await?
            .text()
            .await?,
    )?;
    let third = count(&client.get(&wapc).send().await?.text().await?)?;
    ensure!(
        second == first + 1 && third == first + 2,
        "one counter for both: {first}, {second}, {third}"
    );
    let peek = count(
        &client
            .get(format!("{url}/counter/hits?peek"))
            .send()
            .await?
            .text()
            .await?,
    )?;
    ensure!(peek == third, "get reads the counter: {peek} vs {third}");

    // list-keys in pages: 1,001 more keys are more than one page (1,000), so
    // the component follows a cursor to list them all.
    let keys: Vec<String> = (0..1001).map(|i| format!("k/{i:04}")).collect();
    futures::stream::iter(&keys)
        .map(|key| {
            let (client, url) = (&client, &url);
            async move {
                let r = client.get(format!("{url}/{key}")).send().await?;
                ensure!(r.status() == 200, "counting {key}: {}", r.status());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let listed = client.get(format!("{url}/?keys")).send().await?;
    let status = listed.status();
    let listed = listed.text().await?;
    ensure!(status == 200, "list-keys: {status} {listed}");
    let mut expected = keys.clone();
    expected.push("counter/hits".to_string());
    expected.sort();
    let got: Vec<&str> = listed.lines().collect();
    ensure!(
        got == expected,
        "list-keys listed {} keys (first {:?}, last {:?}), expected {}",
        got.len(),
        got.first(),
        got.last(),
        expected.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_components_spreads_counts_and_heals() -> Result<()> {
    let counter = build_component(COUNTER)?;
    let t = TestLattice::start().await?;
    let fast = ("--reconcile-interval", "500ms");
    let _a = t.host("a", &[fast]).await?;
    let mut b = t.host("b", &[fast]).await?;
    let claimed = claims_put(&t, &counter, "counter", &["--contract", "lattice:keyvalue"]).await?;
    let port = free_port();
    // The HTTP server on every host, so each replica is served in-process;
    // the listeners share the port.
    let app = format!(
        r#"
name = "components"

[[actors]]
id = "counter"
ref = "{wasm}"
replicas = 2

[[providers]]
id = "web"
ref = "builtin:httpserver"
on_every_host = true

[[providers]]
id = "kv"
ref = "builtin:keyvalue"

[[links]]
actor = "counter"
provider = "web"
contract = "lattice:httpserver"
config = {{ address = "127.0.0.1:{port}" }}

[[links]]
actor = "counter"
provider = "kv"
contract = "lattice:keyvalue"
"#,
        wasm = claimed.display()
    );
    let file = t.dir.path().join("components.toml");
    std::fs::write(&file, app)?;
    t.cli(&["app", "deploy", &file.display().to_string()])
        .await?
        .success()?;
    let spread = lattice_harness::wait_until("a replica on each host", HEAL, || async {
        let r = replicas_by_host(&t.ctl, "counter").await?;
        Ok((r.len() == 2).then_some(r))
    })
    .await?;
    ensure!(spread.iter().all(|(_, n)| *n == 1), "spread: {spread:?}");

    let url = format!("http://127.0.0.1:{port}/counter/visits");
    let first = count(&get_until(&url, 200).await?)?;
    let client = reqwest::Client::new();
    let second = count(&client.get(&url).send().await?.text().await?)?;
    ensure!(second == first + 1, "counts: {first} then {second}");

    // Host b dies without a goodbye: its replica comes back on a, and the
    // count goes on from the same JetStream counter.
    b.kill()?;
    let healed = lattice_harness::wait_until("both replicas on a", HEAL, || async {
        let r = replicas_by_host(&t.ctl, "counter").await?;
        Ok((r == [("a".to_string(), 2)]).then_some(r))
    })
    .await?;
    ensure!(healed.len() == 1, "healed: {healed:?}");
    let third = count(&get_until(&url, 200).await?)?;
    ensure!(third > second, "the count went on: {second} then {third}");
    let status = t.cli(&["app", "status", "components"]).await?.success()?;
    ensure!(status.stdout.contains("counter"), "{}", status.stdout);
    Ok(())
}

/// How long an app has to converge or heal.
const HEAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A component of Lattice's own world (`wit/actor.wit`).
const MESH_PROBE: &str = "host/tests/components/mesh-probe";

#[tokio::test]
async fn components_answer_and_make_calls_in_the_mesh() -> Result<()> {
    let probe = build_component(MESH_PROBE)?;
    let probe_s = probe.display().to_string();
    let hello = actor_wasm("hello")?.display().to_string();
    let t = TestLattice::start().await?;
    let h = t.host("h1", &[]).await?;
    t.cli(&["ctl", "start", "actor", &probe_s, "--id", "probe"])
        .await?
        .success()?;
    t.cli(&["ctl", "start", "actor", &hello]).await?.success()?;

    // `lattice call` reaches lattice:actor/handler.
    let echo = t
        .cli(&["call", "probe", "Echo", "\"hi\""])
        .await?
        .success()?;
    ensure!(echo.stdout.contains("hi"), "echo: {}", echo.stdout);
    let failed = t
        .cli(&["call", "probe", "Fail", "\"x\""])
        .await?
        .failure()?;
    failed.stderr_has(&["actor probe failed Fail", "asked to fail"])?;

    // Calls out go through the claims: none yet.
    let refused = t
        .cli(&["call", "probe", "Relay:hello:SayHello", "\"ana\""])
        .await?
        .failure()?;
    refused.stderr_has(&["may not call actor hello"])?;

    // With hello in its claims, the call goes through; a contract without
    // claims and a link is still refused, naming the contract.
    let claimed = claims_put(&t, &probe, "relay", &["--actor", "hello"]).await?;
    let claimed = claimed.display().to_string();
    t.cli(&["ctl", "start", "actor", &claimed])
        .await?
        .success()?;
    let relayed = t
        .cli(&["call", "relay", "Relay:hello:SayHello", "\"ana\""])
        .await?
        .success()?;
    ensure!(
        relayed.stdout.contains("Hello, ana!"),
        "relayed: {}",
        relayed.stdout
    );
    let contract = t
        .cli(&[
            "call",
            "relay",
            "Relay:lattice:keyvalue:KeyValue.Get",
            "{\"key\":\"k\"}",
        ])
        .await?
        .failure()?;
    contract.stderr_has(&["may not call contract lattice:keyvalue"])?;

    let seen = t.actor_on(&h, "relay").await?.context("relay runs")?;
    ensure!(seen.kind == ActorKind::Component, "kind {:?}", seen.kind);
    Ok(())
}

/// One language's examples on a host of their own: `hello` answers
/// `greeting`; GET `fault` (a raise, a throw) answers `fault_status` naming
/// the actor and the next request works; `counter`, given claims for
/// `lattice:keyvalue` and a link, counts up by one per request.
async fn language_examples(
    lang: &str,
    hello: &std::path::Path,
    counter: &std::path::Path,
    greeting: &str,
    (fault, fault_status, fault_words): (&str, u16, &str),
) -> Result<()> {
    let t = TestLattice::start().await?;
    // Short deadline: a fault that never answers ends with it.
    let h = t.host("h1", &[("--call-timeout", "5s")]).await?;
    let hello_id = format!("{lang}-hello");
    let url = serve(&t, hello, &hello_id, "h1", Some("h1")).await?;
    let body = get_until(&format!("{url}/"), 200).await?;
    ensure!(body == greeting, "{lang} hello: {body:?}");
    let client = reqwest::Client::new();
    let r = client.get(format!("{url}{fault}")).send().await?;
    let (status, text) = (r.status().as_u16(), r.text().await?);
    ensure!(
        status == fault_status && text.contains(&fault_words.replace("{id}", &hello_id)),
        "{lang} {fault}: {status} {text:?}"
    );
    let again = client.get(format!("{url}/")).send().await?;
    ensure!(
        again.status() == 200,
        "{lang} after {fault}: {}",
        again.status()
    );

    let counter_id = format!("{lang}-counter");
    let claimed = claims_put(
        &t,
        counter,
        &counter_id,
        &["--contract", "lattice:keyvalue"],
    )
    .await?;
    let url = serve(&t, &claimed, &counter_id, "h1", None).await?;
    t.start_provider_on("builtin:keyvalue", "h1").await?;
    t.link_put(&counter_id, "keyvalue", "lattice:keyvalue", &[])
        .await?;
    let first = count(&get_until(&format!("{url}/n"), 200).await?)?;
    let second = count(&client.get(format!("{url}/n")).send().await?.text().await?)?;
    ensure!(second == first + 1, "{lang} counts: {first} then {second}");
    let seen = t
        .actor_on(&h, &counter_id)
        .await?
        .context("the counter runs")?;
    ensure!(seen.kind == ActorKind::Component, "kind {:?}", seen.kind);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_components_serve_http_and_count_in_keyvalue() -> Result<()> {
    let hello = build_python_component("examples/components/python-hello", "lattice:actor/http")?;
    let counter = build_python_component(
        "examples/components/python-counter",
        "lattice:actor/http-keyvalue",
    )?;
    // A Python exception traps the instance: 500 naming the actor.
    language_examples(
        "py",
        &hello,
        &counter,
        "Hello from Python!",
        ("/raise", 500, "actor {id}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_components_serve_http_and_count_in_keyvalue() -> Result<()> {
    const JS: &str = "examples/components/js";
    let hello = build_js_component(JS, "hello.js", "http")?;
    let counter = build_js_component(JS, "counter.js", "http-keyvalue")?;
    // An uncaught exception: the engine answers 500 itself (and its
    // instance hangs until the deadline ends it); streamed, that answer
    // reaches the client at once.
    language_examples(
        "js",
        &hello,
        &counter,
        "Hello from JavaScript!",
        ("/throw", 500, "no fetch-event handler triggered"),
    )
    .await
}

/// A one-route HTTP server on a free port answering every request with
/// `body`; returns its port. Ends with the test's runtime.
async fn outside_server(body: &'static str) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn outgoing_http_needs_claims_and_an_allowed_host() -> Result<()> {
    let faults = build_component(FAULTS)?;
    let allowed = outside_server("from the outside").await?;
    let other = outside_server("from elsewhere").await?;
    let t = TestLattice::start().await?;
    let _h = t.host("h1", &[]).await?;
    let client = reqwest::Client::new();

    // No claims: refused.
    let url = serve(&t, &faults, "no-claims", "h1", Some("h1")).await?;
    get_until(&format!("{url}/echo"), 200).await?;
    let r = client
        .get(format!("{url}/fetch?http://127.0.0.1:{allowed}/"))
        .send()
        .await?;
    let (status, text) = (r.status().as_u16(), r.text().await?);
    ensure!(
        status == 502 && text.contains("HttpRequestDenied"),
        "without claims: {status} {text:?}"
    );

    // Claims and a link allowing one host:port.
    let claimed = claims_put(
        &t,
        &faults,
        "fetcher",
        &["--contract", "lattice:httpclient"],
    )
    .await?;
    let url = serve(&t, &claimed, "fetcher", "h1", None).await?;
    let allow = format!("allowed_hosts=127.0.0.1:{allowed}");
    t.link_put("fetcher", "host", "lattice:httpclient", &[&allow])
        .await?;
    let fetched = get_until(&format!("{url}/fetch?http://127.0.0.1:{allowed}/x"), 200).await?;
    ensure!(fetched == "from the outside", "allowed: {fetched:?}");
    let r = client
        .get(format!("{url}/fetch?http://127.0.0.1:{other}/"))
        .send()
        .await?;
    let (status, text) = (r.status().as_u16(), r.text().await?);
    ensure!(
        status == 502 && text.contains("HttpRequestDenied"),
        "another port: {status} {text:?}"
    );
    Ok(())
}
