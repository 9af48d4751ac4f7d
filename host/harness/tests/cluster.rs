//! A 3-server NATS cluster with JetStream: what survives the loss of one server.
//!
//! These tests document what the lattice needs to keep its state (the KV bucket
//! `LATTICE_{lid}` and the object store `LATTICE_{lid}_artifacts`) when one
//! server of a cluster dies, and how async-nats clients fail over.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::{self, kv, object_store, stream};
use futures::StreamExt;
use lattice_harness::{CLUSTER_NAME, NatsCluster, NatsServer, unique_lattice_id, wait_until};

/// Deadline for the cluster to settle after a kill (leader elections).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A JetStream context whose requests time out quickly, so that polling loops
/// retry instead of hanging on a server that is gone.
fn js_context(client: async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(3));
    js
}

/// Runs a JetStream call until it succeeds (up to [`FAILOVER_TIMEOUT`]). On a
/// loaded 2-core machine a single API call can outlive its request timeout
/// while the cluster is busy; every call retried here is idempotent.
async fn retry<T, E, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    wait_until(what, FAILOVER_TIMEOUT, || {
        let call = op();
        async move { Ok(call.await.ok()) }
    })
    .await
}

/// Stream info as seen through `js` (answered by the stream leader).
async fn stream_info(js: &jetstream::Context, name: &str) -> Result<stream::Info> {
    let stream = js.get_stream(name).await?;
    Ok(stream.get_info().await?)
}

/// Waits until stream `name` has a leader and `replicas` peers in total (the
/// leader included), all current, and returns the leader's server index.
async fn wait_stream_current(
    cluster: &NatsCluster,
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<usize> {
    let leader = wait_until(
        format!("stream {name} to have a leader and {replicas} current replicas"),
        FAILOVER_TIMEOUT,
        || async {
            let Ok(info) = stream_info(js, name).await else {
                return Ok(None);
            };
            let Some(ci) = info.cluster else {
                bail!("stream {name} has no cluster info: is JetStream clustered?");
            };
            let followers_current = ci.replicas.iter().filter(|p| p.current).count();
            Ok(ci
                .leader
                .filter(|_| 1 + followers_current == replicas)
                .filter(|_| ci.replicas.len() + 1 == replicas))
        },
    )
    .await?;
    cluster
        .index_of(&leader)
        .with_context(|| format!("stream leader {leader} is not a server of the cluster"))
}

/// Puts `key` once the bucket accepts writes. Right after `create_key_value`
/// returns on a cluster, the first put can fail with "no stream found for
/// given subject": the stream's subject interest has not reached the client's
/// server over the routes yet. So the first write must be retried.
async fn put_when_writable(kv: &kv::Store, key: &str, value: &'static str) -> Result<()> {
    wait_until(format!("a put of {key}"), FAILOVER_TIMEOUT, || async {
        Ok(kv.put(key, value.into()).await.ok())
    })
    .await?;
    Ok(())
}

/// Polls until a publish on `publisher` reaches `sub` (subscription interest
/// travels over the routes asynchronously, so the first publishes may be lost).
async fn wait_for_routed_message(
    publisher: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &str,
) -> Result<Duration> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(10);
    let mut n = 0u32;
    while Instant::now() < deadline {
        n += 1;
        publisher
            .publish(subject.to_string(), n.to_string().into())
            .await?;
        publisher.flush().await?;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(250), sub.next()).await {
            ensure!(!msg.payload.is_empty(), "empty message");
            return Ok(start.elapsed());
        }
    }
    bail!("no message published on {subject} arrived within 10 s")
}

