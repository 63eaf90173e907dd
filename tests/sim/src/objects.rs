//! Stripe payloads for tests, built from the real fixtures in `fixtures/stripe/`: Checkout Session
//! events (the fixture session wrapped in the event envelope), charge, refund and dispute events.

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

pub const REFUND_FIXTURE: &str = include_str!("../../fixtures/stripe/refund.json");
pub const DISPUTE_FIXTURE: &str = include_str!("../../fixtures/stripe/dispute.json");
pub const CHARGE_FIXTURE: &str = include_str!("../../fixtures/stripe/charge.json");

/// A Refund object: the fixture with the fields a test cares about replaced.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub status: &'static str,
    pub payment_intent: String,
    pub charge: String,
    pub created: i64,
}

impl Refund {
    pub fn new(payment_intent: &str, amount: i64) -> Self {
        Self {
            id: format!("re_{}", uuid::Uuid::new_v4().simple()),
            amount,
            status: "succeeded",
            payment_intent: payment_intent.into(),
            charge: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            created: chrono::Utc::now().timestamp() - 30,
        }
    }

    pub fn object(&self) -> Value {
        let mut r: Value = serde_json::from_str(REFUND_FIXTURE).expect("refund fixture");
        r["id"] = json!(self.id);
        r["amount"] = json!(self.amount);
        r["currency"] = json!("eur");
        r["status"] = json!(self.status);
        r["payment_intent"] = json!(self.payment_intent);
        r["charge"] = json!(self.charge);
        r["created"] = json!(self.created);
        r
    }
}

/// A `refund.*` (or `charge.refund.updated`) event for `refund`, created at `created`.
pub fn refund_event(event_type: &str, refund: &Refund, created: i64) -> Value {
    envelope(&event_id(), event_type, created, false, refund.object())
}

/// A Dispute object: the fixture with the fields a test cares about replaced.
#[derive(Debug, Clone)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub status: &'static str,
    pub reason: &'static str,
    pub payment_intent: String,
    pub charge: String,
    pub due_by: i64,
    pub created: i64,
}

impl Dispute {
    pub fn new(payment_intent: &str, amount: i64) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            id: format!("du_{}", uuid::Uuid::new_v4().simple()),
            amount,
            status: "needs_response",
            reason: "fraudulent",
            payment_intent: payment_intent.into(),
            charge: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            due_by: now + 7 * 24 * 3600,
            created: now - 30,
        }
    }

    pub fn object(&self) -> Value {
        let mut d: Value = serde_json::from_str(DISPUTE_FIXTURE).expect("dispute fixture");
        d["id"] = json!(self.id);
        d["amount"] = json!(self.amount);
        d["currency"] = json!("eur");
        d["status"] = json!(self.status);
        d["reason"] = json!(self.reason);
        d["payment_intent"] = json!(self.payment_intent);
        d["charge"] = json!(self.charge);
        d["evidence_details"]["due_by"] = json!(self.due_by);
        d["created"] = json!(self.created);
        d
    }
}

/// A `charge.dispute.*` event for `dispute`, created at `created`.
pub fn dispute_event(event_type: &str, dispute: &Dispute, created: i64) -> Value {
    envelope(&event_id(), event_type, created, false, dispute.object())
}

/// A `charge.refunded` event of an older API version: the charge (from the fixture) embeds its
/// refunds, and its `amount_refunded` is the sum of those that succeeded.
pub fn charge_refunded_with(
    payment_intent: &str,
    amount: i64,
    refunds: &[Refund],
    created: i64,
) -> Value {
    let mut c: Value = serde_json::from_str(CHARGE_FIXTURE).expect("charge fixture");
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r.status == "succeeded")
        .map(|r| r.amount)
        .sum();
    c["id"] = json!(refunds.first().map_or_else(
        || format!("ch_{}", uuid::Uuid::new_v4().simple()),
        |r| r.charge.clone()
    ));
    c["amount"] = json!(amount);
    c["amount_captured"] = json!(amount);
    c["amount_refunded"] = json!(refunded);
    c["captured"] = json!(true);
    c["currency"] = json!("eur");
    c["payment_intent"] = json!(payment_intent);
    c["refunded"] = json!(refunded >= amount);
    c["refunds"] = json!({
        "object": "list",
        "data": refunds.iter().map(Refund::object).collect::<Vec<_>>(),
        "has_more": false,
        "url": "/v1/charges/ch/refunds",
    });
    let mut v = envelope(&event_id(), "charge.refunded", created, false, c);
    v["api_version"] = json!("2022-08-01");
    v
}
