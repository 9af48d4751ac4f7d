//! `hello-http`: answers every HTTP request, whatever its method and path,
//! with `200`, `content-type: text/plain; charset=utf-8` and `Hello, world!`.
//!
//! The smallest `lattice:httpserver` actor; `scripts/bench-http.sh` measures
//! the HTTP server provider with it.
//!
//! ```text
//! cargo build --target wasm32-wasip1 --profile wasm -p hello-http --target-dir target/actors
//! lattice ctl start actor target/actors/wasm32-wasip1/wasm/hello_http.wasm --id hello-http
//! lattice ctl start provider builtin:httpserver
//! lattice ctl link put hello-http httpserver lattice:httpserver address=127.0.0.1:8080
//! curl http://127.0.0.1:8080/     # Hello, world!
//! ```

use lattice_actor::http::{self, ResponseExt};

/// The body of every answer.
pub const BODY: &str = "Hello, world!";

lattice_actor::actor! {
    http::HANDLE_REQUEST => handle_request,
}

lattice_actor::claims! {
    name: "hello-http",
    version: env!("CARGO_PKG_VERSION"),
    contracts: ["lattice:httpserver"],
}

/// `HttpServer.HandleRequest`: `200 Hello, world!`.
pub fn handle_request(_request: http::Request) -> Result<http::Response, String> {
    Ok(http::Response::text(BODY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_actor::{decode, dispatch, encode};

    #[test]
    fn every_request_gets_hello() {
        wapc_init();
        for (method, path) in [("GET", "/"), ("POST", "/x/y?z=1")] {
            let request = http::Request {
                method: method.into(),
                path: path.into(),
                ..http::Request::default()
            };
            let reply = dispatch(http::HANDLE_REQUEST, &encode(&request).unwrap()).unwrap();
            let response: http::Response = decode(&reply).unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body, BODY.as_bytes());
            assert_eq!(response.header("content-type"), Some(http::TEXT_PLAIN));
        }
    }
}
