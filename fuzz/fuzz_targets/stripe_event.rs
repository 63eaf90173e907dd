//! Fuzzes the event parser and the jsonb-safe payload: any bytes give an event or an error, never
//! a panic.
#![no_main]

use common::stripe::event::{StripeEvent, storable_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = StripeEvent::parse(data) {
        let _ = event.session_id();
        let _ = event.moves_orders();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = storable_payload(text);
    }
});
