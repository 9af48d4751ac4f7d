//! `hello`: the smallest useful Lattice actor.
//!
//! Operations:
//!
//! * `SayHello`: payload a msgpack string `name`; replies with the msgpack
//!   string `"Hello, <name>!"`.
//! * `Echo`: replies with the payload bytes unchanged.
//!
//! Build it with
//! `cargo build --target wasm32-wasip1 --profile wasm -p hello`.

/// Builds the greeting for `name`.
pub fn greeting(name: &str) -> String {
    format!("Hello, {name}!")
}

/// `SayHello`: greets the name in the payload.
pub fn say_hello(name: String) -> Result<String, String> {
    Ok(greeting(&name))
}

/// `Echo`: returns the payload unchanged.
pub fn echo(payload: &[u8]) -> Result<Vec<u8>, String> {
    Ok(payload.to_vec())
}

lattice_actor::actor! {
    "SayHello" => say_hello,
    "Echo" => raw echo,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_actor::{decode, dispatch, encode};

    #[test]
    fn greets_by_name() {
        assert_eq!(greeting("Ada"), "Hello, Ada!");
        assert_eq!(greeting(""), "Hello, !");
    }

    #[test]
    fn operations_through_dispatch() {
        wapc_init();
        let reply = dispatch("SayHello", &encode("World").unwrap()).unwrap();
        assert_eq!(decode::<String>(&reply).unwrap(), "Hello, World!");
        assert_eq!(dispatch("Echo", &[0, 1, 0xc1]).unwrap(), [0, 1, 0xc1]);
        let err = dispatch("SayHello", &encode(&7u8).unwrap()).unwrap_err();
        assert!(
            err.starts_with("SayHello: payload is not valid msgpack for alloc::string::String"),
            "{err}"
        );
        assert_eq!(
            dispatch("Bye", &[]).unwrap_err(),
            r#"unknown operation "Bye"; this actor handles: SayHello, Echo"#
        );
    }
}
