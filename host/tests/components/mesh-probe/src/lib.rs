//! `Echo` answers its payload, `Fail` fails, `Relay:NAMESPACE:OPERATION`
//! calls OPERATION of NAMESPACE (an actor or a contract, default link) with
//! its payload and answers what that answered.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../../wit",
        world: "lattice:actor/actor",
    });
}

use bindings::exports::lattice::actor::handler::Guest;
use bindings::lattice::actor::host;

struct Probe;

impl Guest for Probe {
    fn handle(operation: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        if let Some(target) = operation.strip_prefix("Relay:") {
            let (namespace, op) = target
                .rsplit_once(':')
                .ok_or_else(|| format!("Relay needs NAMESPACE:OPERATION, not {target:?}"))?;
            return host::call("", namespace, op, &payload);
        }
        match operation.as_str() {
            "Echo" => Ok(payload),
            "Fail" => Err("asked to fail".into()),
            other => Err(format!("unknown operation {other}")),
        }
    }
}

bindings::export!(Probe with_types_in bindings);
