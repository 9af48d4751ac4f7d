//! Every decoder of bytes that arrive from NATS, HTTP, a file or a module:
//! arbitrary input gives a typed error, never a panic, and what is encoded
//! decodes to the same value.
//!
//! Bounded for CI (`PROPTEST_CASES` raises or lowers it); `fuzz/` holds
//! cargo-fuzz targets for the same decoders, for machines with nightly.

use lattice::{
    app::Manifest,
    claims::{self, Claims, token::Token},
    contracts::{httpserver, keyvalue},
    ctl,
    event::{Event, EventData},
    id::{ActorId, ContractId, HostId, LatticeId, LinkName, ProviderId, ProviderRef},
    link::LinkDefinition,
    rpc::{Invocation, InvocationResponse, Target},
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // proptest reads PROPTEST_CASES itself when the config is the default; keep
    // that, with a CI-sized default.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A token NATS subjects and ids accept.
fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,20}"
}

/// Any bytes, biased towards the shapes decoders see: msgpack maps and JSON.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(|mut v| {
            v.insert(0, 0x85); // fixmap of 5, like an invocation
            v
        }),
        "[{}\\[\\]\":,a-z0-9 ]{0,64}".prop_map(String::into_bytes),
    ]
}

/// The wasm header followed by arbitrary sections.
fn wasm_like() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..128).prop_map(|tail| {
        let mut v = b"\0asm\x01\0\0\0".to_vec();
        v.extend(tail);
        v
    })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        token().prop_map(|a| Target::Actor(ActorId::new(a).unwrap())),
        (token(), token(), token(), token()).prop_map(|(p, ns, name, link)| Target::Provider {
            provider: ProviderId::new(p).unwrap(),
            contract: ContractId::new(format!("{ns}:{name}")).unwrap(),
            link: LinkName::new(link).unwrap(),
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn invocation_envelope(junk in bytes()) {
        let _ = Invocation::decode(&junk);
        let _ = InvocationResponse::decode(&junk);
    }

    #[test]
    fn invocation_round_trips(
        origin in token(),
        target in target(),
        op in "[A-Za-z.]{1,30}",
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let inv = Invocation::new(origin, &target, op, payload);
        let back = Invocation::decode(&inv.encode().unwrap()).unwrap();
        prop_assert_eq!(&back.target, target.id());
        prop_assert_eq!(back.link_name.is_some(), matches!(target, Target::Provider { .. }));
        prop_assert_eq!(back, inv);
    }

    #[test]
    fn invocation_response_round_trips(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        error in proptest::option::of(".{0,40}"),
    ) {
        let r = InvocationResponse { payload, error };
        prop_assert_eq!(InvocationResponse::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn control_json(junk in bytes()) {
        let _ = serde_json::from_slice::<ctl::StartActor>(&junk);
        let _ = serde_json::from_slice::<ctl::StopActor>(&junk);
        let _ = serde_json::from_slice::<ctl::StartProvider>(&junk);
        let _ = serde_json::from_slice::<ctl::StopProvider>(&junk);
        let _ = serde_json::from_slice::<ctl::AuctionRequest>(&junk);
        let _ = serde_json::from_slice::<ctl::CtlReply<ctl::Bid>>(&junk);
        let _ = serde_json::from_slice::<ctl::CtlReply<ctl::HostInventory>>(&junk);
        let _ = serde_json::from_slice::<LinkDefinition>(&junk);
    }

    #[test]
    fn start_actor_round_trips(
        actor in token(),
        reference in ".{0,40}",
        replicas in any::<u32>(),
        config in proptest::collection::btree_map(token(), ".{0,20}", 0..4),
    ) {
        let cmd = ctl::StartActor {
            actor_id: ActorId::new(actor).unwrap(),
            digest: lattice::digest::Digest::of(reference.as_bytes()),
            reference,
            replicas,
            config,
        };
        let back: ctl::StartActor = serde_json::from_slice(&serde_json::to_vec(&cmd).unwrap()).unwrap();
        prop_assert_eq!(back, cmd);
    }

    #[test]
    fn ids_from_the_wire_are_subject_safe(s in ".{0,40}") {
        // Whatever an id type accepts is one NATS subject token.
        let safe = |t: &str| !t.is_empty() && !t.contains(['.', ' ', '*', '>', '\t', '\r', '\n']);
        if let Ok(a) = ActorId::new(s.as_str()) { prop_assert!(safe(a.as_str()), "{a:?}"); }
        if let Ok(p) = ProviderId::new(s.as_str()) { prop_assert!(safe(p.as_str()), "{p:?}"); }
        if let Ok(h) = HostId::new(s.as_str()) { prop_assert!(safe(h.as_str()), "{h:?}"); }
        if let Ok(l) = LatticeId::new(s.as_str()) { prop_assert!(safe(l.as_str()), "{l:?}"); }
        if let Ok(c) = ContractId::new(s.as_str()) { prop_assert!(!c.as_str().contains(['.', '*', '>', ' ']), "{c:?}"); }
        let _ = ProviderRef::parse(&s);
        let _ = lattice::digest::Digest::parse(&s);
        let _ = serde_json::from_value::<ActorId>(serde_json::Value::String(s.clone()));
    }

    #[test]
    fn events(junk in bytes(), kind in "[a-z_]{1,20}") {
        let _ = serde_json::from_slice::<Event>(&junk);
        // An event whose body does not fit its type is "unknown", not a panic.
        if let Ok(data) = serde_json::from_slice::<serde_json::Value>(&junk) {
            let ev = Event {
                specversion: "1.0".into(),
                id: "x".into(),
                kind,
                source: "s".into(),
                time: "t".into(),
                data,
            };
            let _ = ev.typed();
        }
    }

    #[test]
    fn events_round_trip(source in token(), reason in ".{0,40}") {
        let data = EventData::HostStopped {
            host_id: HostId::new(format!("H{source}")).unwrap(),
            reason,
        };
        let ev = data.clone().into_event(&source);
        let back: Event = serde_json::from_slice(&serde_json::to_vec(&ev).unwrap()).unwrap();
        prop_assert_eq!(back.typed(), Some(data));
    }

    #[test]
    fn app_manifests(text in ".{0,200}") {
        let _ = Manifest::from_toml(&text);
    }

    #[test]
    fn app_manifests_with_arbitrary_values(
        name in ".{0,20}",
        id in ".{0,20}",
        replicas in any::<i64>(),
        contract in ".{0,20}",
    ) {
        let text = format!(
            "name = {name:?}\n[[actors]]\nid = {id:?}\nref = \"x.wasm\"\nreplicas = {replicas}\n\
             [[providers]]\nid = \"p\"\nref = \"builtin:keyvalue\"\n\
             [[links]]\nactor = {id:?}\nprovider = \"p\"\ncontract = {contract:?}\n"
        );
        if let Ok(m) = Manifest::from_toml(&text) {
            // Whatever validation lets through is usable as it stands.
            prop_assert!(m.actors.iter().all(|a| ActorId::new(a.id.as_str()).is_ok()));
            prop_assert!(m.link_definitions().is_ok());
        }
    }

    #[test]
    fn claims_sections(junk in wasm_like(), raw in bytes()) {
        let _ = claims::read(&junk);
        let _ = claims::read(&raw);
        // A well-formed custom section named like the claims with junk inside.
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        let name = b"lattice:claims";
        let body_len = 1 + name.len() + raw.len();
        m.push(0);
        let mut n = body_len as u32;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 { m.push(b); break; }
            m.push(b | 0x80);
        }
        m.push(name.len() as u8);
        m.extend_from_slice(name);
        m.extend_from_slice(&raw);
        prop_assert!(claims::read(&m).is_err() || serde_json::from_slice::<Claims>(&raw).is_ok());
    }

    #[test]
    fn claims_round_trip(name in token(), contracts in proptest::collection::vec((token(), token()), 0..4)) {
        let tiny = b"\0asm\x01\0\0\0".to_vec();
        let c = Claims {
            name,
            contracts: contracts.into_iter().map(|(a, b)| format!("{a}:{b}")).collect(),
            ..Claims::default()
        };
        let out = claims::embed(&tiny, &c).unwrap();
        prop_assert_eq!(claims::read(&out).unwrap(), Some(c));
    }

    #[test]
    fn http_and_keyvalue_codecs(junk in bytes()) {
        let _ = rmp_serde::from_slice::<httpserver::HttpRequest>(&junk);
        let _ = rmp_serde::from_slice::<httpserver::HttpResponse>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::GetRequest>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::GetResponse>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::SetRequest>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::KeyRequest>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::IncrementRequest>(&junk);
        let _ = rmp_serde::from_slice::<keyvalue::KeysRequest>(&junk);
    }

    #[test]
    fn http_response_round_trips(
        status in 100u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..256),
        headers in proptest::collection::btree_map("[a-z-]{1,10}", "[ -~]{0,20}", 0..4),
    ) {
        let mut r = httpserver::HttpResponse::new(status, body);
        for (k, v) in &headers {
            r = r.with_header(k, v);
        }
        let back: httpserver::HttpResponse = rmp_serde::from_slice(&rmp_serde::to_vec_named(&r).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn claims_tokens(text in ".{0,200}", parts in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5)) {
        let _ = Token::decode(&text);
        let _ = Token::decode(&parts.join("."));
    }

    #[test]
    fn signed_claims_verify_and_any_changed_byte_does_not(
        name in token(),
        flip in any::<prop::sample::Index>(),
    ) {
        let issuer = nkeys::KeyPair::new_account();
        let module = b"\0asm\x01\0\0\0\0\x02\x01x".to_vec(); // a custom section "x"
        let c = Claims { name, ..Claims::default() };
        let signed = claims::token::sign(&module, &c, &issuer, 1, None).unwrap();
        let policy = claims::token::IssuerPolicy::new(&[issuer.public_key()]).unwrap();
        prop_assert_eq!(policy.check(&signed, 2).unwrap(), Some(c));
        // Flip one bit anywhere: the module no longer verifies, and nothing panics.
        let mut tampered = signed.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert!(policy.check(&tampered, 2).is_err() || tampered == signed);
    }
}
