//! `kvcounter`: an actor that counts HTTP requests, per path, in key-value
//! storage.
//!
//! Every request that reaches it through `lattice:httpserver`
//! (`HttpServer.HandleRequest`), whatever its method, increments the counter
//! under the key `"counter" + path` (`/a` → `counter/a`, `/` → `counter/`)
//! through `lattice:keyvalue` and answers `200` with
//! `content-type: application/json` and `{"count":N}`, the new value. When the
//! key-value call fails the answer is `500` with the error message as text.
//!
//! Its claims (embedded at build time with [`lattice_actor::claims!`]) list
//! `lattice:keyvalue` and `lattice:httpserver`.
//!
//! # Deploy
//!
//! ```text
//! # build (the module lands in target/wasm32-wasip1/wasm/kvcounter.wasm)
//! cargo build --target wasm32-wasip1 --profile wasm -p kvcounter
//! lattice claims inspect target/wasm32-wasip1/wasm/kvcounter.wasm
//!
//! # one or more hosts; with nothing on 127.0.0.1:4222 the first starts nats-server -js
//! lattice up &
//!
//! # the actor (its id, kvcounter, comes from the file name) and the two built-in providers
//! lattice ctl start actor target/wasm32-wasip1/wasm/kvcounter.wasm
//! lattice ctl start provider builtin:httpserver
//! lattice ctl start provider builtin:keyvalue
//!
//! # links: HTTP requests on 127.0.0.1:8080 go to kvcounter; its default keyvalue
//! # link goes to the keyvalue provider (backend JetStream KV, shared by every host)
//! lattice ctl link put kvcounter httpserver lattice:httpserver address=127.0.0.1:8080
//! lattice ctl link put kvcounter keyvalue lattice:keyvalue
//!
//! curl http://127.0.0.1:8080/a      # {"count":1}
//! curl http://127.0.0.1:8080/a      # {"count":2}
//! curl http://127.0.0.1:8080/b      # {"count":1}
//! ```
//!
//! The HTTP server listens on the host that runs the `httpserver` provider.
//! More replicas (`lattice ctl start actor ... --count 3`) share the counters,
//! since the key-value store lives in JetStream. Without the keyvalue link
//! every request answers `500` with an error naming the actor, the contract
//! and the link name; with the actor stopped the HTTP server answers `503`.

use lattice_actor::Error;
use lattice_actor::http::{self, ResponseExt};
use lattice_actor::keyvalue;
use serde::Serialize;

lattice_actor::actor! {
    http::HANDLE_REQUEST => handle_request,
}

lattice_actor::claims! {
    name: "kvcounter",
    version: env!("CARGO_PKG_VERSION"),
    contracts: ["lattice:keyvalue", "lattice:httpserver"],
}

/// The JSON body of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The counter's value after this request.
    pub count: i64,
}

/// The key-value key counting requests to `path`: `"counter"` followed by the
/// path.
pub fn counter_key(path: &str) -> String {
    format!("counter{path}")
}

/// The HTTP answer to the outcome of the increment: `200 {"count":N}`, or
/// `500` with the error message.
pub fn count_response(count: Result<i64, Error>) -> http::Response {
    match count {
        Ok(count) => http::Response::json(&Count { count }),
        Err(e) => http::Response::status(500, format!("{e}\n")),
    }
}

/// `HttpServer.HandleRequest`: increments the path's counter and reports it.
pub fn handle_request(request: http::Request) -> Result<http::Response, String> {
    let count = keyvalue::increment(&counter_key(&request.path), 1);
    Ok(count_response(count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_actor::keyvalue::IncrementRequest;
    use lattice_actor::{decode, dispatch, encode, testing};
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    fn get(path: &str) -> http::Request {
        http::Request {
            method: "GET".into(),
            path: path.into(),
            ..http::Request::default()
        }
    }

    #[test]
    fn keys_are_counter_plus_path() {
        assert_eq!(counter_key("/a"), "counter/a");
        assert_eq!(counter_key("/"), "counter/");
        assert_eq!(counter_key(""), "counter");
        assert_eq!(counter_key("/ü%20x"), "counter/ü%20x");
    }

    #[test]
    fn count_is_json() {
        let r = count_response(Ok(42));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"count":42}"#);
        assert_eq!(
            r.headers,
            BTreeMap::from([(
                "content-type".to_owned(),
                vec!["application/json".to_owned()]
            )])
        );
        assert_eq!(count_response(Ok(-1)).body, br#"{"count":-1}"#);
    }

    #[test]
    fn store_error_is_a_500_with_the_message() {
        let r = count_response(Err(Error::NoHost));
        assert_eq!(r.status, 500);
        assert_eq!(
            r.body,
            b"host calls are only available inside a Lattice host\n"
        );
    }

    #[test]
    fn claims_list_both_contracts() {
        assert_eq!(
            LATTICE_CLAIMS_JSON,
            format!(
                r#"{{"name":"kvcounter","version":"{}","contracts":["lattice:keyvalue","lattice:httpserver"],"actors":[]}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn handle_request_through_dispatch_with_a_stand_in_store() {
        let store = Rc::new(RefCell::new(BTreeMap::<String, i64>::new()));
        let kv = Rc::clone(&store);
        let _host = testing::mock_host(move |call| {
            assert_eq!(
                (call.binding, call.namespace, call.operation),
                ("", "lattice:keyvalue", "KeyValue.Increment")
            );
            let req: IncrementRequest = decode(call.payload).map_err(|e| e.to_string())?;
            let mut kv = kv.borrow_mut();
            let n = kv.entry(req.key).or_default();
            *n += req.delta;
            Ok(encode(n).unwrap())
        });
        wapc_init();
        let hit = |path: &str| -> http::Response {
            let reply = dispatch(http::HANDLE_REQUEST, &encode(&get(path)).unwrap()).unwrap();
            decode(&reply).unwrap()
        };
        assert_eq!(hit("/a").body, br#"{"count":1}"#);
        assert_eq!(hit("/a").body, br#"{"count":2}"#);
        assert_eq!(hit("/b").body, br#"{"count":1}"#);
        assert_eq!(
            *store.borrow(),
            BTreeMap::from([("counter/a".to_owned(), 2), ("counter/b".to_owned(), 1)])
        );
    }

    #[test]
    fn handle_request_reports_a_refused_call() {
        let _host = testing::mock_host(|_| {
            Err("actor kvcounter may not call contract lattice:keyvalue through link \"default\": there is no such link".into())
        });
        let r = handle_request(get("/")).unwrap();
        assert_eq!(r.status, 500);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.starts_with("call to lattice:keyvalue KeyValue.Increment failed: actor kvcounter may not call contract lattice:keyvalue through link \"default\""),
            "{body}"
        );
        // Outside a host with no stand-in: NoHost, still a 500.
        drop(_host);
        assert_eq!(handle_request(get("/")).unwrap().status, 500);
    }
}
