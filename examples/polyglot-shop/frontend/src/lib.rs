//! `shop-frontend`: the HTTP face of the polyglot shop (`examples/polyglot-shop`).
//!
//! It serves `lattice:httpserver` (`HttpServer.HandleRequest`) and answers from
//! two other actors, called actor to actor wherever in the lattice they run:
//! `inventory` (Go, stock levels in `lattice:keyvalue`) and `pricing` (C, a
//! fixed price list).
//!
//! | request | calls | answer |
//! |---|---|---|
//! | `GET /quote/{item}?qty=N` (`qty` defaults to 1) | `pricing` `Quote {item, qty}`, `inventory` `Stock {item}` | `200` JSON `{"item","qty","in_stock","stock","unit_cents","total_cents"}`; `in_stock` is `stock >= qty` |
//! | `POST /stock/{item}?add=N` (`add` defaults to 1) | `inventory` `AddStock {item, qty: N}` | `200` JSON `{"item","stock"}`, the new level |
//!
//! Failures: an item the price list does not know answers `404` with the
//! pricing actor's message (`unknown item "kiwi"`); any other failed call
//! answers `502` with the error message; a `qty`/`add` that is not a whole
//! number of at least 1 answers `400`; another method on those paths `405`;
//! any other path `404`. Error bodies are text.
//!
//! `{item}` is one path segment, percent-decoded (`/quote/green%20fig` asks
//! for `green fig`).
//!
//! Claims (embedded at build time): `lattice:httpserver` only; calls to other
//! actors need no contract.

use lattice_actor::http::{self, ResponseExt};
use lattice_actor::{Error, call_actor};
use serde::{Deserialize, Serialize};

lattice_actor::actor! {
    http::HANDLE_REQUEST => handle_request,
}

lattice_actor::claims! {
    name: "shop-frontend",
    version: env!("CARGO_PKG_VERSION"),
    contracts: ["lattice:httpserver"],
    // The host refuses actor calls the claims do not list: keep these in step
    // with INVENTORY and PRICING below.
    actors: ["inventory", "pricing"],
}

/// The actor id of the inventory actor (Go).
pub const INVENTORY: &str = "inventory";
/// The actor id of the pricing actor (C).
pub const PRICING: &str = "pricing";

/// What the pricing actor's error for an item it does not price starts with.
pub const UNKNOWN_ITEM: &str = "unknown item \"";

/// `inventory` `Stock` argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRequest {
    /// The item.
    pub item: String,
}

/// `inventory` `AddStock` argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddStockRequest {
    /// The item.
    pub item: String,
    /// How many to add (at least 1).
    pub qty: i64,
}

/// `inventory` reply to `Stock` and `AddStock`; also the JSON answer of
/// `POST /stock/{item}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The item.
    pub item: String,
    /// How many are in stock.
    pub stock: i64,
}

/// `pricing` `Quote` argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// The item.
    pub item: String,
    /// How many (at least 1).
    pub qty: i64,
}

/// `pricing` reply to `Quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// The item.
    pub item: String,
    /// How many.
    pub qty: i64,
    /// Price of one, in cents.
    pub unit_cents: i64,
    /// `qty * unit_cents`.
    pub total_cents: i64,
}

/// The JSON answer of `GET /quote/{item}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The item.
    pub item: String,
    /// How many were asked for.
    pub qty: i64,
    /// Whether the stock covers `qty`.
    pub in_stock: bool,
    /// How many are in stock.
    pub stock: i64,
    /// Price of one, in cents.
    pub unit_cents: i64,
    /// `qty * unit_cents`.
    pub total_cents: i64,
}

/// What a request asks for, once its path, method and query are understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /quote/{item}?qty=N`.
    Quote {
        /// The item.
        item: String,
        /// How many.
        qty: i64,
    },
    /// `POST /stock/{item}?add=N`.
    AddStock {
        /// The item.
        item: String,
        /// How many to add.
        add: i64,
    },
}

const ROUTES: &str = "GET /quote/{item}?qty=N, POST /stock/{item}?add=N";

/// Understands a request, or gives the answer for one that makes no sense
/// (`404`, `405`, `400`).
pub fn route(req: &http::Request) -> Result<Route, http::Response> {
    let (prefix, method) = if req.path.starts_with("/quote/") {
        ("/quote/", "GET")
    } else if req.path.starts_with("/stock/") {
        ("/stock/", "POST")
    } else {
        return Err(not_found(&req.path));
    };
    let segment = &req.path[prefix.len()..];
    if segment.is_empty() || segment.contains('/') {
        return Err(not_found(&req.path));
    }
    let Some(item) = percent_decode(segment) else {
        return Err(http::Response::status(
            400,
            format!(
                "the item in {} is not valid percent-encoded UTF-8\n",
                req.path
            ),
        ));
    };
    if req.method != method {
        let mut resp = http::Response::status(
            405,
            format!(
                "{} {prefix}{{item}} is not served; use {method}\n",
                req.method
            ),
        );
        resp.headers.insert("allow".into(), vec![method.into()]);
        return Err(resp);
    }
    let param = if method == "GET" { "qty" } else { "add" };
    let n = match query_param(&req.query, param) {
        None => 1,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(http::Response::status(
                    400,
                    format!("{param} must be a whole number of at least 1, got {text:?}\n"),
                ));
            }
        },
    };
    Ok(if method == "GET" {
        Route::Quote { item, qty: n }
    } else {
        Route::AddStock { item, add: n }
    })
}

