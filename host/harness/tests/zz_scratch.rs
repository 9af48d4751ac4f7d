use async_nats::jetstream::{self, kv};
use lattice_harness::NatsCluster;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let ml = cluster.meta_leader(0)?.unwrap();
    let victim = (ml + 1) % 3;
    let c = async_nats::connect(cluster.url(ml)).await?;
    let mut js = jetstream::new(c);
    js.set_timeout(Duration::from_secs(2));
    cluster.kill(victim)?;
    let t = Instant::now();
    for k in 0..40 {
        let jsz = cluster.monitor_json(ml, "/jsz")?;
        let reps = jsz["meta_cluster"]["replicas"].clone();
        let r = js
            .create_key_value(kv::Config {
                bucket: format!("b{k}"),
                num_replicas: 3,
                ..Default::default()
            })
            .await;
        eprintln!(
            "{:?} replicas={} create={:?}",
            t.elapsed(),
            reps,
            r.as_ref().err().map(|e| e.to_string())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // single server R3
    let s = lattice_harness::NatsServer::start()?;
    let c = async_nats::connect(s.url()).await?;
    eprintln!(
        "standalone server_info.cluster={:?} connect_urls={:?}",
        c.server_info().cluster,
        c.server_info().connect_urls
    );
    let r = jetstream::new(c)
        .create_key_value(kv::Config {
            bucket: "x".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await;
    eprintln!(
        "standalone R3: {:?}",
        r.as_ref().err().map(|e| e.to_string())
    );
    Ok(())
}
