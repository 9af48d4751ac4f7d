//! Claims: the name, version, contracts and callable actors an actor
//! declares, embedded in its module at build time with
//! [`claims!`](crate::claims!).
//!
//! The host reads them from the module's custom section [`SECTION`]
//! (`lattice:claims`), which holds the JSON of a [`Claims`]. An actor may call
//! a contract only when its claims list it (and a link for it exists), and
//! another actor only when its claims list that actor's id (or `*`).
//!
//! To sign the claims (for hosts started with `--allowed-issuer`), build,
//! then run `lattice claims sign MODULE.wasm --issuer ISSUER.nk`: without
//! `--name` it signs the claims this macro embedded, as they are.

pub use lattice::claims::{Claims, SECTION};

/// Declares the actor's claims: emits a `lattice:claims` custom section holding
/// `{"name":..,"version":..,"contracts":[..],"actors":[..]}` as JSON, built at
/// compile time.
///
/// ```
/// lattice_actor::claims! {
///     name: "kvcounter",
///     version: "0.1.0",
///     contracts: ["lattice:keyvalue", "lattice:httpserver"],
///     actors: ["pricing"],
/// }
///
/// # fn main() {
/// assert_eq!(
///     LATTICE_CLAIMS_JSON,
///     r#"{"name":"kvcounter","version":"0.1.0","contracts":["lattice:keyvalue","lattice:httpserver"],"actors":["pricing"]}"#
/// );
/// # }
/// ```
///
/// * `name` and `version` are string literals (or macros that expand to one,
///   such as `env!("CARGO_PKG_VERSION")`); they go into the JSON as written, so
///   they may not contain `"`, `\` or control characters. `name` must not be
///   blank.
/// * `contracts` is a list of string literals, each `namespace:name` of
///   lowercase ASCII letters, digits, `-` and `_` (e.g. `lattice:keyvalue`).
///   It may be empty.
/// * `actors` (optional, after `contracts`) lists the ids of the actors this
///   actor may call (`[A-Za-z0-9_-]`, at most 128 characters), or `"*"` for
///   every actor. Left out, the actor may call no other actor.
///
/// Breaking a rule is a compile error. The macro also defines
/// `pub const LATTICE_CLAIMS_JSON: &str`, the JSON itself, on every target
/// (handy in tests), and, on `wasm32` only, a `#[used]` static placed in the
/// `lattice:claims` section. Use it once per actor crate (a second use is a
/// compile error: two sections would merge into invalid JSON).
///
/// The section survives the `wasm` profile (LTO, `strip = true`); inspect it
/// with `lattice claims inspect target/wasm32-wasip1/wasm/NAME.wasm`.
/// `lattice claims put` rewrites the claims of an already built module;
/// `lattice claims sign MODULE --issuer FILE` signs the embedded claims.
///
/// ```compile_fail
/// // not namespace:name
/// lattice_actor::claims! { name: "x", version: "1", contracts: ["keyvalue"] }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// // not an actor id
/// lattice_actor::claims! { name: "x", version: "1", contracts: [], actors: ["a.b"] }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// // a quote would break the JSON
/// lattice_actor::claims! { name: "say \"hi\"", version: "1", contracts: [] }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! claims {
    (
        name: $name:expr,
        version: $version:expr,
        contracts: [$($first:literal $(, $rest:literal)*)? $(,)?]
        $(, actors: [$($afirst:literal $(, $arest:literal)*)? $(,)?])? $(,)?
    ) => {
        /// The claims of this actor, as the JSON in its `lattice:claims`
        /// custom section (see `lattice_actor::claims!`).
        pub const LATTICE_CLAIMS_JSON: &str = concat!(
            "{\"name\":\"", $name,
            "\",\"version\":\"", $version,
            "\",\"contracts\":[",
            $("\"", $first, "\"", $(",\"", $rest, "\"",)*)?
            "],\"actors\":[",
            $($("\"", $afirst, "\"", $(",\"", $arest, "\"",)*)?)?
            "]}"
        );

        const _: () = {
            $crate::claims::__check_name($name);
            $crate::claims::__check_text($version);
            $(
                $crate::claims::__check_contract($first);
                $($crate::claims::__check_contract($rest);)*
            )?
            $($(
                $crate::claims::__check_actor($afirst);
                $($crate::claims::__check_actor($arest);)*
            )?)?
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[used]
            #[unsafe(link_section = "lattice:claims")]
            static LATTICE_CLAIMS_SECTION: [u8; LATTICE_CLAIMS_JSON.len()] =
                $crate::claims::__to_array(LATTICE_CLAIMS_JSON);
        };
    };
}

/// The bytes of `s` as an array (for the section static). Not public API.
#[doc(hidden)]
pub const fn __to_array<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() == N, "claims!: length mismatch");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Compile-time check of a string embedded verbatim in the claims JSON.
/// Not public API.
#[doc(hidden)]
pub const fn __check_text(s: &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f {
            panic!(
                "claims!: name and version may not contain '\"', '\\' or control characters (they go into the JSON as written)"
            );
        }
        i += 1;
    }
}

