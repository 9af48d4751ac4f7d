//! `GET /PATH` increments the counter `PATH` in the default key-value bucket
//! and answers `{"count": N}`; `GET /PATH?peek` reads it without counting.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
    });
}

use bindings::wasi::keyvalue::{atomics, store};

struct Counter;

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        content_type.as_bytes().to_vec(),
    )])
    .expect("a valid content type");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body of a new response");
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = outgoing.write() else { return };
    if stream.blocking_write_and_flush(body).is_err() {
        return;
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

fn count(key: &str, peek: bool) -> Result<u64, store::Error> {
    let bucket = store::open("")?;
    if peek {
        return Ok(bucket
            .get(key)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0));
    }
    atomics::increment(&bucket, key, 1)
}

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let key = match path.trim_start_matches('/') {
            "" => "root",
            key => key,
        };
        match count(key, query == "peek") {
            Ok(n) => respond(out, 200, "application/json", format!("{{\"count\":{n}}}").as_bytes()),
            Err(e) => {
                let why = match e {
                    store::Error::NoSuchStore => "no such store".to_string(),
                    store::Error::AccessDenied => "access denied".to_string(),
                    store::Error::Other(m) => m,
                };
                respond(out, 500, "text/plain", format!("key-value error: {why}\n").as_bytes())
            }
        }
    }
}

wasi::http::proxy::export!(Counter);