/// Polls until `client` gets an answer on `subject`; returns how long it took.
async fn wait_for_reply(client: &async_nats::Client, subject: &str) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        format!("a reply on {subject}"),
        FAILOVER_TIMEOUT,
        || async {
            let request = client.request(subject.to_string(), "ping".into());
            Ok(
                match tokio::time::timeout(Duration::from_secs(1), request).await {
                    Ok(Ok(reply)) if &reply.payload[..] == b"pong" => Some(()),
                    _ => None,
                },
            )
        },
    )
    .await?;
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_and_routes_messages_between_servers() -> Result<()> {
    let started = Instant::now();
    let cluster = NatsCluster::start(3)?;
    eprintln!("3-server cluster ready in {:?}", started.elapsed());

    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.seed_urls(), cluster.urls().join(","));
    let mut ports: Vec<u16> = (0..3)
        .flat_map(|i| [cluster.port(i), cluster.cluster_port(i)])
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6, "every server has ports of its own");
    for i in 0..3 {
        assert_eq!(cluster.meta_leader(i)?, cluster.meta_leader(0)?);
        assert!(cluster.meta_leader(i)?.is_some(), "meta leader elected");
    }

    let c0 = async_nats::connect(cluster.url(0)).await?;
    let c2 = async_nats::connect(cluster.url(2)).await?;
    let info = c0.server_info();
    assert_eq!(info.server_name, "n0");
    assert_eq!(info.cluster.as_deref(), Some(CLUSTER_NAME));
    assert_eq!(c2.server_info().server_name, "n2");
    // Each server advertises the client URLs of the whole cluster, itself
    // included: that is how async-nats learns where else to reconnect. The
    // list is gossiped over the routes and pushed to clients in later INFO
    // messages, so right after connecting it may still be incomplete, and a
    // client that connected while routes formed may not be sent the rest: each
    // check reads the list a new connection is given.
    let mut want: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", cluster.port(i)))
        .collect();
    want.sort();
    wait_until(
        "n0 to advertise all 3 client URLs",
        Duration::from_secs(10),
        || {
            let (url, want) = (cluster.url(0), want.clone());
            async move {
                let mut urls = async_nats::connect(url).await?.server_info().connect_urls;
                urls.sort();
                Ok((urls == want).then_some(()))
            }
        },
    )
    .await?;

    let mut sub = c0.subscribe("cluster.routes").await?;
    c0.flush().await?;
    let took = wait_for_routed_message(&c2, &mut sub, "cluster.routes").await?;
    eprintln!("message from n2 reached n0 after {took:?}");

    // JetStream answers through any server.
    let account = jetstream::new(c2).query_account().await?;
    assert_eq!(account.streams, 0);
    Ok(())
}

