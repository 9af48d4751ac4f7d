//! The JSON of control requests, replies and events hosts read from NATS.
#![no_main]

use lattice::{ctl, event::Event, link::LinkDefinition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ctl::StartActor>(data);
    let _ = serde_json::from_slice::<ctl::StopActor>(data);
    let _ = serde_json::from_slice::<ctl::StartProvider>(data);
    let _ = serde_json::from_slice::<ctl::StopProvider>(data);
    let _ = serde_json::from_slice::<ctl::AuctionRequest>(data);
    let _ = serde_json::from_slice::<ctl::CtlReply<ctl::HostInventory>>(data);
    let _ = serde_json::from_slice::<LinkDefinition>(data);
    if let Ok(ev) = serde_json::from_slice::<Event>(data) {
        let _ = ev.typed();
    }
});
