//! The guest SDKs' msgpack decoders through real actors: arbitrary payloads
//! to Rust, C and Go actors get an answer or an error naming the actor, never
//! a dead instance, and each actor serves a well-formed call afterwards.
//!
//! Inputs come from proptest (bounded; `PROPTEST_CASES` changes the count);
//! the calls run on the lattice, so the properties are checked in a loop
//! rather than inside `proptest!`.

use anyhow::{Context, Result, ensure};
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::{Config, TestRunner},
};

use crate::common::{TestLattice, actor_wasm};

/// Payloads shaped like what decoders meet: raw bytes, msgpack maps, strings
/// and arrays with junk after the header.
fn payloads() -> impl Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            prop::sample::select(vec![0x80u8, 0x85, 0xa5, 0x92, 0xc4, 0xd9, 0xdc, 0xde]),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(head, mut tail)| {
                tail.insert(0, head);
                tail
            }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_payloads_get_an_answer_and_every_sdk_keeps_serving() -> Result<()> {
    let t = TestLattice::start().await?;
    let host = t.host("a", &[]).await?;
    let actors = [
        ("hello", actor_wasm("hello")?, "SayHello"),
        ("echo-c", crate::c::echo_c()?, "HttpServer.HandleRequest"),
        ("hello-go", crate::go::hello_go()?, "SayHello"),
    ];
    for (id, wasm, _) in &actors {
        t.start_actor(&host, wasm, id, 1).await?;
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = payloads();
    for case in 0..cases() {
        let payload = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        for (id, _, op) in &actors {
            match t.ctl.call_raw(id, op, payload.clone()).await {
                Ok(_) => {}
                Err(e) => {
                    let msg = e.to_string();
                    ensure!(
                        msg.contains(id) && !msg.contains("timed out"),
                        "case {case}: {id} {op} with {payload:02x?} failed without naming \
                         the actor, or hung: {msg}"
                    );
                }
            }
        }
    }
    // Every actor still answers a well-formed call.
    let reply: String = t.call("hello", "SayHello", "after").await?;
    ensure!(reply == "Hello, after!", "{reply}");
    let reply: String = t
        .call("hello-go", "SayHello", "after")
        .await
        .context("hello-go after the junk")?;
    ensure!(reply.contains("after"), "{reply}");
    let echoed = t
        .ctl
        .call_raw("echo-c", "Echo", vec![9])
        .await
        .context("echo-c after the junk")?;
    ensure!(echoed == [9], "{echoed:?}");
    let _ = host;
    Ok(())
}