/// The fix: a bucket with 3 replicas keeps its data and stays writable when
/// the server leading its stream dies, and the server catches up on restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_kv_survives_loss_of_its_stream_leader() -> Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let bucket = format!("LATTICE_{}", unique_lattice_id());
    let stream = format!("KV_{bucket}");

    let setup = async_nats::connect(cluster.url(0)).await?;
    let js = js_context(setup.clone());
    let kv = retry("create_key_value", || {
        js.create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 5,
            num_replicas: 3,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
    })
    .await?;
    put_when_writable(&kv, "link.a", "before").await?;
    let leader = wait_stream_current(&cluster, &js, &stream, 3).await?;
    drop((kv, js, setup));

    // A host connected to another server holds a handle on the bucket, as a
    // running lattice host does.
    let survivor = (leader + 1) % 3;
    let client = async_nats::connect(cluster.url(survivor)).await?;
    let js = js_context(client.clone());
    let kv = retry("open the bucket", || js.get_key_value(&bucket)).await?;
    eprintln!(
        "stream leader {}, killing it; using the bucket through {}",
        cluster.server_name(leader),
        cluster.server_name(survivor)
    );
    let killed_at = Instant::now();
    cluster.kill(leader)?;

    wait_until("a read of link.a", FAILOVER_TIMEOUT, || async {
        Ok(match kv.get("link.a").await {
            Ok(Some(v)) if &v[..] == b"before" => Some(()),
            Ok(Some(v)) => bail!("link.a is {v:?}"),
            _ => None,
        })
    })
    .await?;
    eprintln!("read after kill works after {:?}", killed_at.elapsed());
    put_when_writable(&kv, "link.b", "during").await?;
    eprintln!("write after kill works after {:?}", killed_at.elapsed());
    // A fresh open (stream info, answered by the new stream leader) works too.
    let reopened = wait_until("the KV bucket to open", FAILOVER_TIMEOUT, || async {
        Ok(js.get_key_value(&bucket).await.ok())
    })
    .await?;
    eprintln!("open after kill works after {:?}", killed_at.elapsed());
    assert_eq!(
        &reopened.get("link.a").await?.context("link.a")?[..],
        b"before"
    );
    let value = kv.get("link.b").await?.context("link.b written")?;
    assert_eq!(&value[..], b"during");
    let info = retry("stream info", || stream_info(&js, &stream)).await?;
    let new_leader = info.cluster.and_then(|c| c.leader).context("new leader")?;
    assert_ne!(new_leader, cluster.server_name(leader), "a survivor leads");
    cluster.wait_ready(FAILOVER_TIMEOUT)?;

    // A new lattice can still create a 3-replica bucket with one server of
    // three down: the meta leader places the third replica on the dead
    // server (it is not marked offline) and 2 of 3 is a quorum. The create
    // can be slow (it sometimes outlives a 2 s request timeout), and
    // retrying is safe: creating an existing bucket with the same config
    // succeeds.
    let other = format!("{bucket}_new");
    let created_at = Instant::now();
    let new_kv = wait_until("an R3 bucket to be created", FAILOVER_TIMEOUT, || async {
        Ok(js
            .create_key_value(kv::Config {
                bucket: other.clone(),
                history: 5,
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .ok())
    })
    .await?;
    eprintln!(
        "R3 bucket created with a server down in {:?}",
        created_at.elapsed()
    );
    // Its stream may not have elected a leader yet when the create returns.
    put_when_writable(&new_kv, "k", "v").await?;
    eprintln!("first write to it after {:?}", created_at.elapsed());

    let restarted_at = Instant::now();
    cluster.restart(leader)?;
    eprintln!(
        "{} restarted and rejoined in {:?}",
        cluster.server_name(leader),
        restarted_at.elapsed()
    );
    wait_stream_current(&cluster, &js, &stream, 3).await?;
    eprintln!(
        "all 3 replicas current {:?} after restart",
        restarted_at.elapsed()
    );

    // The restarted server has caught up: a client on it sees both keys.
    let back = js_context(async_nats::connect(cluster.url(leader)).await?);
    let kv_back = retry("open the bucket", || back.get_key_value(&bucket)).await?;
    for (key, want) in [("link.a", "before"), ("link.b", "during")] {
        let got = kv_back
            .get(key)
            .await?
            .with_context(|| format!("{key} missing on the restarted server"))?;
        assert_eq!(&got[..], want.as_bytes(), "{key}");
    }
    put_when_writable(&kv_back, "link.c", "after").await?;
    // Direct gets are answered by any replica; a follower may lag a moment.
    wait_until(
        "link.c to be readable on a survivor",
        FAILOVER_TIMEOUT,
        || async {
            Ok(kv
                .get("link.c")
                .await
                .ok()
                .flatten()
                .filter(|v| &v[..] == b"after"))
        },
    )
    .await?;
    Ok(())
}

/// The problem: buckets created like the lattice creates them today
/// (`open_state_bucket`, `ArtifactStore::open`: default config, so 1 replica)
/// live on a single server; while it is down they cannot be opened, read or
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replica_buckets_are_lost_while_their_server_is_down() -> Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let lattice = unique_lattice_id();
    let bucket = format!("LATTICE_{lattice}");
    let stream = format!("KV_{bucket}");

    let setup = async_nats::connect(cluster.url(0)).await?;
    let js = js_context(setup.clone());
    // Exactly the config of lattice::artifact::open_state_bucket.
    let kv = retry("create_key_value", || {
        js.create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: format!("Lattice {lattice}: tags, links, config, leases"),
            history: 5,
            ..Default::default()
        })
    })
    .await?;
    put_when_writable(&kv, "artifact.tag.hello.latest", "sha256:00").await?;
    let info = retry("stream info", || stream_info(&js, &stream)).await?;
    assert_eq!(info.config.num_replicas, 1, "the default is one replica");
    let home = wait_stream_current(&cluster, &js, &stream, 1).await?;
    // `ArtifactStore::open`'s object store is a one-replica stream too.
    let objects = retry("create_object_store", || {
        js.create_object_store(object_store::Config {
            bucket: format!("{bucket}_artifacts"),
            ..Default::default()
        })
    })
    .await?;
    let objects_stream = format!("OBJ_{bucket}_artifacts");
    let info = retry("stream info", || stream_info(&js, &objects_stream)).await?;
    assert_eq!(info.config.num_replicas, 1);
    drop(objects);

    drop((kv, js, setup));

    // A host connected to another server holds a handle on the bucket, as a
    // running lattice host does.
    let survivor = (home + 1) % 3;
    let client = async_nats::connect(cluster.url(survivor)).await?;
    let js = js_context(client.clone());
    let bound = retry("open the bucket", || js.get_key_value(&bucket)).await?;

    cluster.kill(home)?;
    cluster.wait_ready(FAILOVER_TIMEOUT)?;

    // Nothing answers for the bucket: opening, reading and writing all fail.
    let opened = js.get_key_value(&bucket).await;
    eprintln!(
        "open R1 bucket whose server is down: {:?}",
        opened.as_ref().err()
    );
    assert!(opened.is_err(), "opening the R1 bucket must fail");
    let read = bound.get("artifact.tag.hello.latest").await;
    eprintln!(
        "read R1 bucket whose server is down: {:?}",
        read.as_ref().err()
    );
    assert!(read.is_err(), "reading must fail, got {read:?}");
    let write = bound.put("x", "y".into()).await;
    eprintln!(
        "write R1 bucket whose server is down: {:?}",
        write.as_ref().err()
    );
    assert!(write.is_err(), "writing must fail");

    // Creating a bucket while a server is down is a gamble too: the meta
    // leader does not mark the dead server offline (not within 45 s in our
    // runs), so it may place the new stream there and the create times out.
    let during = js
        .create_key_value(kv::Config {
            bucket: format!("{bucket}_r1"),
            ..Default::default()
        })
        .await;
    eprintln!(
        "create R1 while a server is down: {}",
        during.map_or_else(|e| e.to_string(), |_| "ok".into())
    );

    // Once the server is back the bucket is back.
    cluster.restart(home)?;
    let kv = wait_until("the R1 bucket to come back", FAILOVER_TIMEOUT, || async {
        Ok(js.get_key_value(&bucket).await.ok())
    })
    .await?;
    let value = wait_until("a read after restart", FAILOVER_TIMEOUT, || async {
        Ok(kv.get("artifact.tag.hello.latest").await.ok().flatten())
    })
    .await?;
    assert_eq!(&value[..], b"sha256:00");
    Ok(())
}

