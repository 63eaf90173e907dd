//! One order notification: the outbox row as the deliverer claims it, the JSON body the app
//! receives (the contract of `docs/integration.md`) and its `Edge-Signature`, Stripe's scheme, so
//! that the app verifies it with the Stripe SDK's `constructEvent`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Edge-Signature";

/// An outbox row, as claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `order_transitions.id`.
    pub row_id: i64,
    pub order_id: Uuid,
    pub kind: String,
    pub from: Option<String>,
    pub to: String,
    pub stripe_event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub livemode: bool,
    pub stripe_session_id: Option<String>,
    pub amount_total: Option<i64>,
    pub amount_refunded: i64,
    pub currency: Option<String>,
    pub dispute_status: Option<String>,
    /// When it was queued (APP_NOTIFY_MAX_AGE counts from here).
    pub queued_at: DateTime<Utc>,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// The columns [`Notification::read`] expects, in order.
pub const COLUMNS: &str = "t.id, t.order_id, t.kind, t.from_status, t.to_status, \
    t.stripe_event_id, t.occurred_at, t.livemode, t.stripe_session_id, t.amount_total, \
    t.amount_refunded, t.currency, t.dispute_status, t.queued_at, t.attempts";

impl Notification {
    pub fn read(row: &tokio_postgres::Row) -> Self {
        Self {
            row_id: row.get(0),
            order_id: row.get(1),
            kind: row.get(2),
            from: row.get(3),
            to: row.get(4),
            stripe_event_id: row.get(5),
            occurred_at: row.get(6),
            livemode: row.get(7),
            stripe_session_id: row.get(8),
            amount_total: row.get(9),
            amount_refunded: row.get(10),
            currency: row.get(11),
            dispute_status: row.get(12),
            queued_at: row.get(13),
            attempts: row.get(14),
        }
    }

    /// The id the app deduplicates by: `otr_` and the row's id, stable across redeliveries.
    pub fn id(&self) -> String {
        public_id(self.row_id)
    }

    /// The JSON body, the same bytes on every attempt.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            id: self.id(),
            kind: &self.kind,
            order_id: self.order_id,
            from: self.from.as_deref(),
            to: &self.to,
            stripe_event_id: &self.stripe_event_id,
            stripe_session_id: self.stripe_session_id.as_deref(),
            amount_total: self.amount_total,
            amount_refunded: self.amount_refunded,
            currency: self.currency.as_deref(),
            dispute_status: self.dispute_status.as_deref(),
            livemode: self.livemode,
            occurred_at: self.occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        // A struct of strings, numbers and booleans always serializes.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// `otr_<id>`: how a notification is named to the app, in `inspect` and on the command line.
pub fn public_id(row_id: i64) -> String {
    format!("otr_{row_id}")
}

/// The row id of `otr_<id>` (or of a bare number).
pub fn parse_public_id(id: &str) -> Option<i64> {
    id.strip_prefix("otr_").unwrap_or(id).parse().ok()
}

/// The `Edge-Signature` of `body` at unix time `timestamp`: `t=<timestamp>,v1=<hex HMAC-SHA256 of
/// "{t}.{body}">`, exactly as Stripe signs its webhooks.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    common::stripe::signature::sign(secret, timestamp, body)
}

#[derive(Serialize)]
struct Body<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    order_id: Uuid,
    from: Option<&'a str>,
    to: &'a str,
    stripe_event_id: &'a str,
    stripe_session_id: Option<&'a str>,
    amount_total: Option<i64>,
    amount_refunded: i64,
    currency: Option<&'a str>,
    dispute_status: Option<&'a str>,
    livemode: bool,
    occurred_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_body() {
        assert_eq!(parse_public_id("otr_42"), Some(42));
        assert_eq!(parse_public_id("42"), Some(42));
        assert_eq!(parse_public_id("otr_x"), None);
        let n = Notification {
            row_id: 7,
            order_id: Uuid::nil(),
            kind: "order.paid".into(),
            from: Some("pending".into()),
            to: "paid".into(),
            stripe_event_id: "evt_1".into(),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            livemode: false,
            stripe_session_id: Some("cs_test_1".into()),
            amount_total: Some(2000),
            amount_refunded: 0,
            currency: Some("eur".into()),
            dispute_status: None,
            queued_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            attempts: 0,
        };
        let body: serde_json::Value = serde_json::from_slice(&n.body()).expect("json");
        assert_eq!(body["id"], "otr_7");
        assert_eq!(body["type"], "order.paid");
        assert_eq!(body["occurred_at"], "2023-11-14T22:13:20Z");
        assert_eq!(body["dispute_status"], serde_json::Value::Null);
        let header = signature("s", 1_700_000_100, &n.body());
        assert!(header.starts_with("t=1700000100,v1="), "{header}");
    }
}
