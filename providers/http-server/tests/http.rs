//! The HTTP server provider on 127.0.0.1, driven by a real HTTP client.
//!
//! The actor side is a small in-test [`ActorCaller`] that stands in for a wasm
//! actor (end-to-end tests with real actors live in the host crate).

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lattice::contracts::httpserver::{HANDLE_REQUEST, HttpRequest, HttpResponse};
use lattice_provider::{
    ActorCaller, BoxFuture, CallError, LinkDefinition, Provider, ProviderCall, ProviderContext,
    ProviderError,
};
use lattice_provider_httpserver::HttpServerProvider;

/// Plays the actor. What it does depends on the request path.
#[derive(Default)]
struct TestActor {
    calls: AtomicUsize,
    /// Calls to `/lostonce` so far: the first is "lost" (its host died).
    lost_once: AtomicUsize,
}

impl ActorCaller for TestActor {
    fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        assert_eq!(operation, HANDLE_REQUEST);
        let actor = actor.to_string();
        let lost_before = match rmp_serde::from_slice::<HttpRequest>(&payload) {
            Ok(req) if req.path == "/lostonce" => self.lost_once.fetch_add(1, Ordering::Relaxed),
            _ => usize::MAX,
        };
        Box::pin(async move {
            let req: HttpRequest = rmp_serde::from_slice(&payload)
                .map_err(|e| CallError::Failed(format!("bad request payload: {e}")))?;
            let reply = |r: HttpResponse| Ok(rmp_serde::to_vec_named(&r).unwrap());
            let path = req.path.clone();
            match path.as_str() {
                "/echo" => reply(
                    HttpResponse::new(200, req.body)
                        .with_header("content-type", "application/octet-stream"),
                ),
                "/fail" => Err(CallError::Failed(format!("boom{}", "x".repeat(500)))),
                "/notrunning" => Err(CallError::NotRunning(actor)),
                "/timeout" => Err(CallError::Timeout(actor)),
                "/busy" => Err(CallError::Busy(format!(
                    "actor {actor} is busy: 2 calls in flight and 4 queued on host h; retry later"
                ))),
                "/garbage" => Ok(b"\xc1\xc1 not msgpack".to_vec()),
                "/lostonce" if lost_before == 0 => Err(CallError::Lost(format!(
                    "no reply and no sign of life from the host serving actor {actor}"
                ))),
                "/lostonce" => reply(HttpResponse::new(200, "second try")),
                "/sleep" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    reply(HttpResponse::new(200, "late"))
                }
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    reply(HttpResponse::new(200, "slow done"))
                }
                "/badheaders" => reply(
                    HttpResponse::new(200, "ok")
                        .with_header("bad name", "x")
                        .with_header("x-newline", "a\r\nb")
                        .with_header("x-ok", "fine")
                        .with_header("x-multi", "1")
                        .with_header("x-multi", "2")
                        .with_header("content-length", "999")
                        .with_header("transfer-encoding", "chunked"),
                ),
                "/panic" => panic!("test actor panics"),
                "/whoami" => reply(HttpResponse::new(200, actor)),
                p if p.starts_with("/status/") => {
                    let status: u16 = p["/status/".len()..].parse().unwrap();
                    reply(HttpResponse::new(status, "status"))
                }
                // Anything else: the request itself, as msgpack, for inspection.
                _ => reply(HttpResponse::new(
                    200,
                    rmp_serde::to_vec_named(&req).unwrap(),
                )),
            }
        })
    }
}

async fn context(actors: Arc<dyn ActorCaller>) -> ProviderContext {
    // The provider never uses NATS; a client that never connects is enough.
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .unwrap();
    ProviderContext {
        lattice: Default::default(),
        provider_id: "http".parse().unwrap(),
        nats,
        actors,
    }
}

async fn provider_with(p: HttpServerProvider) -> (HttpServerProvider, Arc<TestActor>) {
    let actor = Arc::new(TestActor::default());
    p.start(context(actor.clone()).await).await.unwrap();
    (p, actor)
}

async fn provider() -> (HttpServerProvider, Arc<TestActor>) {
    provider_with(HttpServerProvider::new()).await
}

