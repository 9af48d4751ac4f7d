//! `KeyValueProvider` through `Provider::handle`, against a real nats-server
//! with JetStream (no mocks).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use lattice::contracts::keyvalue::{
    self as kv, GetRequest, GetResponse, IncrementRequest, KeyRequest, KeysRequest, SetRequest,
};
use lattice::id::{ActorId, LatticeId};
use lattice_harness::{NatsServer, unique_lattice_id, wait_until};
use lattice_provider::{
    ActorCaller, BoxFuture, CallError, LinkDefinition, Provider, ProviderCall, ProviderContext,
    ProviderError,
};
use lattice_provider_keyvalue::{KeyValueProvider, MAX_KEY_BYTES, default_bucket};
use serde::{Serialize, de::DeserializeOwned};

const BACKENDS: [&str; 2] = ["memory", "jetstream"];

/// The keyvalue provider never calls actors.
struct NoActors;

impl ActorCaller for NoActors {
    fn call_actor(
        &self,
        actor: &str,
        _operation: &str,
        _payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        let actor = actor.to_string();
        Box::pin(async move { Err(CallError::NotRunning(actor)) })
    }
}

/// A started provider on a NATS connection of its own (like a host).
async fn start_provider(nats: &NatsServer, lattice: &str) -> Result<KeyValueProvider> {
    let provider = KeyValueProvider::new();
    let client = async_nats::connect(nats.url()).await?;
    provider
        .start(ProviderContext {
            lattice: LatticeId::new(lattice)?,
            provider_id: "kv".parse().unwrap(),
            nats: client,
            actors: Arc::new(NoActors),
        })
        .await?;
    Ok(provider)
}

