//! Trust: signed modules under an issuer policy, and actor-to-actor calls
//! checked against the caller's claims.
//!
//! Real nats-server, real `lattice up` hosts, keys made and modules signed by
//! the `lattice` binary (`keys gen`, `claims sign`, `claims inspect`).

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, ensure};
use lattice::claims::{self, Claims, token};

use crate::common::{TestLattice, actor_wasm, probe_call, write_file};

/// `lattice keys gen --out DIR/NAME`: the printed public key; checks the mode.
async fn keys_gen(t: &TestLattice, name: &str) -> Result<(String, String)> {
    let path = t.dir.path().join(name);
    let path_s = path.display().to_string();
    let out = t.cli(&["keys", "gen", "--out", &path_s]).await?.success()?;
    let public = out.stdout.trim().to_string();
    ensure!(
        public.starts_with('A') && public.len() == 56,
        "an account public key: {public:?}"
    );
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "seed file mode {mode:o}");
    ensure!(
        std::fs::read_to_string(&path)?.trim().starts_with("SA"),
        "an account seed"
    );
    // A second gen to the same file is refused rather than losing the key.
    let again = t.cli(&["keys", "gen", "--out", &path_s]).await?.failure()?;
    again.stderr_has(&["exists", "--force"])?;
    Ok((public, path_s))
}

