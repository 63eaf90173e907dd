//! Fuzzes the event parser: any bytes give an event or an error, never a panic, and a body that
//! the parser accepts is JSON by serde_json's measure too (its scanner checks the grammar itself).
#![no_main]

use common::stripe::event::StripeEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = StripeEvent::parse(data) {
        let _ = event.session_id();
        let _ = event.moves_orders();
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok(),
            "accepted a body that is not JSON"
        );
    }
});
