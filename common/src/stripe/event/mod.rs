//! The Stripe event envelope and the few `data.object` fields that move an order, parsed from the
//! raw (already verified) webhook bytes or from an Events API page.
//!
//! Only the envelope's identity is strict: a JSON object with `object` = `event` and a string `id`
//! and `type`; without those the body is not an event. Every other field is read on its own from
//! the raw text (borrowed, never building the whole tree): a field we do not read is never parsed,
//! so a lone surrogate, a huge number or deep nesting there costs nothing. A field the state
//! machine needs that is present but cannot be read (a number out of range, a string that does not
//! decode) makes the event `unreadable`: it is still stored, byte for byte, and the ledger leaves
//! its order alone. `object` reads `data.object`'s fields.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

mod object;

pub use super::fields::{MAX_ID_LEN, is_stripe_id};
use super::fields::{MapOnly, Reader, boolean, is_printable, text};
use super::is_paid;
pub use object::{EmbeddedRefund, EventObject};
use object::{RawObject, read_object};

/// Event types that can move an order (the state machine of `ledger::decide`).
pub mod types {
    pub const SESSION_COMPLETED: &str = "checkout.session.completed";
    pub const SESSION_ASYNC_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
    pub const SESSION_ASYNC_FAILED: &str = "checkout.session.async_payment_failed";
    pub const SESSION_EXPIRED: &str = "checkout.session.expired";
    pub const CHARGE_REFUNDED: &str = "charge.refunded";
    pub const CHARGE_REFUND_UPDATED: &str = "charge.refund.updated";
    pub const REFUND_CREATED: &str = "refund.created";
    pub const REFUND_UPDATED: &str = "refund.updated";
    pub const REFUND_FAILED: &str = "refund.failed";
    pub const DISPUTE_CREATED: &str = "charge.dispute.created";
    pub const DISPUTE_UPDATED: &str = "charge.dispute.updated";
    pub const DISPUTE_CLOSED: &str = "charge.dispute.closed";
    pub const DISPUTE_FUNDS_WITHDRAWN: &str = "charge.dispute.funds_withdrawn";
    pub const DISPUTE_FUNDS_REINSTATED: &str = "charge.dispute.funds_reinstated";

    /// Every type the reconciler asks Stripe for (`types[]`): the checkout types that move an
    /// order's payment, then those of the money after it (refunds and disputes).
    pub const ORDER_TYPES: [&str; 14] = [
        SESSION_COMPLETED,
        SESSION_ASYNC_SUCCEEDED,
        SESSION_ASYNC_FAILED,
        SESSION_EXPIRED,
        CHARGE_REFUNDED,
        CHARGE_REFUND_UPDATED,
        REFUND_CREATED,
        REFUND_UPDATED,
        REFUND_FAILED,
        DISPUTE_CREATED,
        DISPUTE_UPDATED,
        DISPUTE_CLOSED,
        DISPUTE_FUNDS_WITHDRAWN,
        DISPUTE_FUNDS_REINSTATED,
    ];

    /// The types whose object is a refund, a dispute or a refunded charge.
    pub const MONEY_TYPES: [&str; 10] = [
        CHARGE_REFUNDED,
        CHARGE_REFUND_UPDATED,
        REFUND_CREATED,
        REFUND_UPDATED,
        REFUND_FAILED,
        DISPUTE_CREATED,
        DISPUTE_UPDATED,
        DISPUTE_CLOSED,
        DISPUTE_FUNDS_WITHDRAWN,
        DISPUTE_FUNDS_REINSTATED,
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
    /// The event's `created`; when unreadable, the time it was parsed.
    pub created: DateTime<Utc>,
    /// The event's `livemode`; `false` when unreadable.
    pub livemode: bool,
    pub api_version: Option<String>,
    pub object: EventObject,
    /// Which field the state machine needs could not be read, if any (the event is kept but
    /// moves no order).
    pub unreadable: Option<String>,
}

/// The envelope: its identity parsed, everything else kept as raw text. `D` is how `data` is read:
/// in the same pass ([`Data`]), or skipped when that pass failed on something inside it.
#[derive(Deserialize)]
struct Envelope<'a, D> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    object: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    created: Option<&'a RawValue>,
    #[serde(default, borrow)]
    livemode: Option<&'a RawValue>,
    #[serde(default, borrow)]
    api_version: Option<&'a RawValue>,
    #[serde(default = "none")]
    data: Option<D>,
}

fn none<D>() -> Option<D> {
    None
}

/// `data`, when it is a JSON object: its `object`, when that is a JSON object.
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    object: Option<MapOnly<RawObject<'a>>>,
}

impl StripeEvent {
    /// Parses raw event bytes.
    pub fn parse(body: &[u8]) -> Result<Self, EventError> {
        let text = std::str::from_utf8(body).map_err(|_| not_utf8())?;
        Self::parse_str(text)
    }

