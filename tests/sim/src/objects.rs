//! Stripe payloads for tests, built from the real fixtures in `fixtures/stripe/`: Checkout Session
//! events (the fixture session wrapped in the event envelope) and charge events.

use serde_json::{Value, json};

pub const CHECKOUT_SESSION_FIXTURE: &str =
    include_str!("../../fixtures/stripe/checkout_session.json");
pub const OFFICIAL_PAYLOAD: &[u8] =
    include_bytes!("../../fixtures/stripe/sigvec_dotnet_event_payload.json");

/// A Checkout Session object: the fixture with the fields a test cares about replaced.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub status: &'static str,
    pub payment_status: &'static str,
    pub amount_total: Option<i64>,
    pub currency: Option<&'static str>,
    pub client_reference_id: Option<String>,
    pub metadata_order_id: Option<String>,
    pub payment_intent: Option<String>,
    pub created: i64,
    pub livemode: bool,
}

impl Session {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: "complete",
            payment_status: "paid",
            amount_total: Some(2000),
            currency: Some("eur"),
            client_reference_id: None,
            metadata_order_id: None,
            payment_intent: Some(format!("pi_{}", uuid::Uuid::new_v4().simple())),
            created: chrono::Utc::now().timestamp() - 60,
            livemode: false,
        }
    }

    pub fn object(&self) -> Value {
        let mut s: Value = serde_json::from_str(CHECKOUT_SESSION_FIXTURE).expect("session fixture");
        s["id"] = json!(self.id);
        s["status"] = json!(self.status);
        s["payment_status"] = json!(self.payment_status);
        s["amount_total"] = json!(self.amount_total);
        s["amount_subtotal"] = json!(self.amount_total);
        s["currency"] = json!(self.currency);
        s["client_reference_id"] = json!(self.client_reference_id);
        s["metadata"] = match &self.metadata_order_id {
            Some(id) => json!({ "order_id": id }),
            None => json!({}),
        };
        s["payment_intent"] = json!(self.payment_intent);
        s["created"] = json!(self.created);
        s["expires_at"] = json!(self.created + 24 * 3600);
        s["livemode"] = json!(self.livemode);
        s
    }
}

/// A new unique event id.
pub fn event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// The event envelope around `object` (field order as Stripe sends it).
pub fn envelope(id: &str, event_type: &str, created: i64, livemode: bool, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-06-30.basil",
        "created": created,
        "data": { "object": object },
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    })
}

/// A `checkout.session.*` event for `session`.
pub fn session_event(event_type: &str, session: &Session) -> Value {
    envelope(
        &event_id(),
        event_type,
        session.created + 5,
        session.livemode,
        session.object(),
    )
}

/// A `charge.refunded` event for a charge of `payment_intent`.
pub fn charge_refunded(payment_intent: &str, amount: i64, amount_refunded: i64) -> Value {
    let charge = json!({
        "id": format!("ch_{}", uuid::Uuid::new_v4().simple()),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "currency": "eur",
        "captured": true,
        "paid": true,
        "payment_intent": payment_intent,
        "refunded": amount_refunded >= amount,
        "status": "succeeded",
        "livemode": false,
        "metadata": {},
    });
    envelope(
        &event_id(),
        "charge.refunded",
        chrono::Utc::now().timestamp(),
        false,
        charge,
    )
}
