//! The Stripe event envelope and the few `data.object` fields that move an order, parsed from the
//! raw (already verified) webhook bytes or from an Events API page.
//!
//! The envelope is strict (`object` = `event`, `id`, `type`, `created`, `livemode`); the object's
//! fields are read leniently, so a shape change in an unrelated field never loses an event.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// The longest Stripe object id (`stripe-facts.md` §3: up to 255 characters).
pub const MAX_ID_LEN: usize = 255;

/// Event types that can move an order (the state machine in DESIGN.md).
pub mod types {
    pub const SESSION_COMPLETED: &str = "checkout.session.completed";
    pub const SESSION_ASYNC_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
    pub const SESSION_ASYNC_FAILED: &str = "checkout.session.async_payment_failed";
    pub const SESSION_EXPIRED: &str = "checkout.session.expired";
    pub const CHARGE_REFUNDED: &str = "charge.refunded";

    /// Every type the reconciler asks Stripe for (`types[]`).
    pub const ORDER_TYPES: [&str; 5] = [
        SESSION_COMPLETED,
        SESSION_ASYNC_SUCCEEDED,
        SESSION_ASYNC_FAILED,
        SESSION_EXPIRED,
        CHARGE_REFUNDED,
    ];
}

/// Why a verified body is not a Stripe event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body is JSON but not a Stripe event: {0}")]
    NotAnEvent(&'static str),
}

/// A Stripe event, ready for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub api_version: Option<String>,
    pub object: EventObject,
}

/// The fields of `data.object` that the state machine reads. Missing or oddly typed fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventObject {
    /// `data.object.object`, e.g. `checkout.session` or `charge`.
    pub kind: Option<String>,
    pub id: Option<String>,
    pub client_reference_id: Option<String>,
    pub metadata_order_id: Option<String>,
    pub payment_status: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    /// The payment intent id, whether the field holds an id or an expanded object.
    pub payment_intent: Option<String>,
    /// For charges: `refunded` is true, or `amount_refunded` ≥ `amount`.
    pub fully_refunded: bool,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    object: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    livemode: bool,
    #[serde(default)]
    api_version: Option<String>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(deserialize_with = "json_object")]
    object: RawObject,
}

/// `data.object` must be a JSON object (a derived struct would also accept an array).
fn json_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RawObject, D::Error> {
    struct ObjectOnly;
    impl<'de> serde::de::Visitor<'de> for ObjectOnly {
        type Value = RawObject;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawObject, A::Error> {
            RawObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectOnly)
}

/// Only the fields the state machine reads; every other field of `data.object` is skipped without
/// being allocated. Each is a `Value` so that an unexpected type is ignored, not fatal.
#[derive(Deserialize)]
struct RawObject {
    #[serde(default)]
    object: Value,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    client_reference_id: Value,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    payment_status: Value,
    #[serde(default)]
    amount_total: Value,
    #[serde(default)]
    currency: Value,
    #[serde(default)]
    payment_intent: Value,
    #[serde(default)]
    refunded: Value,
    #[serde(default)]
    amount_refunded: Value,
    #[serde(default)]
    amount: Value,
}

impl StripeEvent {
    /// Parses raw event bytes.
    pub fn parse(body: &[u8]) -> Result<Self, EventError> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| EventError::Json(short(&e)))?;
        Self::from_envelope(envelope)
    }

    /// Converts one element of an Events API list.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let envelope: Envelope =
            serde_json::from_value(value).map_err(|e| EventError::Json(short(&e)))?;
        Self::from_envelope(envelope)
    }

    fn from_envelope(e: Envelope) -> Result<Self, EventError> {
        if e.object != "event" {
            return Err(EventError::NotAnEvent("`object` is not \"event\""));
        }
        if !is_stripe_id(&e.id) {
            return Err(EventError::NotAnEvent("`id` is not a Stripe id"));
        }
        if e.event_type.is_empty() || e.event_type.len() > 128 || !is_printable(&e.event_type) {
            return Err(EventError::NotAnEvent("`type` is empty or not printable"));
        }
        let created = DateTime::from_timestamp(e.created, 0)
            .filter(|_| e.created >= 0)
            .ok_or(EventError::NotAnEvent("`created` is not a valid unix time"))?;
        let obj = &e.data.object;
        let object = EventObject {
            kind: text(&obj.object),
            id: text(&obj.id),
            client_reference_id: text(&obj.client_reference_id),
            metadata_order_id: text(&obj.metadata["order_id"]),
            payment_status: text(&obj.payment_status),
            amount_total: obj.amount_total.as_i64(),
            currency: text(&obj.currency).map(|c| c.to_ascii_lowercase()),
            payment_intent: match &obj.payment_intent {
                Value::Object(pi) => pi.get("id").and_then(text),
                other => text(other),
            },
            fully_refunded: obj.refunded.as_bool() == Some(true)
                || matches!(
                    (obj.amount_refunded.as_i64(), obj.amount.as_i64()),
                    (Some(r), Some(a)) if a > 0 && r >= a
                ),
        };
        Ok(StripeEvent {
            id: e.id,
            event_type: e.event_type,
            created,
            livemode: e.livemode,
            api_version: e.api_version.filter(|v| is_printable(v)),
            object,
        })
    }

    /// The Checkout Session id when `data.object` is a session.
    pub fn session_id(&self) -> Option<&str> {
        match self.object.kind.as_deref() {
            Some("checkout.session") => self.object.id.as_deref(),
            _ => None,
        }
    }

    /// Whether this type can move an order (and so counts as an orphan when none matches).
    pub fn moves_orders(&self) -> bool {
        types::ORDER_TYPES.contains(&self.event_type.as_str())
    }
}