fn link(actor: &str, link_name: &str, config: &[(&str, &str)]) -> LinkDefinition {
    LinkDefinition {
        actor_id: ActorId::new(actor).unwrap(),
        provider_id: "kv".parse().unwrap(),
        contract: kv::CONTRACT.parse().unwrap(),
        link_name: link_name.parse().unwrap(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// One linked actor: calls go through `Provider::handle`.
struct Caller<'a> {
    provider: &'a KeyValueProvider,
    actor: ActorId,
    link_name: String,
}

impl<'a> Caller<'a> {
    fn new(provider: &'a KeyValueProvider, actor: &str, link_name: &str) -> Self {
        Caller {
            provider,
            actor: ActorId::new(actor).unwrap(),
            link_name: link_name.parse().unwrap(),
        }
    }

    async fn raw(&self, operation: &str, payload: Vec<u8>) -> Result<Vec<u8>, ProviderError> {
        self.provider
            .handle(ProviderCall {
                actor_id: self.actor.clone(),
                link_name: self.link_name.clone(),
                operation: operation.into(),
                payload,
            })
            .await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: &str,
        req: &Req,
    ) -> Result<Resp, ProviderError> {
        let reply = self
            .raw(operation, rmp_serde::to_vec_named(req).unwrap())
            .await?;
        Ok(rmp_serde::from_slice(&reply)
            .unwrap_or_else(|e| panic!("{operation}: undecodable reply {reply:?}: {e}")))
    }

    async fn get(&self, key: &str) -> Result<GetResponse, ProviderError> {
        self.call(kv::GET, &GetRequest { key: key.into() }).await
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_secs: Option<u64>,
    ) -> Result<(), ProviderError> {
        self.call(
            kv::SET,
            &SetRequest {
                key: key.into(),
                value: value.to_vec(),
                ttl_secs,
            },
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, ProviderError> {
        self.call(kv::DELETE, &KeyRequest { key: key.into() }).await
    }

    async fn contains(&self, key: &str) -> Result<bool, ProviderError> {
        self.call(kv::CONTAINS, &KeyRequest { key: key.into() })
            .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, ProviderError> {
        self.call(
            kv::INCREMENT,
            &IncrementRequest {
                key: key.into(),
                delta,
            },
        )
        .await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, ProviderError> {
        self.keys_page(prefix, None, None).await
    }

    async fn keys_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, ProviderError> {
        self.call(
            kv::KEYS,
            &KeysRequest {
                prefix: prefix.into(),
                after: after.map(Into::into),
                limit,
            },
        )
        .await
    }

    /// Every key with `prefix`, asked for in pages of `limit`.
    async fn keys_in_pages(&self, prefix: &str, limit: u32) -> Result<Vec<String>, ProviderError> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = self
                .keys_page(prefix, all.last().map(String::as_str), Some(limit))
                .await?;
            assert!(
                page.len() <= limit as usize,
                "a page of {} keys",
                page.len()
            );
            let ended = page.len() < limit as usize;
            all.extend(page);
            if ended {
                return Ok(all);
            }
        }
    }
}

fn found(value: &[u8]) -> GetResponse {
    GetResponse {
        found: true,
        value: value.to_vec(),
    }
}

fn expect_bad_request(result: Result<impl std::fmt::Debug, ProviderError>, op: &str, needle: &str) {
    match result {
        Err(ProviderError::BadRequest { operation, reason }) => {
            assert_eq!(operation, op);
            assert!(
                reason.contains(needle),
                "{reason:?} should mention {needle:?}"
            );
        }
        other => panic!("{op}: expected BadRequest mentioning {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_operation_on_both_backends() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    for backend in BACKENDS {
        let actor = format!("ops-{backend}");
        provider
            .put_link(link(&actor, "default", &[("backend", backend)]))
            .await
            .with_context(|| format!("linking {backend}"))?;
        let c = Caller::new(&provider, &actor, "default");

        assert_eq!(
            c.get("greeting").await?,
            GetResponse::default(),
            "{backend}"
        );
        assert!(!c.contains("greeting").await?, "{backend}");
        c.set("greeting", b"hello", None).await?;
        assert_eq!(c.get("greeting").await?, found(b"hello"), "{backend}");
        assert!(c.contains("greeting").await?, "{backend}");
        c.set("greeting", b"bye", None).await?;
        assert_eq!(c.get("greeting").await?, found(b"bye"), "{backend}");

        // Empty values are values.
        c.set("empty", b"", None).await?;
        assert_eq!(c.get("empty").await?, found(b""), "{backend}");
        assert!(c.contains("empty").await?, "{backend}");

        // Delete says whether the key existed.
        assert!(c.delete("greeting").await?, "{backend}");
        assert!(!c.delete("greeting").await?, "{backend}");
        assert!(!c.delete("never-set").await?, "{backend}");
        assert_eq!(
            c.get("greeting").await?,
            GetResponse::default(),
            "{backend}"
        );
        // A deleted key can be set again.
        c.set("greeting", b"again", None).await?;
        assert_eq!(c.get("greeting").await?, found(b"again"), "{backend}");

        // Counters: missing counts as 0, stored as decimal text.
        assert_eq!(c.increment("hits", 5).await?, 5, "{backend}");
        assert_eq!(c.increment("hits", -7).await?, -2, "{backend}");
        assert_eq!(c.get("hits").await?, found(b"-2"), "{backend}");
        c.set("preset", b"40", None).await?;
        assert_eq!(c.increment("preset", 2).await?, 42, "{backend}");
        assert!(c.delete("hits").await?);
        assert_eq!(c.increment("hits", 1).await?, 1, "{backend}");
        expect_bad_request(
            c.increment("greeting", 1).await,
            kv::INCREMENT,
            "\"greeting\"",
        );
        expect_bad_request(c.increment("empty", 1).await, kv::INCREMENT, "\"empty\"");
        c.set("max", i64::MAX.to_string().as_bytes(), None).await?;
        expect_bad_request(c.increment("max", 1).await, kv::INCREMENT, "overflows");
        assert_eq!(c.get("max").await?, found(i64::MAX.to_string().as_bytes()));

        // Keys: by prefix, sorted.
        c.set("user.2", b"b", None).await?;
        c.set("user.10", b"a", None).await?;
        c.set("user", b"c", None).await?;
        c.set("users", b"d", None).await?;
        assert_eq!(
            c.keys("user.").await?,
            vec!["user.10", "user.2"],
            "{backend}"
        );
        assert_eq!(
            c.keys("user").await?,
            vec!["user", "user.10", "user.2", "users"],
            "{backend}"
        );
        assert_eq!(
            c.keys("").await?,
            vec![
                "empty", "greeting", "hits", "max", "preset", "user", "user.10", "user.2", "users"
            ],
            "{backend}"
        );
        assert_eq!(c.keys("zzz").await?, Vec::<String>::new(), "{backend}");
        // Keys with an absent prefix field means all keys.
        let all: Vec<String> = c.call(kv::KEYS, &BTreeMap::<String, String>::new()).await?;
        assert_eq!(all.len(), 9, "{backend}");

        // Validation.
        expect_bad_request(c.set("t", b"v", Some(0)).await, kv::SET, "ttl_secs");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        expect_bad_request(c.set(&long, b"v", None).await, kv::SET, "1024");
        expect_bad_request(c.get(&long).await, kv::GET, "1024");
    }
    assert!(provider.health().healthy, "{:?}", provider.health());
    Ok(())
}

#[tokio::test]
async fn odd_keys_and_empty_values_round_trip_on_both_backends() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    let long_ascii = "x".repeat(MAX_KEY_BYTES);
    let long_unicode = "ü".repeat(MAX_KEY_BYTES / 2); // 2 bytes each: exactly the limit
    let odd: Vec<&str> = vec![
        "with space",
        "a.b",
        ".lead",
        "trail.",
        "a..b",
        ".",
        "*",
        ">",
        "orders.*.>",
        "ünïcødé 🦀",
        "",
        "r.x",
        "b.x",
        "e",
        "tab\tand\nnewline",
        "slash/and=equals-_",
        &long_ascii,
        &long_unicode,
    ];
    for backend in BACKENDS {
        let actor = format!("odd-{backend}");
        provider
            .put_link(link(&actor, "default", &[("backend", backend)]))
            .await?;
        let c = Caller::new(&provider, &actor, "default");
        for (i, key) in odd.iter().enumerate() {
            // Every other value is empty.
            let value = if i % 2 == 0 {
                Vec::new()
            } else {
                key.as_bytes().to_vec()
            };
            c.set(key, &value, None)
                .await
                .with_context(|| format!("{backend}: set {key:?}"))?;
        }
        for (i, key) in odd.iter().enumerate() {
            let value = if i % 2 == 0 {
                Vec::new()
            } else {
                key.as_bytes().to_vec()
            };
            assert_eq!(c.get(key).await?, found(&value), "{backend}: {key:?}");
            assert!(c.contains(key).await?, "{backend}: {key:?}");
        }
        let mut expected: Vec<String> = odd.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(c.keys("").await?, expected, "{backend}");
        assert_eq!(c.keys("a.").await?, vec!["a..b", "a.b"], "{backend}");
        assert_eq!(c.keys(".").await?, vec![".", ".lead"], "{backend}");
        assert_eq!(c.keys("ünï").await?, vec!["ünïcødé 🦀"], "{backend}");
        assert_eq!(
            c.increment("orders.*.>", 0).await.ok(),
            None,
            "{backend}: empty value is not a counter"
        );
        assert_eq!(c.increment("a b c", 3).await?, 3, "{backend}");
        for key in &odd {
            assert!(c.delete(key).await?, "{backend}: delete {key:?}");
            assert!(!c.contains(key).await?, "{backend}: {key:?}");
        }
        assert_eq!(c.keys("").await?, vec!["a b c"], "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn keys_come_in_bounded_pages_on_both_backends() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    for backend in BACKENDS {
        let actor = format!("pages-{backend}");
        provider
            .put_link(link(&actor, "default", &[("backend", backend)]))
            .await?;
        let c = Caller::new(&provider, &actor, "default");
        // Plain and encoded keys (JetStream lists them in stream order, not
        // sorted), and one that expires.
        let mut expected: Vec<String> = (0..23).rev().map(|i| format!("p/{i:02}")).collect();
        expected.extend(["p/a b".to_string(), "p/ünï".to_string(), "q".to_string()]);
        for key in &expected {
            c.set(key, b"v", None).await?;
        }
        c.set("p/gone", b"v", Some(1)).await?;
        let cr = &c;
        wait_until(
            format!("{backend}: p/gone to expire"),
            Duration::from_secs(10),
            move || async move { Ok((!cr.contains("p/gone").await?).then_some(())) },
        )
        .await?;
        expected.sort();
        assert_eq!(c.keys("").await?, expected, "{backend}");
        assert_eq!(c.keys_in_pages("", 7).await?, expected, "{backend}");
        assert_eq!(c.keys_in_pages("", 1000).await?, expected, "{backend}");
        assert_eq!(c.keys_in_pages("p/", 1).await?, expected[..25], "{backend}");
        assert_eq!(
            c.keys_page("p/", Some("p/21"), Some(3)).await?,
            ["p/22", "p/a b", "p/ünï"],
            "{backend}"
        );
        assert_eq!(
            c.keys_page("p/", Some("p/"), Some(1)).await?,
            ["p/00"],
            "{backend}"
        );
        assert_eq!(
            c.keys_page("p/", Some("q"), None).await?,
            Vec::<String>::new(),
            "{backend}"
        );

        // Bad pages: named, and the store still answers.
        let op = kv::KEYS;
        expect_bad_request(
            c.keys_page("", None, Some(0)).await,
            op,
            "limit 0 is out of range",
        );
        expect_bad_request(
            c.keys_page("", None, Some(1001)).await,
            op,
            "1 to 1000 keys",
        );
        let too_long = "a".repeat(1025);
        expect_bad_request(
            c.keys_page("", Some(&too_long), Some(5)).await,
            op,
            "`after` is 1025 bytes long",
        );
        expect_bad_request(
            c.keys_page(&too_long, None, None).await,
            op,
            "`prefix` is 1025",
        );
        // The empty key is a page boundary like any other.
        c.set("", b"v", None).await?;
        assert_eq!(c.keys_page("", None, Some(1)).await?, [""], "{backend}");
        assert_eq!(
            c.keys_page("", Some(""), Some(1)).await?,
            ["p/00"],
            "{backend}"
        );
        // `after` inside the prefix's range without starting with it.
        assert_eq!(
            c.keys_page("p/", Some("p"), Some(1)).await?,
            ["p/00"],
            "{backend}"
        );
        assert!(c.delete("").await?);
        assert_eq!(c.keys("q").await?, ["q"], "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn listing_more_keys_than_one_answer_holds_asks_for_pages() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    for backend in BACKENDS {
        let actor = format!("many-{backend}");
        provider
            .put_link(link(&actor, "default", &[("backend", backend)]))
            .await?;
        let c = Caller::new(&provider, &actor, "default");
        // 600 keys of 1 KiB: past the 512 KiB an unpaged answer holds.
        let long = "k".repeat(1000);
        let keys: Vec<String> = (0..600).map(|i| format!("{long}{i:03}")).collect();
        futures::future::try_join_all(keys.iter().map(|k| c.set(k, b"", None))).await?;
        expect_bad_request(c.keys("").await, kv::KEYS, "ask for them in pages");
        for limit in [1000, 250] {
            let listed = c.keys_in_pages("", limit).await?;
            // Keys of 1 KiB: say where the lists part, not all of them.
            let first_wrong = listed.iter().zip(&keys).position(|(a, b)| a != b);
            assert!(
                listed.len() == keys.len() && first_wrong.is_none(),
                "{backend}, pages of {limit}: {} keys listed, the first wrong at {first_wrong:?}",
                listed.len()
            );
        }
        assert_eq!(c.keys(&format!("{long}59")).await?.len(), 10, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn ttl_expires_keys_on_both_backends() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    for backend in BACKENDS {
        let actor = format!("ttl-{backend}");
        provider
            .put_link(link(&actor, "default", &[("backend", backend)]))
            .await?;
        let c = Caller::new(&provider, &actor, "default");
        c.set("session", b"token", Some(1)).await?;
        c.set("forever", b"v", None).await?;
        // A later Set without TTL clears the expiry.
        c.set("renewed", b"1", Some(1)).await?;
        c.set("renewed", b"2", None).await?;
        // Increment keeps the expiry.
        c.set("visits", b"5", Some(1)).await?;
        assert_eq!(c.increment("visits", 1).await?, 6, "{backend}");
        c.set("listed", b"", Some(1)).await?;
        c.set("deleted", b"x", Some(1)).await?;

        // Set last: once it is gone, every key above has expired too.
        c.set("sentinel", b"", Some(1)).await?;

        assert_eq!(c.get("session").await?, found(b"token"), "{backend}");
        let cr = &c;
        wait_until(
            format!("{backend}: session to expire"),
            Duration::from_secs(10),
            move || async move { Ok((!cr.get("session").await?.found).then_some(())) },
        )
        .await?;
        wait_until(
            format!("{backend}: sentinel to expire"),
            Duration::from_secs(10),
            move || async move { Ok((!cr.contains("sentinel").await?).then_some(())) },
        )
        .await?;
        // Expired keys: absent from Keys, Delete says they did not exist.
        assert_eq!(c.keys("").await?, vec!["forever", "renewed"], "{backend}");
        assert!(!c.delete("deleted").await?, "{backend}");
        assert_eq!(c.get("renewed").await?, found(b"2"), "{backend}");
        assert_eq!(c.get("forever").await?, found(b"v"), "{backend}");
        // An expired counter starts again from 0, without expiry.
        assert_eq!(c.increment("visits", 1).await?, 1, "{backend}");
        assert_eq!(c.keys("v").await?, vec!["visits"], "{backend}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn increments_are_atomic_across_two_providers_on_one_bucket() -> Result<()> {
    const TASKS_PER_PROVIDER: usize = 8;
    const INCREMENTS_PER_TASK: usize = 50;
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    // Two providers with connections of their own: two hosts.
    let hosts = [
        Arc::new(start_provider(&nats, &lattice).await?),
        Arc::new(start_provider(&nats, &lattice).await?),
    ];
    for p in &hosts {
        p.put_link(link("counter", "default", &[])).await?;
    }
    let mut tasks = Vec::new();
    for p in &hosts {
        for _ in 0..TASKS_PER_PROVIDER {
            let p = Arc::clone(p);
            tasks.push(tokio::spawn(async move {
                let c = Caller::new(&p, "counter", "default");
                let mut seen = Vec::with_capacity(INCREMENTS_PER_TASK);
                for _ in 0..INCREMENTS_PER_TASK {
                    seen.push(c.increment("hits", 1).await?);
                }
                Ok::<_, ProviderError>(seen)
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let total = (2 * TASKS_PER_PROVIDER * INCREMENTS_PER_TASK) as i64;
    assert_eq!(total, 800);
    // Every increment saw a distinct new value: none was lost or doubled.
    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    for p in &hosts {
        let c = Caller::new(p, "counter", "default");
        assert_eq!(c.get("hits").await?, found(b"800"));
    }

    // Both used the default bucket, the same for every host.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let bucket = default_bucket(&LatticeId::new(&lattice)?, &ActorId::new("counter")?);
    assert_eq!(bucket, format!("LATTICE_{lattice}_kv_counter"));
    let store = js.get_key_value(&bucket).await?;
    let raw = store.get("r.hits").await?.context("r.hits in the bucket")?;
    assert_eq!(&raw[..], b"\x00800");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_increments_are_atomic() -> Result<()> {
    let nats = NatsServer::start()?;
    let provider = Arc::new(start_provider(&nats, &unique_lattice_id()).await?);
    provider
        .put_link(link("counter", "default", &[("backend", "memory")]))
        .await?;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = Arc::clone(&provider);
            tokio::spawn(async move {
                let c = Caller::new(&p, "counter", "default");
                for _ in 0..50 {
                    c.increment("hits", 2).await?;
                }
                Ok::<_, ProviderError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let c = Caller::new(&provider, "counter", "default");
    assert_eq!(c.get("hits").await?, found(b"800"));
    Ok(())
}

#[tokio::test]
async fn concurrent_deletes_report_one_existing_key() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let a = start_provider(&nats, &lattice).await?;
    let b = start_provider(&nats, &lattice).await?;
    for p in [&a, &b] {
        p.put_link(link("shared", "default", &[])).await?;
    }
    let (ca, cb) = (
        Caller::new(&a, "shared", "default"),
        Caller::new(&b, "shared", "default"),
    );
    for round in 0..10 {
        ca.set("k", b"v", None).await?;
        assert_eq!(cb.get("k").await?, found(b"v"), "written on a, read on b");
        let (x, y) = tokio::join!(ca.delete("k"), cb.delete("k"));
        assert!(x? ^ y?, "round {round}: exactly one delete saw the key");
    }
    Ok(())
}

#[tokio::test]
async fn links_choose_their_store() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    provider
        .put_link(link("app", "default", &[("backend", "memory")]))
        .await?;
    provider
        .put_link(link("app", "durable", &[("bucket", "custom_bucket-1")]))
        .await?;
    let mem = Caller::new(&provider, "app", "default");
    let durable = Caller::new(&provider, "app", "durable");
    mem.set("k", b"memory", None).await?;
    durable.set("k", b"jetstream", None).await?;
    assert_eq!(mem.get("k").await?, found(b"memory"));
    assert_eq!(durable.get("k").await?, found(b"jetstream"));

    // The named bucket was created and holds the value.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let raw = js
        .get_key_value("custom_bucket-1")
        .await?
        .get("r.k")
        .await?;
    assert_eq!(raw.as_deref(), Some(&b"\x00jetstream"[..]));

    // Putting the same link again keeps the memory data; another config replaces it.
    provider
        .put_link(link("app", "default", &[("backend", "memory")]))
        .await?;
    assert_eq!(mem.get("k").await?, found(b"memory"));
    provider
        .put_link(link(
            "app",
            "default",
            &[("backend", "jetstream"), ("bucket", "custom_bucket-1")],
        ))
        .await?;
    assert_eq!(mem.get("k").await?, found(b"jetstream"));

    // Deleting the link: calls are refused, the bucket keeps the data.
    provider.delete_link(link("app", "durable", &[])).await;
    match durable.get("k").await {
        Err(ProviderError::NotLinked {
            actor_id,
            link_name,
        }) => {
            assert_eq!((actor_id.as_str(), link_name.as_str()), ("app", "durable"));
        }
        other => panic!("expected NotLinked, got {other:?}"),
    }
    provider
        .put_link(link("app", "durable", &[("bucket", "custom_bucket-1")]))
        .await?;
    assert_eq!(durable.get("k").await?, found(b"jetstream"));
    Ok(())
}

#[tokio::test]
async fn bad_calls_and_links_get_clear_errors() -> Result<()> {
    let nats = NatsServer::start()?;
    let lattice = unique_lattice_id();

    // A link before start.
    let unstarted = KeyValueProvider::new();
    match unstarted.put_link(link("app", "default", &[])).await {
        Err(ProviderError::Link { reason, .. }) => assert!(reason.contains("not been started")),
        other => panic!("expected a Link error, got {other:?}"),
    }

    let provider = start_provider(&nats, &lattice).await?;
    assert_eq!(provider.contract(), "lattice:keyvalue");
    for (config, needle) in [
        (&[("backend", "redis")][..], "\"redis\""),
        (&[("backend", "")][..], "backend=\"\""),
        (&[("bucket", "no.dots")][..], "\"no.dots\""),
        (&[("bucket", "")][..], "bucket=\"\""),
        (&[("bucket", "spa ce")][..], "\"spa ce\""),
        (
            &[("backend", "memory"), ("bucket", "b")][..],
            "bucket=\"b\"",
        ),
    ] {
        match provider.put_link(link("app", "default", config)).await {
            Err(ProviderError::Link {
                actor_id,
                link_name,
                reason,
            }) => {
                assert_eq!((actor_id.as_str(), link_name.as_str()), ("app", "default"));
                assert!(
                    reason.contains(needle),
                    "{reason:?} should mention {needle:?}"
                );
            }
            other => panic!("{config:?}: expected a Link error, got {other:?}"),
        }
    }
    let wrong_contract = LinkDefinition {
        contract: "lattice:messaging".parse().unwrap(),
        ..link("app", "default", &[])
    };
    assert!(matches!(
        provider.put_link(wrong_contract).await,
        Err(ProviderError::Link { .. })
    ));

    // No link at all (the failed puts above left none).
    let c = Caller::new(&provider, "app", "default");
    match c.get("k").await {
        Err(e @ ProviderError::NotLinked { .. }) => {
            let text = e.to_string();
            assert!(text.contains("app") && text.contains("default"), "{text}");
        }
        other => panic!("expected NotLinked, got {other:?}"),
    }

    provider
        .put_link(link("app", "default", &[("backend", "memory")]))
        .await?;
    // Another link name of the same actor is not linked.
    let other = Caller::new(&provider, "app", "other");
    assert!(matches!(
        other.get("k").await,
        Err(ProviderError::NotLinked { link_name, .. }) if link_name == "other"
    ));

    // Unknown operation: the error lists the known ones.
    match c.raw("KeyValue.Frobnicate", Vec::new()).await {
        Err(e @ ProviderError::UnknownOperation { .. }) => {
            let text = e.to_string();
            assert!(text.contains("KeyValue.Frobnicate"), "{text}");
            for op in kv::OPERATIONS {
                assert!(text.contains(op), "{text} should list {op}");
            }
        }
        other => panic!("expected UnknownOperation, got {other:?}"),
    }

    // Malformed payloads: BadRequest naming the operation.
    for op in kv::OPERATIONS {
        let garbage = vec![0xc1]; // never valid msgpack
        match c.raw(op, garbage).await {
            Err(e @ ProviderError::BadRequest { .. }) => {
                assert!(e.to_string().starts_with(op), "{e}");
            }
            other => panic!("{op}: expected BadRequest, got {other:?}"),
        }
    }
    // The right shape with a wrong field type.
    let wrong = rmp_serde::to_vec_named(&BTreeMap::from([("key", 42)]))?;
    expect_bad_request(c.raw(kv::GET, wrong).await, kv::GET, "");
    let missing_delta = rmp_serde::to_vec_named(&KeyRequest { key: "k".into() })?;
    expect_bad_request(
        c.raw(kv::INCREMENT, missing_delta).await,
        kv::INCREMENT,
        "delta",
    );
    Ok(())
}

#[tokio::test]
async fn health_follows_jetstream_connectivity() -> Result<()> {
    let mut nats = NatsServer::start()?;
    let lattice = unique_lattice_id();
    let provider = start_provider(&nats, &lattice).await?;
    provider.put_link(link("app", "default", &[])).await?;
    let c = Caller::new(&provider, "app", "default");
    c.set("k", b"v", None).await?;
    assert!(provider.health().healthy);

    // A refused request is not a connectivity problem.
    let huge = vec![0u8; 2 * 1024 * 1024];
    assert!(matches!(
        c.set("huge", &huge, None).await,
        Err(ProviderError::Backend(_))
    ));
    assert!(provider.health().healthy, "{:?}", provider.health());

    nats.stop()?;
    match c.get("k").await {
        Err(ProviderError::Backend(message)) => {
            assert!(message.starts_with(kv::GET), "{message}");
            assert!(
                message.contains(&format!("LATTICE_{lattice}_kv_app")),
                "{message}"
            );
        }
        other => bail!("expected a backend error with NATS down, got {other:?}"),
    }
    let health = provider.health();
    ensure!(!health.healthy, "unhealthy while NATS is down");
    ensure!(
        health.message.contains("unreachable"),
        "health message: {}",
        health.message
    );

    nats.restart()?;
    let cr = &c;
    wait_until(
        "the provider to reach JetStream again",
        Duration::from_secs(30),
        move || async move { Ok(cr.get("k").await.ok()) },
    )
    .await?;
    assert_eq!(c.get("k").await?, found(b"v"));
    assert!(provider.health().healthy, "{:?}", provider.health());
    Ok(())
}