/// Compile-time check of the actor name. Not public API.
#[doc(hidden)]
pub const fn __check_name(s: &str) {
    __check_text(s);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_whitespace() {
            return;
        }
        i += 1;
    }
    panic!("claims!: name must not be empty");
}

/// Compile-time check of a contract id: `namespace:name`, each part
/// `[a-z0-9_-]+`. Not public API.
#[doc(hidden)]
pub const fn __check_contract(s: &str) {
    if !is_contract_id(s) {
        panic!(
            "claims!: a contract id must look like namespace:name, e.g. lattice:keyvalue (lowercase letters, digits, '-', '_')"
        );
    }
}

/// Compile-time check of an entry of `actors`: `*` or an actor id,
/// `[A-Za-z0-9_-]`, 1 to 128 characters. Not public API.
#[doc(hidden)]
pub const fn __check_actor(s: &str) {
    if !is_actor_entry(s) {
        panic!(
            "claims!: an actors entry must be an actor id (ASCII letters, digits, '-', '_'; at most 128) or \"*\""
        );
    }
}

/// Whether `s` is `*` or an actor id (the rule of `lattice::id::validate`).
const fn is_actor_entry(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() == 1 && bytes[0] == b'*' {
        return true;
    }
    if bytes.is_empty() || bytes.len() > 128 {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `s` is `namespace:name`, each part `[a-z0-9_-]+` (the rule of
/// `lattice::claims::validate_contract_id`).
const fn is_contract_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut colons = 0;
    let mut part_len = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b':' {
            if part_len == 0 {
                return false;
            }
            colons += 1;
            part_len = 0;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            part_len += 1;
        } else {
            return false;
        }
        i += 1;
    }
    colons == 1 && part_len > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    mod kv {
        crate::claims! {
            name: "kvcounter",
            version: "0.1.0",
            contracts: ["lattice:keyvalue", "lattice:httpserver"],
        }
    }

    mod none {
        crate::claims! { name: "bare", version: env!("CARGO_PKG_VERSION"), contracts: [] }
    }

    mod one {
        crate::claims! { name: "one", version: "", contracts: ["lattice:keyvalue",] }
    }

    mod calls {
        crate::claims! {
            name: "front",
            version: "1",
            contracts: [],
            actors: ["pricing", "inventory",],
        }
    }

    mod any {
        crate::claims! { name: "any", version: "1", contracts: ["lattice:keyvalue"], actors: ["*"] }
    }

    fn parse(json: &str) -> Claims {
        let claims: Claims = serde_json::from_str(json).unwrap();
        claims.validate().unwrap();
        claims
    }

    #[test]
    fn json_is_exactly_what_serde_writes() {
        assert_eq!(
            kv::LATTICE_CLAIMS_JSON,
            r#"{"name":"kvcounter","version":"0.1.0","contracts":["lattice:keyvalue","lattice:httpserver"],"actors":[]}"#
        );
        let claims = parse(kv::LATTICE_CLAIMS_JSON);
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            kv::LATTICE_CLAIMS_JSON
        );
        assert!(claims.allows("lattice:httpserver"));

        assert_eq!(
            none::LATTICE_CLAIMS_JSON,
            format!(
                r#"{{"name":"bare","version":"{}","contracts":[],"actors":[]}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(parse(none::LATTICE_CLAIMS_JSON).contracts.is_empty());
        assert_eq!(
            parse(one::LATTICE_CLAIMS_JSON).contracts,
            ["lattice:keyvalue"]
        );
        let calls = parse(calls::LATTICE_CLAIMS_JSON);
        assert_eq!(calls.actors, ["pricing", "inventory"]);
        assert!(calls.allows_actor("pricing") && !calls.allows_actor("other"));
        assert!(parse(any::LATTICE_CLAIMS_JSON).allows_actor("other"));
    }

    #[test]
    fn actor_rule_matches_lattice() {
        let long = "a".repeat(129);
        for id in ["pricing", "a-b_C9", "*", "", "**", "a.b", "a b", "ä", &long] {
            let lattice_ok = id == "*" || lattice::id::ActorId::new(id).is_ok();
            assert_eq!(is_actor_entry(id), lattice_ok, "{id:?}");
        }
    }

    #[test]
    fn contract_id_rule_matches_lattice() {
        for id in [
            "lattice:keyvalue",
            "a:b",
            "x-1:y_2",
            "",
            ":",
            "a:",
            ":b",
            "a:b:c",
            "Lattice:kv",
            "lattice:key value",
            "keyvalue",
            "ä:b",
        ] {
            assert_eq!(
                is_contract_id(id),
                lattice::claims::validate_contract_id(id).is_ok(),
                "{id:?}"
            );
        }
    }

    #[test]
    fn to_array_copies() {
        const A: [u8; 3] = __to_array("abc");
        assert_eq!(&A, b"abc");
    }
}
