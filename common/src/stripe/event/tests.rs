//! Unit tests of the event parser: Stripe's own payloads, and every way a signed body can be
//! odd.

use super::*;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/stripe");

fn from_value(v: Value) -> StripeEvent {
    StripeEvent::parse_str(&v.to_string()).expect("event")
}

#[test]
fn official_payload_parses() {
    let body =
        std::fs::read(format!("{FIXTURES}/sigvec_dotnet_event_payload.json")).expect("fixture");
    let e = StripeEvent::parse(&body).expect("event");
    assert_eq!(e.id, "evt_123");
    assert_eq!(e.event_type, "customer.created");
    assert_eq!(e.created.timestamp(), 1_533_204_620);
    assert_eq!(e.api_version.as_deref(), Some("2017-05-25"));
    assert_eq!(e.object.kind.as_deref(), Some("customer"));
    assert_eq!(e.session_id(), None);
    assert!(!e.moves_orders());
    assert_eq!(e.unreadable, None);
}

#[test]
fn checkout_session_fixture_wrapped_in_an_event() {
    let session: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/checkout_session.json")).expect("fixture"),
    )
    .expect("json");
    let e = from_value(
        json!({"id": "evt_1", "object": "event", "type": "checkout.session.completed",
        "created": 1_700_000_000, "livemode": false, "api_version": null,
        "data": {"object": session}}),
    );
    assert_eq!(
        e.session_id(),
        Some("cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY")
    );
    assert_eq!(e.object.payment_status.as_deref(), Some("unpaid"));
    assert_eq!(
        e.object.payment_intent.as_deref(),
        Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
    );
    assert_eq!(e.object.amount_total, None);
    assert!(e.moves_orders());
    assert_eq!(e.unreadable, None);
}

#[test]
fn list_fixture_elements_parse() {
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/list_events.json")).expect("fixture"),
    )
    .expect("json");
    for item in list["data"].as_array().expect("data").clone() {
        let e = from_value(item);
        assert_eq!(e.event_type, "setup_intent.created");
    }
}

#[test]
fn not_events() {
    for body in [
        &b"not json"[..],
        b"{}",
        b"[]",
        br#"{"id":"evt_1","object":"customer","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        br#"{"id":"","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        br#"{"id":"evt 1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        br#"{"id":"evt_1","object":"event","type":"","created":1,"livemode":false,"data":{"object":{}}}"#,
        br#"{"id":7,"object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        br#"{"id":"evt_1","id":"evt_2","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        b"\xff\xfe",
    ] {
        assert!(StripeEvent::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(StripeEvent::parse(deep.as_bytes()).is_err());
}

#[test]
fn events_with_unreadable_fields_are_still_events() {
    for (body, field) in [
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":-1,"livemode":false,"data":{"object":{}}}"#,
            "created",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1e400,"livemode":false,"data":{"object":{}}}"#,
            "created",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":[]}}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":1e400}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":"\ud800"}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":["checkout.session","cs_1"]}}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{"id":"cs_1","id":"cs_2"}}}"#,
            "data.object",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1,"livemode":false,"data":{"object":{"object":"checkout.session","id":"cs_1","amount_total":1e1000000}}}"#,
            "data.object.amount_total",
        ),
        (
            r#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1,"livemode":false,"data":{"object":{"object":"checkout.session","id":"cs_\ud800"}}}"#,
            "data.object.id",
        ),
    ] {
        let e = StripeEvent::parse_str(body).expect(body);
        assert_eq!(e.unreadable.as_deref(), Some(field), "{body}");
    }
}

#[test]
fn fields_we_do_not_read_never_make_an_event_unreadable() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for extra in [
        r#""note":"\ud800""#,
        r#""note":"\udc00""#,
        r#""note":"\u0000""#,
        r#""note":1e1000000"#,
        r#""metadata":{"note":"\ud800","order_id":"x"}"#,
        &format!(r#""note":{deep}"#),
    ] {
        let body = format!(
            r#"{{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1,"livemode":false,"data":{{"object":{{"object":"checkout.session","id":"cs_1",{extra}}}}}}}"#
        );
        let e = StripeEvent::parse_str(&body).expect(&body);
        assert_eq!(e.unreadable, None, "{body}");
        assert_eq!(e.session_id(), Some("cs_1"));
    }
}

#[test]
fn lenient_object_fields() {
    let e = from_value(
        json!({"id":"evt_1","object":"event","type":"charge.refunded","created":1,"livemode":true,
        "data":{"object":{"object":"charge","id":"ch_1","amount":"x","amount_refunded":5,
        "payment_intent":{"id":"pi_9","object":"payment_intent"},"metadata":{"order_id":7}}}}),
    );
    assert_eq!(e.object.payment_intent.as_deref(), Some("pi_9"));
    assert_eq!(e.object.metadata_order_id, None);
    assert!(!e.object.fully_refunded);
    assert_eq!(e.unreadable, None);
}

#[test]
fn member_names_are_matched_decoded_and_layout_does_not_matter() {
    let compact = r#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1,"livemode":true,"data":{"object":{"object":"checkout.session","id":"cs_1","amount_total":2000,"currency":"EUR"}}}"#;
    let expected = StripeEvent::parse_str(compact).expect("compact");
    assert_eq!(expected.session_id(), Some("cs_1"));
    assert_eq!(expected.object.amount_total, Some(2000));
    assert_eq!(expected.object.currency.as_deref(), Some("eur"));
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(compact).expect("json"))
            .expect("pretty");
    let escaped = compact
        .replace(r#""id":"evt_1""#, r#""\u0069d":"evt\u005f1""#)
        .replace(r#""amount_total""#, r#""amount\u005ftotal""#);
    for body in [pretty, escaped] {
        assert_eq!(
            StripeEvent::parse_str(&body).as_ref(),
            Ok(&expected),
            "{body}"
        );
    }
}

#[test]
fn member_names_that_do_not_decode() {
    let envelope = r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"\ud800":1,"data":{"object":{}}}"#;
    assert!(matches!(
        StripeEvent::parse_str(envelope),
        Err(EventError::Json(_))
    ));
    for data in [
        r#"{"object":{"id":"cs_1","\ud800":1}}"#,
        r#"{"\ud800":1,"object":{"id":"cs_1"}}"#,
    ] {
        let body = format!(
            r#"{{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{data}}}"#
        );
        let e = StripeEvent::parse_str(&body).expect(&body);
        assert_eq!(e.unreadable.as_deref(), Some("data.object"), "{body}");
        assert_eq!(e.object, EventObject::default());
    }
}

#[test]
fn an_envelope_must_be_an_object_and_json_to_its_end() {
    let event = r#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#;
    assert!(StripeEvent::parse_str(event).is_ok());
    for (body, json) in [
        (
            r#"["evt_1","event","x",1,false,{"object":{}}]"#.to_owned(),
            false,
        ),
        (format!("{event} {event}"), true),
        (format!("{event},"), true),
        (event.replace(r#""data""#, r#""data":1,"data""#), false),
        (event.replace(r#""x""#, r#""x\u""#), true),
    ] {
        match StripeEvent::parse_str(&body) {
            Err(EventError::Json(_)) => assert!(json, "{body}"),
            Err(EventError::NotAnEvent(_)) => assert!(!json, "{body}"),
            Ok(e) => panic!("{body} parsed as {e:?}"),
        }
    }
}
