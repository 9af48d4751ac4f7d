//! Answers by path: `/echo` sends back method, query, a header and the body;
//! the others misbehave the ways a host must survive.
//!
//! * `/trap-mid-body`: starts a response, writes part of the body, panics.
//! * `/hang`: never returns (the host's deadline must end it).
//! * `/bad-header`: builds a header the HTTP rules forbid (wasi:http refuses
//!   it and the component panics, as `expect` would in real code).
//! * `/latin1-header`: a header value that is not ASCII text.
//! * `/no-response`: returns without setting any response.
//! * `/fetch?URL`: GETs URL through `wasi:http/outgoing-handler` and answers
//!   its body (200) or the error (502).
//! * `/stream-echo`: writes each chunk of the request body back as soon as it
//!   is read, so a client can see both bodies stream; `?trap` panics once the
//!   request body has ended, after everything was echoed.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Faults;

fn respond(out: ResponseOutparam, status: u16, headers: Fields, body: &[u8]) {
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body of a new response");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("the body stream");
    stream.blocking_write_and_flush(body).expect("writing the body");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finishing the body");
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    use wasi::http::{outgoing_handler, types::OutgoingRequest, types::Scheme};
    let (scheme, rest) = url.split_once("://").ok_or("no scheme in the URL")?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|_| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|_| "bad authority")?;
    request.set_path_with_query(Some(&path)).map_err(|_| "bad path")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken")?
        .map_err(|e| format!("{e:?}"))?;
    let body = response.consume().map_err(|_| "no body")?;
    let stream = body.stream().map_err(|_| "no body stream")?;
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl wasi::exports::http::incoming_handler::Guest for Faults {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        match path {
            "/echo" => {
                let mut body = Vec::new();
                let incoming = request.consume().expect("the request body");
                let stream = incoming.stream().expect("the request body stream");
                while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                    body.extend_from_slice(&chunk);
                }
                let greeting = request
                    .headers()
                    .get("x-greeting")
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let text = format!(
                    "{:?} {query} {greeting} {}",
                    request.method(),
                    String::from_utf8_lossy(&body)
                );
                let headers =
                    Fields::from_list(&[("x-echo".to_string(), b"yes".to_vec())]).expect("valid");
                respond(out, 200, headers, text.as_bytes());
            }
            "/trap-mid-body" => {
                let response = OutgoingResponse::new(Fields::new());
                let outgoing = response.body().expect("the body of a new response");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("the body stream");
                let _ = stream.blocking_write_and_flush(b"the first half");
                panic!("the handler failed half way through the body");
            }
            "/hang" => {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "/bad-header" => {
                let headers = Fields::from_list(&[("bad header\n".to_string(), b"x".to_vec())])
                    .expect("wasi:http refuses an invalid header name");
                respond(out, 200, headers, b"unreachable");
            }
            "/latin1-header" => {
                let headers = Fields::from_list(&[("x-name".to_string(), vec![0xe9, b't', 0xe9])])
                    .expect("valid: obs-text is allowed in a header value");
                respond(out, 200, headers, b"latin-1");
            }
            "/stream-echo" => {
                let response = OutgoingResponse::new(Fields::new());
                let outgoing = response.body().expect("the body of a new response");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("the body stream");
                let incoming = request.consume().expect("the request body");
                let input = incoming.stream().expect("the request body stream");
                while let Ok(chunk) = input.blocking_read(64 * 1024) {
                    // `blocking-write-and-flush` takes at most 4096 bytes.
                    for piece in chunk.chunks(4096) {
                        stream
                            .blocking_write_and_flush(piece)
                            .expect("writing the body");
                    }
                }
                if query == "trap" {
                    panic!("the handler failed after streaming the body");
                }
                drop(stream);
                OutgoingBody::finish(outgoing, None).expect("finishing the body");
            }
            "/no-response" => {}
            "/fetch" => match fetch(query) {
                Ok(body) => respond(out, 200, Fields::new(), &body),
                Err(e) => respond(out, 502, Fields::new(), e.as_bytes()),
            },
            _ => respond(out, 404, Fields::new(), b"unknown path"),
        }
    }
}

wasi::http::proxy::export!(Faults);