fn not_found(path: &str) -> http::Response {
    http::Response::status(404, format!("no route for {path}; try {ROUTES}\n"))
}

/// The first value of `name` in a raw query string (`a=1&b=2`), undecoded.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is
/// not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The answer to a failed call: `404` with the pricing actor's message when it
/// does not know the item, else `502` with the whole error.
pub fn error_response(err: &Error) -> http::Response {
    if let Error::Host {
        namespace, message, ..
    } = err
        && namespace == PRICING
        && let Some(at) = message.find(UNKNOWN_ITEM)
    {
        // The host prefixes the callee's message (`actor pricing failed
        // Quote: ...`); the client gets the pricing actor's own words.
        return http::Response::status(404, format!("{}\n", &message[at..]));
    }
    http::Response::status(502, format!("{err}\n"))
}

/// `GET /quote/{item}?qty=N`: the price from `pricing`, the stock from
/// `inventory`.
pub fn quote(item: String, qty: i64) -> Result<Quote, Error> {
    let price: Price = call_actor(
        PRICING,
        "Quote",
        &QuoteRequest {
            item: item.clone(),
            qty,
        },
    )?;
    let level: StockLevel = call_actor(INVENTORY, "Stock", &StockRequest { item })?;
    Ok(Quote {
        in_stock: level.stock >= qty,
        stock: level.stock,
        item: price.item,
        qty: price.qty,
        unit_cents: price.unit_cents,
        total_cents: price.total_cents,
    })
}

/// `POST /stock/{item}?add=N`: adds stock through `inventory`.
pub fn add_stock(item: String, add: i64) -> Result<StockLevel, Error> {
    call_actor(INVENTORY, "AddStock", &AddStockRequest { item, qty: add })
}