/// Migration: an existing 1-replica bucket can be scaled to 3 replicas in
/// place by updating its stream, after which it survives the loss of a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_bucket_scaled_to_three_replicas_survives_loss() -> Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let bucket = format!("LATTICE_{}", unique_lattice_id());
    let stream_name = format!("KV_{bucket}");

    let setup = async_nats::connect(cluster.url(0)).await?;
    let js = js_context(setup.clone());
    let kv = retry("create_key_value", || {
        js.create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 5,
            ..Default::default()
        })
    })
    .await?;
    put_when_writable(&kv, "link.a", "r1").await?;

    let mut config = retry("stream info", || stream_info(&js, &stream_name))
        .await?
        .config;
    assert_eq!(config.num_replicas, 1);
    config.num_replicas = 3;
    retry("scaling the stream to 3 replicas", || {
        js.update_stream(&config)
    })
    .await?;
    let leader = wait_stream_current(&cluster, &js, &stream_name, 3).await?;
    drop((kv, js, setup));

    cluster.kill(leader)?;
    let client = async_nats::connect(cluster.url((leader + 1) % 3)).await?;
    let js = js_context(client);
    let kv = wait_until("the KV bucket to open", FAILOVER_TIMEOUT, || async {
        Ok(js.get_key_value(&bucket).await.ok())
    })
    .await?;
    let value = wait_until("a read of link.a", FAILOVER_TIMEOUT, || async {
        Ok(kv.get("link.a").await.ok().flatten())
    })
    .await?;
    assert_eq!(&value[..], b"r1");
    put_when_writable(&kv, "link.b", "r3").await?;
    Ok(())
}

