//! Fuzzes `Stripe-Signature` parsing and verification: any header and body must give an answer,
//! never a panic, and a signature made for the body must verify.
#![no_main]

use common::config::Secret;
use common::stripe::signature::{parse_header, sign, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len().saturating_sub(1));
    let (header, body) = data.split_at(split.min(data.len()));
    let secrets = [Secret::new("whsec_fuzz".to_owned())];
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = parse_header(header);
        let _ = verify(header, body, &secrets, 300, 1_700_000_000);
    }
    let signed = sign("whsec_fuzz", 1_700_000_000, body);
    assert_eq!(verify(&signed, body, &secrets, 300, 1_700_000_000), Ok(0));
});