/// `HttpServer.HandleRequest`.
pub fn handle_request(req: http::Request) -> Result<http::Response, String> {
    let answer = match route(&req) {
        Err(resp) => return Ok(resp),
        Ok(Route::Quote { item, qty }) => quote(item, qty).map(|q| http::Response::json(&q)),
        Ok(Route::AddStock { item, add }) => add_stock(item, add).map(|s| http::Response::json(&s)),
    };
    Ok(answer.unwrap_or_else(|e| error_response(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_actor::{decode, dispatch, encode, testing};
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    fn req(method: &str, path: &str, query: &str) -> http::Request {
        http::Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            ..http::Request::default()
        }
    }

    fn body(r: &http::Response) -> &str {
        std::str::from_utf8(&r.body).unwrap()
    }

    #[test]
    fn routes() {
        let q = |item: &str, qty| {
            Ok(Route::Quote {
                item: item.into(),
                qty,
            })
        };
        assert_eq!(route(&req("GET", "/quote/apple", "qty=3")), q("apple", 3));
        assert_eq!(route(&req("GET", "/quote/apple", "")), q("apple", 1));
        assert_eq!(
            route(&req("GET", "/quote/green%20fig", "x=1&qty=2")),
            q("green fig", 2)
        );
        assert_eq!(
            route(&req("POST", "/stock/pear", "add=10")),
            Ok(Route::AddStock {
                item: "pear".into(),
                add: 10
            })
        );
        for path in ["/", "/quote", "/quote/", "/quote/a/b", "/stock/", "/other"] {
            let r = route(&req("GET", path, "")).unwrap_err();
            assert_eq!(r.status, 404, "{path}");
            assert!(body(&r).contains("try GET /quote/{item}"), "{}", body(&r));
        }
        let r = route(&req("POST", "/quote/apple", "")).unwrap_err();
        assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
        let r = route(&req("GET", "/stock/apple", "")).unwrap_err();
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
        for query in ["qty=0", "qty=-1", "qty=x", "qty=", "qty=1.5"] {
            let r = route(&req("GET", "/quote/apple", query)).unwrap_err();
            assert_eq!(r.status, 400, "{query}");
            assert!(
                body(&r).starts_with("qty must be a whole number"),
                "{query}"
            );
        }
        let r = route(&req("POST", "/stock/apple", "add=0")).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(
            route(&req("GET", "/quote/%ff", "")).unwrap_err().status,
            400
        );
        assert_eq!(route(&req("GET", "/quote/%4", "")).unwrap_err().status, 400);
    }

    #[test]
    fn errors_map_to_statuses() {
        let unknown = Error::Host {
            namespace: PRICING.into(),
            operation: "Quote".into(),
            message: "actor pricing failed Quote: unknown item \"kiwi\"".into(),
        };
        let r = error_response(&unknown);
        assert_eq!((r.status, body(&r)), (404, "unknown item \"kiwi\"\n"));
        let down = Error::Host {
            namespace: INVENTORY.into(),
            operation: "Stock".into(),
            message: "no responders".into(),
        };
        let r = error_response(&down);
        assert_eq!(
            (r.status, body(&r)),
            (502, "call to inventory Stock failed: no responders\n")
        );
        assert_eq!(error_response(&Error::NoHost).status, 502);
    }

    #[test]
    fn claims_list_httpserver_and_the_actors_called() {
        assert_eq!(
            LATTICE_CLAIMS_JSON,
            format!(
                r#"{{"name":"shop-frontend","version":"{}","contracts":["lattice:httpserver"],"actors":["inventory","pricing"]}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
        for id in [INVENTORY, PRICING] {
            assert!(LATTICE_CLAIMS_JSON.contains(&format!("\"{id}\"")), "{id}");
        }
    }

    /// The three actors played by a stand-in host: prices and a stock map.
    fn shop(stock: Rc<RefCell<BTreeMap<String, i64>>>) -> testing::MockHost {
        testing::mock_host(move |call| match (call.namespace, call.operation) {
            (PRICING, "Quote") => {
                let q: QuoteRequest = decode(call.payload).map_err(|e| e.to_string())?;
                let unit = match q.item.as_str() {
                    "apple" => 50,
                    "fig" => 120,
                    other => {
                        return Err(format!(
                            "actor pricing failed Quote: unknown item {other:?}"
                        ));
                    }
                };
                Ok(encode(&Price {
                    item: q.item,
                    qty: q.qty,
                    unit_cents: unit,
                    total_cents: unit * q.qty,
                })
                .unwrap())
            }
            (INVENTORY, "Stock") => {
                let r: StockRequest = decode(call.payload).map_err(|e| e.to_string())?;
                let n = stock.borrow().get(&r.item).copied().unwrap_or(0);
                Ok(encode(&StockLevel {
                    item: r.item,
                    stock: n,
                })
                .unwrap())
            }
            (INVENTORY, "AddStock") => {
                let r: AddStockRequest = decode(call.payload).map_err(|e| e.to_string())?;
                let mut s = stock.borrow_mut();
                let n = s.entry(r.item.clone()).or_default();
                *n += r.qty;
                Ok(encode(&StockLevel {
                    item: r.item,
                    stock: *n,
                })
                .unwrap())
            }
            other => Err(format!("unexpected call {other:?}")),
        })
    }

    #[test]
    fn handle_request_through_dispatch_with_stand_in_actors() {
        let stock = Rc::new(RefCell::new(BTreeMap::new()));
        let _host = shop(Rc::clone(&stock));
        wapc_init();
        let hit = |method: &str, path: &str, query: &str| -> http::Response {
            let reply = dispatch(
                http::HANDLE_REQUEST,
                &encode(&req(method, path, query)).unwrap(),
            )
            .unwrap();
            decode(&reply).unwrap()
        };
        let r = hit("POST", "/stock/apple", "add=5");
        assert_eq!((r.status, body(&r)), (200, r#"{"item":"apple","stock":5}"#));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let r = hit("GET", "/quote/apple", "qty=3");
        assert_eq!(
            (r.status, body(&r)),
            (
                200,
                r#"{"item":"apple","qty":3,"in_stock":true,"stock":5,"unit_cents":50,"total_cents":150}"#
            )
        );
        let r = hit("GET", "/quote/apple", "qty=6");
        assert!(body(&r).contains(r#""in_stock":false"#), "{}", body(&r));
        let r = hit("GET", "/quote/fig", "");
        assert_eq!(
            body(&r),
            r#"{"item":"fig","qty":1,"in_stock":false,"stock":0,"unit_cents":120,"total_cents":120}"#
        );
        let r = hit("GET", "/quote/kiwi", "");
        assert_eq!((r.status, body(&r)), (404, "unknown item \"kiwi\"\n"));
        assert_eq!(*stock.borrow(), BTreeMap::from([("apple".to_owned(), 5)]));
    }

    #[test]
    fn a_missing_actor_is_a_502() {
        let _host = testing::mock_host(|call| {
            Err(format!(
                "no responders for actor {:?} on subject lattice.x.rpc.{0} (is it running in this lattice?)",
                call.namespace
            ))
        });
        let r = handle_request(req("GET", "/quote/apple", "")).unwrap();
        assert_eq!(r.status, 502);
        assert!(
            body(&r).starts_with("call to pricing Quote failed: no responders"),
            "{}",
            body(&r)
        );
        let r = handle_request(req("POST", "/stock/apple", "")).unwrap();
        assert_eq!(r.status, 502);
        assert!(body(&r).starts_with("call to inventory AddStock failed"));
    }
}