/// async-nats fails over to another server of the cluster when the one it is
/// connected to dies, both with all URLs given and (through the `connect_urls`
/// the cluster advertises) with a single one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_over_when_its_server_dies() -> Result<()> {
    let mut cluster = NatsCluster::start(3)?;

    // A comma-separated seed list is not a URL to async-nats: split it.
    let comma = async_nats::connect(cluster.seed_urls()).await;
    eprintln!(
        "async_nats::connect(\"a,b,c\"): {:?}",
        comma.as_ref().err().map(ToString::to_string)
    );
    assert!(comma.is_err(), "a comma-separated string is not accepted");
    let seeds: Vec<String> = cluster.seed_urls().split(',').map(str::to_string).collect();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(seeds)
        .await?;
    let home = cluster
        .index_of_port(client.server_info().port)
        .context("connected to one of ours")?;
    let single = async_nats::connect(cluster.url(home)).await?;

    let responder_at = (home + 1) % 3;
    let responder = async_nats::connect(cluster.url(responder_at)).await?;
    let mut requests = responder.subscribe("svc.echo").await?;
    responder.flush().await?;
    let answering = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply {
                let _ = answering.publish(reply, "pong".into()).await;
            }
        }
    });
    wait_for_reply(&client, "svc.echo").await?;
    wait_for_reply(&single, "svc.echo").await?;

    eprintln!(
        "killing {}, which the multi-URL client is connected to",
        cluster.server_name(home)
    );
    cluster.kill(home)?;
    let took = wait_for_reply(&client, "svc.echo").await?;
    eprintln!("multi-URL client answered again after {took:?}");
    let now_at = cluster
        .index_of_port(client.server_info().port)
        .context("reconnected to one of ours")?;
    assert_ne!(now_at, home, "reconnected to another server");
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    let took = wait_for_reply(&single, "svc.echo").await?;
    eprintln!("single-URL client answered again after {took:?} more");
    assert_ne!(single.server_info().port, cluster.port(home));
    task.abort();
    Ok(())
}

/// How to tell a standalone server from a cluster: no cluster name in the
/// server INFO, and buckets with more than one replica are refused.
#[tokio::test]
async fn standalone_server_refuses_replicated_buckets() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    assert_eq!(client.server_info().cluster, None);
    assert!(client.server_info().connect_urls.is_empty());
    let err = jetstream::new(client)
        .create_key_value(kv::Config {
            bucket: "r3".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .err()
        .context("R3 on a standalone server must fail")?;
    eprintln!("R3 on a standalone server: {err}");
    assert!(err.to_string().contains("10074"), "{err}");
    Ok(())
}

#[test]
fn drop_kills_every_server_and_removes_dir() -> Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let ports: Vec<u16> = (0..3).map(|i| cluster.port(i)).collect();
    let pids: Vec<u32> = (0..3).filter_map(|i| cluster.pid(i)).collect();
    let store: PathBuf = cluster.store_dir(0);
    assert_eq!(pids.len(), 3);
    assert!(store.exists());
    assert!(cluster.log_tail(1, 200).contains("Server is ready"));

    cluster.kill(1)?;
    cluster.kill(1)?; // idempotent
    assert!(!cluster.is_running(1));
    assert!(cluster.pid(1).is_none());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, ports[1])).is_err());
    cluster.wait_ready(Duration::from_secs(30))?;

    drop(cluster);
    for port in ports {
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
    for pid in pids {
        assert!(!PathBuf::from(format!("/proc/{pid}")).exists(), "reaped");
    }
    assert!(!store.exists(), "temp dir removed");
    Ok(())
}