fn link(actor: &str, link_name: &str, config: &[(&str, &str)]) -> LinkDefinition {
    LinkDefinition {
        actor_id: actor.parse().unwrap(),
        provider_id: "http".parse().unwrap(),
        contract: "lattice:httpserver".parse().unwrap(),
        link_name: link_name.parse().unwrap(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Links `actor` on 127.0.0.1:0 and returns the bound address.
async fn serve(p: &HttpServerProvider, actor: &str, extra: &[(&str, &str)]) -> SocketAddr {
    let mut config = vec![("address", "127.0.0.1:0")];
    config.extend_from_slice(extra);
    p.put_link(link(actor, "default", &config)).await.unwrap();
    p.bound_address(actor, "default").unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

async fn inspect(resp: reqwest::Response) -> HttpRequest {
    assert_eq!(resp.status(), 200);
    rmp_serde::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// Sends raw bytes and reads one HTTP/1.1 response (status line, headers, and a
/// `content-length` body) from the stream.
fn raw_exchange(
    stream: &mut TcpStream,
    request: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    stream.write_all(request).unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(n, 1, "connection closed inside the response head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[tokio::test]
async fn get_and_post_with_query_path_and_repeated_headers() {
    let (p, _) = provider().await;
    let addr = serve(&p, "hello", &[]).await;
    let c = client();

    let req = inspect(
        c.get(url(addr, "/items/a%20b/42?x=1&y=two%20words&x=3"))
            .header("X-Rep", "a")
            .header("x-rep", "b")
            .header("x-utf8", "café")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/items/a%20b/42");
    assert_eq!(req.query, "x=1&y=two%20words&x=3");
    assert_eq!(req.headers["x-rep"], ["a", "b"]);
    assert_eq!(req.headers["x-utf8"], ["café"]);
    assert_eq!(req.headers["host"], [addr.to_string()]);
    assert!(req.body.is_empty());

    let req = inspect(
        c.post(url(addr, "/submit"))
            .header("content-type", "text/plain")
            .body("hello body")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/submit");
    assert_eq!(req.query, "");
    assert_eq!(req.headers["content-type"], ["text/plain"]);
    assert_eq!(req.headers["content-length"], ["10"]);
    assert_eq!(req.body, b"hello body");

    // Any method goes to the actor.
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = inspect(c.request(m, url(addr, "/m")).send().await.unwrap()).await;
        assert_eq!(req.method, method);
    }
    // HEAD gets the actor's status and headers, no body.
    let resp = c.head(url(addr, "/status/204")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    p.shutdown().await;
}

#[tokio::test]
async fn binary_bodies_round_trip() {
    let (p, _) = provider().await;
    let addr = serve(&p, "echo", &[]).await;
    let c = client();
    let all: Vec<u8> = (0..=255u8).collect();
    let resp = c
        .post(url(addr, "/echo"))
        .body(all.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().await.unwrap(), all);

    // Big enough to arrive in many frames.
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let resp = c
        .post(url(addr, "/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &big[..]);

    // Same through a chunked upload (no content-length).
    let addr2 = addr;
    let echoed = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr2);
        let mut req =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in [&[0u8, 1, 2][..], &[255, 254][..], &[0, 0, 10, 13][..]] {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        raw_exchange(&mut s, &req)
    })
    .await
    .unwrap();
    assert_eq!(echoed.0, 200);
    assert_eq!(echoed.2, [0, 1, 2, 255, 254, 0, 0, 10, 13]);
    p.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (p, actor) = provider().await;
    let addr = serve(&p, "ka", &[]).await;
    let results = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let first = raw_exchange(
            &mut s,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        );
        let second = raw_exchange(&mut s, b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n");
        // Pipelined: two requests in one write.
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\ny",
        )
        .unwrap();
        let third = read_response(&mut s);
        let fourth = read_response(&mut s);
        (first, second, third, fourth)
    })
    .await
    .unwrap();
    assert_eq!((results.0.0, &results.0.2[..]), (200, &b"abc"[..]));
    assert_eq!((results.1.0, &results.1.2[..]), (200, &b"ka"[..]));
    assert_eq!(results.2.2, b"x");
    assert_eq!(results.3.2, b"y");
    assert_eq!(actor.calls.load(Ordering::Relaxed), 4);
    p.shutdown().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (p, actor) = provider().await;
    let addr = serve(&p, "limited", &[("max_body_bytes", "1000")]).await;
    let c = client();
    let resp = c
        .post(url(addr, "/echo"))
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 1000);

    let resp = c
        .post(url(addr, "/echo"))
        .body(vec![7u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("1000 bytes"));

    // Chunked, so the size is only known while reading: refused all the same.
    let (status, headers, _) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let mut req =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            req.extend_from_slice(b"190\r\n");
            req.extend_from_slice(&[1u8; 400]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        raw_exchange(&mut s, &req)
    })
    .await
    .unwrap();
    assert_eq!(status, 413);
    assert_eq!(headers["connection"], "close");
    assert_eq!(
        actor.calls.load(Ordering::Relaxed),
        1,
        "the actor saw only the first"
    );

    // The link can raise its limit in place.
    p.put_link(link(
        "limited",
        "default",
        &[("address", "127.0.0.1:0"), ("max_body_bytes", "5000")],
    ))
    .await
    .unwrap();
    assert_eq!(
        p.bound_address("limited", "default"),
        Some(addr),
        "same listener"
    );
    let resp = c
        .post(url(addr, "/echo"))
        .body(vec![7u8; 4000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    p.shutdown().await;
}

#[tokio::test]
async fn actor_failures_map_to_status_codes() {
    let (p, actor) = provider().await;
    let addr = serve(&p, "faulty", &[]).await;
    let c = client();
    let get = |path: &'static str| {
        let c = c.clone();
        async move {
            let resp = c.get(url(addr, path)).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };

    let (status, body) = get("/fail").await;
    assert_eq!(status, 500);
    assert!(body.starts_with("actor error: boomxxx"), "{body}");
    assert!(
        body.len() < 260,
        "error text is cut short: {} bytes",
        body.len()
    );

    let (status, body) = get("/notrunning").await;
    assert_eq!(status, 503);
    assert!(body.contains("faulty"), "{body}");

    let (status, _) = get("/timeout").await;
    assert_eq!(status, 504);

    let resp = c.get(url(addr, "/busy")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.starts_with("actor faulty is busy: 2 calls in flight"),
        "{body}"
    );

    // The host serving a call died mid-call: a GET is sent once more (and
    // answered by another replica); a POST may have run, so it gets 502.
    let (status, body) = get("/lostonce").await;
    assert_eq!((status, body.as_str()), (200, "second try"));
    assert_eq!(actor.lost_once.load(Ordering::Relaxed), 2, "one retry");
    let (p2, _) = provider().await;
    let addr2 = serve(&p2, "faulty", &[]).await;
    let resp = c.post(url(addr2, "/lostonce")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("no sign of life"), "{body}");

    let (status, body) = get("/garbage").await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with("actor returned a malformed response"),
        "{body}"
    );

    for bad in ["/status/1000", "/status/99", "/status/0", "/status/101"] {
        let (status, body) = get(bad).await;
        assert_eq!(status, 500, "{bad}");
        assert!(body.contains("status"), "{body}");
    }
    for ok in [200u16, 201, 302, 404, 418, 599, 999] {
        let path: &'static str = Box::leak(format!("/status/{ok}").into_boxed_str());
        assert_eq!(get(path).await.0, ok);
    }

    let (status, _) = get("/panic").await;
    assert_eq!(status, 500);
    // ... and the server carries on.
    assert_eq!(get("/whoami").await, (200, "faulty".to_string()));
    p.shutdown().await;
}

#[tokio::test]
async fn invalid_response_headers_are_dropped() {
    let (p, _) = provider().await;
    let addr = serve(&p, "hdrs", &[]).await;
    let resp = client().get(url(addr, "/badheaders")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-ok"], "fine");
    let multi: Vec<_> = h.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2"]);
    assert!(!h.contains_key("x-newline"));
    assert!(!h.contains_key("transfer-encoding"));
    assert_eq!(h["content-length"], "2");
    assert_eq!(resp.text().await.unwrap(), "ok");
    p.shutdown().await;
}

#[tokio::test]
async fn request_timeout_is_a_backstop() {
    let (p, _) =
        provider_with(HttpServerProvider::new().with_request_timeout(Duration::from_millis(300)))
            .await;
    let addr = serve(&p, "sleepy", &[]).await;
    let started = Instant::now();
    let resp = client().get(url(addr, "/sleep")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(resp.text().await.unwrap().contains("timed out"));
    p.shutdown().await;
}

#[tokio::test]
async fn malformed_http_is_400_and_the_server_keeps_serving() {
    let (p, _) = provider().await;
    let addr = serve(&p, "sturdy", &[]).await;
    let (status, _, _) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        raw_exchange(&mut s, b"GARBAGE\r\n\r\n")
    })
    .await
    .unwrap();
    assert_eq!(status, 400);
    let (status, _, _) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        raw_exchange(&mut s, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")
    })
    .await
    .unwrap();
    assert_eq!(status, 400);
    let resp = client().get(url(addr, "/whoami")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "sturdy");
    p.shutdown().await;
}

#[tokio::test]
async fn port_in_use_fails_that_link_only() {
    let (p, _) = provider().await;
    let good = serve(&p, "good", &[]).await;

    // A socket of another program: std's bind sets no SO_REUSEPORT, so the
    // provider's SO_REUSEPORT listener cannot share its port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let err = p
        .put_link(link("blocked", "web", &[("address", &taken_addr)]))
        .await
        .unwrap_err();
    let ProviderError::Link {
        actor_id,
        link_name,
        reason,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((actor_id.as_str(), link_name.as_str()), ("blocked", "web"));
    assert!(
        reason.contains(&taken_addr) && reason.contains("in use"),
        "{reason}"
    );

    let health = p.health();
    assert!(!health.healthy);
    assert!(health.message.contains("blocked"), "{}", health.message);
    let errors = p.link_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].actor_id.as_str(), "blocked");
    assert_eq!(p.bound_address("blocked", "web"), None);

    // Another link of this provider on a serving address: named in the error.
    let err = p
        .put_link(link(
            "copycat",
            "default",
            &[("address", &good.to_string())],
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use") && err.contains("good"), "{err}");
    // Also when the address only overlaps (all interfaces, same port): the
    // kernel would let SO_REUSEPORT share it and split connections.
    let err = p
        .put_link(link(
            "copycat",
            "default",
            &[("address", &format!("0.0.0.0:{}", good.port()))],
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use") && err.contains("good"), "{err}");

    // The other link is untouched.
    let resp = client().get(url(good, "/whoami")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "good");

    // Once the port is free, putting the link again works and clears the error.
    drop(taken);
    p.put_link(link("blocked", "web", &[("address", &taken_addr)]))
        .await
        .unwrap();
    p.delete_link(link("copycat", "default", &[])).await;
    assert!(p.health().healthy, "{}", p.health().message);
    let resp = client()
        .get(format!("http://{taken_addr}/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "blocked");
    assert_eq!(p.link_statuses().len(), 2);
    p.shutdown().await;
}

/// Two instances of the provider (as in two hosts on one machine) listen on
/// one port through SO_REUSEPORT; once one stops, every new connection goes to
/// the other.
#[tokio::test]
async fn instances_share_a_port_and_survive_one_stopping() {
    let (a, actor_a) = provider().await;
    let (b, actor_b) = provider().await;
    let addr = serve(&a, "shared", &[]).await;
    b.put_link(link("shared", "default", &[("address", &addr.to_string())]))
        .await
        .unwrap();
    assert_eq!(b.bound_address("shared", "default"), Some(addr));
    assert!(a.health().healthy && b.health().healthy);

    // New connections are spread by the kernel; both serve (poll with a bound).
    let deadline = Instant::now() + Duration::from_secs(20);
    while actor_a.calls.load(Ordering::Relaxed) == 0 || actor_b.calls.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "both instances got connections");
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let resp = fresh.get(url(addr, "/whoami")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "shared");
    }

    a.shutdown().await;
    let before = actor_b.calls.load(Ordering::Relaxed);
    for _ in 0..20 {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let resp = fresh.get(url(addr, "/whoami")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(actor_b.calls.load(Ordering::Relaxed), before + 20);
    b.shutdown().await;
}

#[tokio::test]
async fn bad_link_config_is_a_link_error() {
    let (p, _) = provider().await;
    let any = ("address", "127.0.0.1:0");
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[], "address"),
        (&[("address", "not-an-address")], "not-an-address"),
        (&[("address", "127.0.0.1:99999")], "127.0.0.1:99999"),
        (
            &[any, ("max_body_bytes", "lots")],
            "max_body_bytes=\"lots\"",
        ),
        (
            &[any, ("max_body_bytes", "1000000000000")],
            "max_body_bytes=\"1000000000000\" is out of range: 1 to 67108864 bytes",
        ),
        (&[any, ("max_body_bytes", "0")], "out of range"),
        (
            &[any, ("max_connections", "0")],
            "max_connections=\"0\" is out of range: 1 to 65536 connections",
        ),
        (
            &[any, ("max_connections", "-1")],
            "max_connections=\"-1\" is not a number",
        ),
        (
            &[any, ("idle_timeout", "soon")],
            "idle_timeout=\"soon\" is not a duration",
        ),
        (
            &[any, ("header_timeout", "0s")],
            "header_timeout=\"0s\" is out of range",
        ),
    ];
    for (config, expected) in cases {
        let err = p
            .put_link(link("conf", "default", config))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Link { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(!p.health().healthy);
}

async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ if Instant::now() > deadline => panic!("{addr} still accepts connections"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn delete_link_stops_serving_after_in_flight_requests() {
    let (p, _) = provider().await;
    let addr = serve(&p, "brief", &[]).await;
    let c = client();
    assert_eq!(
        c.get(url(addr, "/whoami")).send().await.unwrap().status(),
        200
    );

    let in_flight = tokio::spawn({
        let c = c.clone();
        async move {
            let resp = c.get(url(addr, "/slow")).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    p.delete_link(link("brief", "default", &[])).await;
    assert_eq!(p.bound_address("brief", "default"), None);
    wait_refused(addr).await;
    assert_eq!(
        in_flight.await.unwrap(),
        (reqwest::StatusCode::OK, "slow done".to_string())
    );
    // Deleting again is harmless.
    p.delete_link(link("brief", "default", &[])).await;
    p.shutdown().await;
}

#[tokio::test]
async fn changed_address_moves_the_listener() {
    let (p, _) = provider().await;
    let first = serve(&p, "mover", &[]).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = free.local_addr().unwrap();
    drop(free);
    p.put_link(link(
        "mover",
        "default",
        &[("address", &second.to_string())],
    ))
    .await
    .unwrap();
    assert_eq!(p.bound_address("mover", "default"), Some(second));
    wait_refused(first).await;
    let resp = client().get(url(second, "/whoami")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "mover");

    // Two link names of one actor: two listeners.
    p.put_link(link("mover", "admin", &[("address", "127.0.0.1:0")]))
        .await
        .unwrap();
    let admin = p.bound_address("mover", "admin").unwrap();
    assert_ne!(admin, second);
    let resp = client().get(url(admin, "/whoami")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "mover");

    p.shutdown().await;
    wait_refused(second).await;
    wait_refused(admin).await;
    assert!(p.link_statuses().is_empty());
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let (p, _) = provider().await;
    let addr = serve(&p, "h2", &[]).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .post(url(addr, "/inspect?q=1"))
        .header("x-rep", "a")
        .header("x-rep", "b")
        .body(vec![0u8, 255, 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let req = inspect(resp).await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/inspect");
    assert_eq!(req.query, "q=1");
    assert_eq!(req.headers["x-rep"], ["a", "b"]);
    assert_eq!(req.headers["host"], [addr.to_string()], "from :authority");
    assert_eq!(req.body, [0, 255, 1]);

    // Many concurrent streams on the one connection.
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let resp = c
                .post(url(addr, "/echo"))
                .body(vec![i; 100])
                .send()
                .await
                .unwrap();
            resp.bytes().await.unwrap() == vec![i; 100]
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    p.shutdown().await;
}

#[tokio::test]
async fn actors_cannot_call_the_provider() {
    let (p, _) = provider().await;
    let err = p
        .handle(ProviderCall {
            actor_id: "a".parse().unwrap(),
            link_name: "default".parse().unwrap(),
            operation: "HttpServer.Anything".into(),
            payload: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UnknownOperation { .. }),
        "{err:?}"
    );
    assert_eq!(p.contract(), "lattice:httpserver");
}

#[tokio::test]
async fn put_link_before_start_is_an_error() {
    let p = HttpServerProvider::new();
    let err = p
        .put_link(link("early", "default", &[("address", "127.0.0.1:0")]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not been started"), "{err}");
}

/// Reads until the server closes the connection (or the deadline passes);
/// whatever it sent before closing is returned.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(within))?;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(all),
            Err(e) => return Err(e),
        }
    }
}

async fn still_serves(addr: SocketAddr) {
    let resp = client().get(url(addr, "/other")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client that connects and says nothing, one that dribbles its headers
/// (slowloris) and one that opens HTTP/2 and idles are all closed after their
/// timeouts, and everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed() {
    let (p, _) = provider().await;
    let addr = serve(
        &p,
        "hello",
        &[("header_timeout", "400ms"), ("idle_timeout", "400ms")],
    )
    .await;
    let silent = std::thread::spawn(move || {
        let mut s = connect(addr);
        read_until_closed(&mut s, Duration::from_secs(10))
    });
    let slowloris = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let started = Instant::now();
        for b in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ".iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                break; // closed by the server
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!("a slowloris client was kept for 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    });
    let h2_idle = std::thread::spawn(move || {
        let mut s = connect(addr);
        // The preface and an empty SETTINGS frame, then nothing.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(10))
    });
    let keep_alive_idle = std::thread::spawn(move || {
        let mut s = connect(addr);
        let (status, _, _) = raw_exchange(&mut s, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        assert_eq!(status, 200);
        read_until_closed(&mut s, Duration::from_secs(10))
    });
    // Others are served while those hang around.
    for _ in 0..5 {
        still_serves(addr).await;
    }
    let silent = silent
        .join()
        .unwrap()
        .expect("the silent connection is closed");
    assert!(
        silent.is_empty() || silent.starts_with(b"HTTP/1.1 408"),
        "{silent:?}"
    );
    let slow = slowloris.join().unwrap();
    assert!(
        slow < Duration::from_secs(10),
        "slowloris closed after {slow:?}"
    );
    let h2 = h2_idle
        .join()
        .unwrap()
        .expect("the idle HTTP/2 connection is closed");
    assert!(
        h2.len() >= 9,
        "the server spoke HTTP/2 (SETTINGS, GOAWAY) before closing: {h2:?}"
    );
    keep_alive_idle
        .join()
        .unwrap()
        .expect("the idle keep-alive connection is closed");
    still_serves(addr).await;
    p.shutdown().await;
}

/// Past `max_connections` a new connection gets 503 with retry-after at once;
/// when a slot frees, requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_slots_free_up() {
    let (p, _) = provider().await;
    let addr = serve(&p, "hello", &[("max_connections", "2")]).await;
    let mut a = connect(addr);
    let (status, _, _) = raw_exchange(&mut a, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(status, 200);
    let mut b = connect(addr);
    let (status, _, _) = raw_exchange(&mut b, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(status, 200);
    let mut c = connect(addr);
    let (status, headers, body) = read_response(&mut c);
    assert_eq!(status, 503);
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(
        String::from_utf8_lossy(&body).contains("2 connections"),
        "{body:?}"
    );
    // The two open connections keep working.
    let (status, _, _) = raw_exchange(&mut a, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(status, 200);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = connect(addr);
        let (status, _, _) = raw_exchange(
            &mut d,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    p.shutdown().await;
}
