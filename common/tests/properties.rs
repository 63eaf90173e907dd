//! Property tests of the parsers that face the internet: `Stripe-Signature` and the event
//! envelope never panic, signing then verifying always passes, and any one-byte change fails.

use common::config::Secret;
use common::stripe::event::StripeEvent;
use common::stripe::signature::{parse_header, sign, verify};
use proptest::prelude::*;

fn secrets(s: &str) -> Vec<Secret> {
    vec![Secret::new(s.to_owned())]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_header_parser_never_panics(header in ".{0,300}") {
        let _ = parse_header(&header);
        let _ = verify(&header, b"{}", &secrets("whsec_x"), 300, 1_700_000_000);
    }

    #[test]
    fn headers_built_from_signature_parts_never_panic(
        parts in proptest::collection::vec(
            prop_oneof!["t=[0-9]{0,25}", "v1=[0-9a-f]{0,70}", "v0=[0-9a-z]{0,10}", "[a-z0-9=, ]{0,12}"],
            0..12,
        )
    ) {
        let header = parts.join(",");
        let _ = verify(&header, b"{}", &secrets("whsec_x"), 300, 1_700_000_000);
    }

    #[test]
    fn what_is_signed_verifies(
        secret in "[!-~]{1,64}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let header = sign(&secret, timestamp, &body);
        prop_assert_eq!(verify(&header, &body, &secrets(&secret), 300, timestamp), Ok(0));
    }

    #[test]
    fn any_one_byte_change_to_the_body_fails(
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let header = sign("whsec_property", 1_700_000_000, &body);
        let mut changed = body.clone();
        let i = index.index(changed.len());
        changed[i] ^= flip;
        prop_assert!(verify(&header, &changed, &secrets("whsec_property"), 300, 1_700_000_000).is_err());
    }

    #[test]
    fn any_one_character_change_to_the_signature_fails(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        index in 0usize..64,
        replacement in proptest::char::range('0', 'f'),
    ) {
        let header = sign("whsec_property", 1_700_000_000, &body);
        let (prefix, hex) = header.split_once(",v1=").expect("v1");
        let mut chars: Vec<char> = hex.chars().collect();
        prop_assume!(chars[index] != replacement);
        chars[index] = replacement;
        let changed = format!("{prefix},v1={}", chars.into_iter().collect::<String>());
        prop_assert!(verify(&changed, &body, &secrets("whsec_property"), 300, 1_700_000_000).is_err());
    }

    #[test]
    fn the_event_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = StripeEvent::parse(&body);
    }

    #[test]
    fn the_event_parser_never_panics_on_event_shaped_json(
        id in "[ -~]{0,40}",
        kind in "[ -~]{0,40}",
        created in any::<i64>(),
        object in prop_oneof![Just("{}".to_owned()), Just("[]".to_owned()), Just("null".to_owned()),
            "\\{\"id\":\"[a-z_0-9]{0,20}\",\"amount_total\":-?[0-9]{1,25},\"payment_intent\":\\{\\}\\}"],
    ) {
        let body = format!(
            "{{\"id\":{},\"object\":\"event\",\"type\":{},\"created\":{created},\"livemode\":false,\"data\":{{\"object\":{object}}}}}",
            serde_json::Value::String(id), serde_json::Value::String(kind)
        );
        let _ = StripeEvent::parse(body.as_bytes());
    }
}