/// Stripe ids: 1–255 characters of `[A-Za-z0-9_]`.
pub fn is_stripe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// A string field that Postgres can store as `text`: present, short enough, no control characters.
fn text(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN && is_printable(s))
        .map(str::to_owned)
}

fn short(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    s.truncate(200);
    s
}

/// The payload as Postgres `jsonb` accepts it. jsonb refuses `\u0000`, which JSON allows; such a
/// (rare) event is stored with U+FFFD in place of each NUL instead of being lost.
pub fn storable_payload(body: &str) -> Cow<'_, str> {
    if !body.contains("\\u0000") {
        return Cow::Borrowed(body);
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            replace_nul(&mut value);
            Cow::Owned(value.to_string())
        }
        Err(_) => Cow::Borrowed(body),
    }
}

fn replace_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for k in keys {
                if let Some(val) = map.remove(&k) {
                    map.insert(k.replace('\0', "\u{FFFD}"), val);
                }
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/stripe");

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
    }

    #[test]
    fn checkout_session_fixture_wrapped_in_an_event() {
        let session: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURES}/checkout_session.json")).expect("fixture"),
        )
        .expect("json");
        let event = json!({"id": "evt_1", "object": "event", "type": "checkout.session.completed",
            "created": 1_700_000_000, "livemode": false, "api_version": null,
            "data": {"object": session}});
        let e = StripeEvent::from_value(event).expect("event");
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
    }

    #[test]
    fn list_fixture_elements_parse() {
        let list: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURES}/list_events.json")).expect("fixture"),
        )
        .expect("json");
        for item in list["data"].as_array().expect("data").clone() {
            let e = StripeEvent::from_value(item).expect("event");
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
            br#"{"id":"evt_1","object":"event","type":"x","created":-1,"livemode":false,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","object":"event","type":"x","created":1e400,"livemode":false,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","object":"event","type":"x","created":1,"livemode":false,"data":{"object":[]}}"#,
            br#"{"id":"evt_1","id":"evt_2","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
            b"\xff\xfe",
        ] {
            assert!(StripeEvent::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(StripeEvent::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn lenient_object_fields() {
        let v = json!({"id":"evt_1","object":"event","type":"charge.refunded","created":1,"livemode":true,
            "data":{"object":{"object":"charge","id":"ch_1","amount":"x","amount_refunded":5,
            "payment_intent":{"id":"pi_9","object":"payment_intent"},"metadata":{"order_id":7}}}});
        let e = StripeEvent::from_value(v).expect("event");
        assert_eq!(e.object.payment_intent.as_deref(), Some("pi_9"));
        assert_eq!(e.object.metadata_order_id, None);
        assert!(!e.object.fully_refunded);
    }

    #[test]
    fn nul_is_made_storable() {
        assert_eq!(storable_payload(r#"{"a":"b"}"#), r#"{"a":"b"}"#);
        let fixed = storable_payload(r#"{"a":"x\u0000y"}"#);
        assert_eq!(fixed, "{\"a\":\"x\u{FFFD}y\"}");
    }
}
