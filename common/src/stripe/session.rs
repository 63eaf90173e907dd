//! A Checkout Session as Stripe's API returns it (`GET /v1/checkout/sessions/{id}`), parsed once
//! into the fields support and the reconciler read: what it is, whether it is paid, when it lived,
//! and the keys that find its order.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::is_paid;

/// Why a body is not a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a checkout.session object")]
    NotASession,
}

/// A Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    /// `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: Option<String>,
    pub created: DateTime<Utc>,
    /// When Stripe expires it if it is still open (24 h after `created` at most).
    pub expires_at: Option<DateTime<Utc>>,
    pub client_reference_id: Option<String>,
    /// `metadata.order_id`.
    pub metadata_order_id: Option<String>,
    /// The payment intent id, whether the field holds an id or an expanded object.
    pub payment_intent: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub livemode: bool,
}

#[derive(Deserialize)]
struct Wire {
    object: String,
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    payment_intent: Option<IdOrObject>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    livemode: bool,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    order_id: Option<String>,
}

/// An id, or the object it names when expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl CheckoutSession {
    /// Parses the JSON of one Checkout Session.
    pub fn parse(body: &[u8]) -> Result<Self, SessionError> {
        let w: Wire = serde_json::from_slice(body).map_err(|e| {
            let mut text = e.to_string();
            text.truncate(200);
            SessionError::Json(text)
        })?;
        if w.object != "checkout.session" {
            return Err(SessionError::NotASession);
        }
        let time = |t: i64| DateTime::from_timestamp(t, 0);
        Ok(Self {
            id: w.id,
            status: w.status,
            payment_status: w.payment_status,
            created: time(w.created).unwrap_or_default(),
            expires_at: w.expires_at.and_then(time),
            client_reference_id: w.client_reference_id,
            metadata_order_id: w.metadata.and_then(|m| m.order_id),
            payment_intent: w.payment_intent.map(|pi| match pi {
                IdOrObject::Id(id) | IdOrObject::Object { id } => id,
            }),
            amount_total: w.amount_total,
            currency: w.currency,
            livemode: w.livemode,
        })
    }

    /// Paid on Stripe: `payment_status` is `paid` or `no_payment_required`.
    pub fn is_paid(&self) -> bool {
        self.payment_status.as_deref().is_some_and(is_paid)
    }

    /// The order id that `client_reference_id` names, when it is one.
    pub fn client_reference_order(&self) -> Option<Uuid> {
        self.client_reference_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
    }

    /// The order id that `metadata.order_id` names, when it is one.
    pub fn metadata_order(&self) -> Option<Uuid> {
        self.metadata_order_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/stripe/checkout_session.json"
    );

    #[test]
    fn the_fixture_parses() {
        let body = std::fs::read(FIXTURE).expect("fixture");
        let s = CheckoutSession::parse(&body).expect("session");
        assert!(s.id.starts_with("cs_"));
        assert_eq!(s.created.timestamp(), 1_234_567_890);
        assert!(s.expires_at.is_some());
        assert_eq!(s.status.as_deref(), Some("open"));
        assert!(!s.is_paid(), "unpaid");
    }

    #[test]
    fn expanded_payment_intents_and_paid_statuses() {
        let body = br#"{"object":"checkout.session","id":"cs_1","created":1700000000,
            "payment_status":"no_payment_required","payment_intent":{"id":"pi_1","object":"payment_intent"},
            "metadata":{"order_id":"00000000-0000-0000-0000-000000000001"}}"#;
        let s = CheckoutSession::parse(body).expect("session");
        assert_eq!(s.payment_intent.as_deref(), Some("pi_1"));
        assert!(s.is_paid());
        assert_eq!(
            s.metadata_order().map(|u| u.to_string()).as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
        assert_eq!(
            CheckoutSession::parse(br#"{"object":"charge","id":"ch_1"}"#),
            Err(SessionError::NotASession)
        );
    }
}
