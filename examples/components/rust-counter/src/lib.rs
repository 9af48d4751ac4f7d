//! `GET /PATH` increments the counter `PATH` in the default key-value bucket
//! and answers `{"count": N}`; `GET /PATH?peek` reads it without counting;
//! `GET /?keys` lists every key of the bucket, one per line (`list-keys`,
//! page after page).

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
    // wasi:io takes at most 4 KiB per blocking write.
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
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

/// Every key of the bucket, following `list-keys` cursors to the end.
fn keys() -> Result<Vec<String>, store::Error> {
    let bucket = store::open("")?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor)?;
        all.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(m) => m,
    }
}

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if query == "keys" {
            return match keys() {
                Ok(keys) => respond(out, 200, "text/plain", keys.join("\n").as_bytes()),
                Err(e) => {
                    let why = describe(e);
                    respond(out, 500, "text/plain", format!("key-value error: {why}\n").as_bytes())
                }
            };
        }
        let key = match path.trim_start_matches('/') {
            "" => "root",
            key => key,
        };
        match count(key, query == "peek") {
            Ok(n) => respond(out, 200, "application/json", format!("{{\"count\":{n}}}").as_bytes()),
            Err(e) => {
                let why = describe(e);
                respond(out, 500, "text/plain", format!("key-value error: {why}\n").as_bytes())
            }
        }
    }
}

wasi::http::proxy::export!(Counter);