    /// Parses a webhook body and returns it as text too (validated once, never copied), for the
    /// ledger to store exactly as signed.
    pub fn parse_owned(body: Vec<u8>) -> Result<(Self, String), EventError> {
        let text = String::from_utf8(body).map_err(|_| not_utf8())?;
        Ok((Self::parse_str(&text)?, text))
    }

    /// Parses the text of one event (a webhook body, or one element of an Events API list).
    pub fn parse_str(body: &str) -> Result<Self, EventError> {
        // One pass reads the envelope and `data.object`'s fields. A `data` that this pass cannot
        // read (not an object, a repeated field, a string or number that does not decode) fails
        // it; the envelope is then read again with `data` skipped unparsed, so such an event is
        // still an event, with an unreadable `data.object`.
        let e: Envelope<'_, Data<'_>> = match serde_json::from_str(body) {
            Ok(e) => e,
            Err(_) => {
                let e: Envelope<'_, IgnoredAny> = serde_json::from_str(body).map_err(|e| {
                    if e.is_data() {
                        EventError::NotAnEvent("no string `id`, `object` and `type`")
                    } else {
                        EventError::Json(short(&e))
                    }
                })?;
                Envelope {
                    id: e.id,
                    object: e.object,
                    event_type: e.event_type,
                    created: e.created,
                    livemode: e.livemode,
                    api_version: e.api_version,
                    data: None,
                }
            }
        };
        if e.object != "event" {
            return Err(EventError::NotAnEvent("`object` is not \"event\""));
        }
        if !is_stripe_id(&e.id) {
            return Err(EventError::NotAnEvent("`id` is not a Stripe id"));
        }
        if e.event_type.is_empty() || e.event_type.len() > 128 || !is_printable(&e.event_type) {
            return Err(EventError::NotAnEvent("`type` is empty or not printable"));
        }
        let mut r = Reader::default();
        let created = r
            .int(e.created, "created")
            .filter(|&t| t >= 0)
            .and_then(|t| DateTime::from_timestamp(t, 0));
        if created.is_none() {
            r.unreadable.get_or_insert("created");
        }
        let livemode = boolean(e.livemode);
        if livemode.is_none() {
            r.unreadable.get_or_insert("livemode");
        }
        let api_version = text(e.api_version, "api_version").ok().flatten();
        let object = match e.data.and_then(|d| d.object) {
            Some(MapOnly(raw)) => read_object(&raw, &mut r),
            None => {
                r.unreadable.get_or_insert("data.object");
                EventObject::default()
            }
        };
        Ok(StripeEvent {
            id: e.id.into_owned(),
            event_type: e.event_type.into_owned(),
            created: created.unwrap_or_else(Utc::now),
            livemode: livemode.unwrap_or(false),
            api_version,
            object,
            unreadable: r.unreadable.map(str::to_owned),
        })
    }

    /// A synthetic event for an object seen through a list rather than an event (the sweep):
    /// `object` (its exact JSON text) as `data.object` of an event of this type, time and mode,
    /// read as every event is, with the sweep's own id (`sweep:<object id>:<state>`, which no
    /// Stripe event id can be).
    pub fn synthetic(
        id: &str,
        event_type: &str,
        created: i64,
        livemode: bool,
        object: &str,
    ) -> Result<Self, EventError> {
        let envelope = format!(
            "{{\"id\":\"evt_synthetic\",\"object\":\"event\",\"type\":{},\"created\":{created},\"livemode\":{livemode},\"data\":{{\"object\":{object}}}}}",
            serde_json::Value::from(event_type),
        );
        let mut event = Self::parse_str(&envelope)?;
        event.id = id.to_owned();
        Ok(event)
    }

    /// The Checkout Session id when `data.object` is a session.
    pub fn session_id(&self) -> Option<&str> {
        match self.object.kind.as_deref() {
            Some("checkout.session") => self.object.id.as_deref(),
            _ => None,
        }
    }

    /// Whether this event pays its session's order: a completed session that is paid, or a
    /// delayed payment that succeeded.
    pub fn pays(&self) -> bool {
        match self.event_type.as_str() {
            types::SESSION_ASYNC_SUCCEEDED => true,
            types::SESSION_COMPLETED => self.object.payment_status.as_deref().is_some_and(is_paid),
            _ => false,
        }
    }

    /// Whether this type can move an order (and so counts as an orphan when none matches).
    pub fn moves_orders(&self) -> bool {
        types::ORDER_TYPES.contains(&self.event_type.as_str())
    }

    /// Whether this event is about the money after the payment (a refund, a dispute, a refunded
    /// charge).
    pub fn is_money(&self) -> bool {
        types::MONEY_TYPES.contains(&self.event_type.as_str())
    }

    /// Why an order-moving event cannot be applied: a field the state machine needs could not be
    /// read. `None` for readable events and for types that move no order.
    pub fn unreadable_reason(&self) -> Option<&str> {
        self.unreadable.as_deref().filter(|_| self.moves_orders())
    }
}

fn not_utf8() -> EventError {
    EventError::Json("not UTF-8".into())
}

fn short(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    s.truncate(200);
    s
}

#[cfg(test)]
mod tests;