/// Starts `wasm` as `actor` and returns the error, which must come.
async fn start_refused(
    t: &TestLattice,
    host: &lattice_harness::HostProcess,
    wasm: &std::path::Path,
    actor: &str,
) -> Result<String> {
    match t.start_actor(host, wasm, actor, 1).await {
        Ok(started) => anyhow::bail!("{actor} started although it should not: {started:?}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_policy_runs_signed_modules_only() -> Result<()> {
    let t = TestLattice::start().await?;
    let (issuer, issuer_file) = keys_gen(&t, "issuer.nk").await?;
    let (foreign, foreign_file) = keys_gen(&t, "foreign.nk").await?;
    let dir = t.dir.path();
    let hello = actor_wasm("hello")?;
    let hello_s = hello.display().to_string();
    let probe = actor_wasm("probe-actor")?;
    let probe_s = probe.display().to_string();

    // hello has no claims: signing needs --name. The probe's own claims (from
    // claims!) are signed as they are.
    let signed_hello = dir.join("hello-signed.wasm").display().to_string();
    let err = t
        .cli(&[
            "claims",
            "sign",
            &hello_s,
            "--issuer",
            &issuer_file,
            "-o",
            &signed_hello,
        ])
        .await?
        .failure()?;
    err.stderr_has(&["no claims to sign", "--name"])?;
    t.cli(&[
        "claims",
        "sign",
        &hello_s,
        "--issuer",
        &issuer_file,
        "--name",
        "hello",
        "-o",
        &signed_hello,
    ])
    .await?
    .success()?;
    let signed_probe = dir.join("probe-signed.wasm").display().to_string();
    t.cli(&[
        "claims",
        "sign",
        &probe_s,
        "--issuer",
        &issuer_file,
        "-o",
        &signed_probe,
    ])
    .await?
    .success()?;
    let inspected = t
        .cli(&["claims", "inspect", &signed_probe])
        .await?
        .success()?;
    for needle in [issuer.as_str(), "signature: valid", "actors:    *"] {
        ensure!(
            inspected.stdout.contains(needle),
            "{needle:?} not in:\n{}",
            inspected.stdout
        );
    }

    let foreign_hello = dir.join("hello-foreign.wasm").display().to_string();
    t.cli(&[
        "claims",
        "sign",
        &hello_s,
        "--issuer",
        &foreign_file,
        "--name",
        "hello",
        "-o",
        &foreign_hello,
    ])
    .await?
    .success()?;

    // Expired: signed an hour ago, valid for a minute (the CLI only signs from now).
    let seed = std::fs::read_to_string(&issuer_file)?;
    let key = nkeys::KeyPair::from_seed(seed.trim())?;
    let now = token::now();
    let hello_claims = Claims {
        name: "hello".into(),
        ..Claims::default()
    };
    let expired = token::sign(
        &std::fs::read(&hello)?,
        &hello_claims,
        &key,
        now - 3600,
        Some(now - 3540),
    )?;
    let expired = write_file(dir, "hello-expired.wasm", &expired)?;

    // Tampered: a custom section appended after signing (still a valid module).
    let mut tampered = std::fs::read(&signed_hello)?;
    tampered.extend_from_slice(&[0, 3, 1, b'x', 1]);
    let tampered = write_file(dir, "hello-tampered.wasm", &tampered)?;
    let tampered_s = tampered.display().to_string();
    let inspected = t
        .cli(&["claims", "inspect", &tampered_s])
        .await?
        .success()?;
    ensure!(
        inspected.stdout.contains("signature: INVALID")
            && inspected.stdout.contains("changed after signing"),
        "{}",
        inspected.stdout
    );
    let json = t
        .cli(&["claims", "inspect", &tampered_s, "--output", "json"])
        .await?
        .success()?;
    let v: serde_json::Value = serde_json::from_str(&json.stdout)?;
    ensure!(
        v["signed"] == true && v["verified"] == false && v["issuer"] == issuer.as_str(),
        "{v}"
    );

    // Unsigned JSON claims.
    let unsigned = claims::embed(&std::fs::read(&hello)?, &hello_claims)?;
    let unsigned = write_file(dir, "hello-unsigned.wasm", &unsigned)?;

    let a = t
        .host("a", &[("--allowed-issuer", issuer.as_str())])
        .await?;
    let cases: [(&std::path::Path, &str, &[&str]); 5] = [
        (&hello, "no-claims", &["not signed", "no claims"]),
        (&unsigned, "unsigned", &["not signed", "unsigned JSON"]),
        (
            std::path::Path::new(&foreign_hello),
            "foreign",
            &[foreign.as_str(), "does not allow", issuer.as_str()],
        ),
        (&expired, "expired", &["expired at", issuer.as_str()]),
        (&tampered, "tampered", &["changed after signing"]),
    ];
    for (wasm, actor, needles) in cases {
        let err = start_refused(&t, &a, wasm, actor).await?;
        let named = format!("actor {actor} ");
        ensure!(err.contains(&named), "{named:?} not in: {err}");
        ensure!(err.contains("issuer policy"), "{err}");
        for n in needles {
            ensure!(err.contains(n), "{n:?} not in: {err}");
        }
    }

    // The signed modules run, and call each other as their claims allow.
    t.start_actor(&a, std::path::Path::new(&signed_hello), "hello", 1)
        .await
        .context("the signed hello starts")?;
    ensure!(t.say_hello("signed").await? == "Hello, signed!");
    t.start_actor(&a, std::path::Path::new(&signed_probe), "probe", 1)
        .await
        .context("the signed probe starts")?;
    let inner = rmp_serde::to_vec_named("probe")?;
    let reply = t
        .ctl
        .call_raw("probe", "Call", probe_call("hello", "SayHello", &inner)?)
        .await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, probe!");

    // A host given a key that is not an issuer key refuses to start.
    let bad = t
        .host_options("bad", &[("--allowed-issuer", "not-a-key")])
        .arg("--no-reconcile");
    let err = lattice_harness::HostProcess::spawn(crate::common::BIN, &bad)
        .await
        .err()
        .context("a host with a bad --allowed-issuer starts")?;
    ensure!(
        format!("{err:#}").contains("not-a-key"),
        "the host's error names the bad key: {err:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_calls_need_the_target_in_the_callers_claims() -> Result<()> {
    let t = TestLattice::start().await?;
    let a = t.host("a", &[]).await?;
    let probe = std::fs::read(actor_wasm("probe-actor")?)?;
    let narrow = |actors: &[&str]| -> Result<Vec<u8>> {
        Ok(claims::embed(
            &probe,
            &Claims {
                name: "probe".into(),
                actors: actors.iter().map(|s| s.to_string()).collect(),
                ..Claims::default()
            },
        )?)
    };
    let only_pricing = write_file(t.dir.path(), "probe-pricing.wasm", &narrow(&["pricing"])?)?;
    let only_hello = write_file(t.dir.path(), "probe-hello.wasm", &narrow(&["hello"])?)?;
    let bare = write_file(t.dir.path(), "probe-bare.wasm", &claims::strip(&probe)?)?;
    t.start_actor(&a, &actor_wasm("hello")?, "hello", 1).await?;
    t.start_actor(&a, &only_pricing, "caller", 1).await?;
    t.start_actor(&a, &only_hello, "friend", 1).await?;
    t.start_actor(&a, &bare, "stranger", 1).await?;

    let inner = rmp_serde::to_vec_named("x")?;
    let greet = probe_call("hello", "SayHello", &inner)?;
    let err = t
        .ctl
        .call_raw("caller", "Call", greet.clone())
        .await
        .unwrap_err()
        .to_string();
    for needle in [
        "actor caller may not call actor hello",
        "do not list",
        "pricing",
    ] {
        ensure!(err.contains(needle), "{needle:?} not in: {err}");
    }
    let err = t
        .ctl
        .call_raw("stranger", "Call", greet.clone())
        .await
        .unwrap_err()
        .to_string();
    for needle in ["actor stranger may not call actor hello", "no claims"] {
        ensure!(err.contains(needle), "{needle:?} not in: {err}");
    }
    // Listed: the call goes through; refused calls never reached hello.
    let reply = t.ctl.call_raw("friend", "Call", greet).await?;
    ensure!(rmp_serde::from_slice::<String>(&reply)? == "Hello, x!");
    let hello = t.actor_on(&a, "hello").await?.context("hello runs")?;
    ensure!(hello.calls == 1, "{hello:?}");
    Ok(())
}
