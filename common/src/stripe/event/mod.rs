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

mod object;

pub use super::fields::{MAX_ID_LEN, is_stripe_id};
use super::fields::{Reader, boolean, is_printable, string_content, text};
use super::is_paid;
use super::scan::{Scanner, Syntax, decode};
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

/// The envelope's members as raw JSON text, from one pass of the scanner over the whole body.
#[derive(Default)]
struct RawEnvelope<'a> {
    id: Option<&'a str>,
    object: Option<&'a str>,
    event_type: Option<&'a str>,
    created: Option<&'a str>,
    livemode: Option<&'a str>,
    api_version: Option<&'a str>,
    /// `Some` once `data` is seen: its `object`'s members, or `None` when `data` is not an object,
    /// its `object` is not one, or either names a member twice or by an escape that does not decode.
    data: Option<Option<RawObject<'a>>>,
}

/// Why the scan of a body stopped.
enum Stop {
    Syntax(Syntax),
    /// A member name of the envelope whose escape does not decode.
    Key,
    NotAnEvent(&'static str),
}

impl From<Syntax> for Stop {
    fn from(e: Syntax) -> Self {
        Stop::Syntax(e)
    }
}

impl From<Stop> for EventError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Syntax(e) => EventError::Json(e.to_string()),
            Stop::Key => EventError::Json("a member name's escape does not decode".into()),
            Stop::NotAnEvent(why) => EventError::NotAnEvent(why),
        }
    }
}

const REPEATED: &str = "a member of the envelope is repeated";

/// Checks the whole body and keeps the raw text of the envelope's members and of `data.object`'s.
fn scan_envelope(body: &str) -> Result<RawEnvelope<'_>, Stop> {
    let mut s = Scanner::new(body);
    if s.peek() != Some(b'{') {
        s.skip()?;
        s.end()?;
        return Err(Stop::NotAnEvent("the body is not a JSON object"));
    }
    let mut e = RawEnvelope::default();
    s.object(|s, key| {
        let slot = match key.name().ok_or(Stop::Key)?.as_ref() {
            "id" => &mut e.id,
            "object" => &mut e.object,
            "type" => &mut e.event_type,
            "created" => &mut e.created,
            "livemode" => &mut e.livemode,
            "api_version" => &mut e.api_version,
            "data" => {
                if e.data.is_some() {
                    return Err(Stop::NotAnEvent(REPEATED));
                }
                e.data = Some(scan_data(s)?);
                return Ok(());
            }
            _ => return Ok(s.skip()?),
        };
        if slot.is_some() {
            return Err(Stop::NotAnEvent(REPEATED));
        }
        *slot = Some(s.value()?);
        Ok(())
    })?;
    s.end()?;
    Ok(e)
}

/// `data`: its `object`'s members when both are objects that read, checked to the end either way.
fn scan_data<'a>(s: &mut Scanner<'a>) -> Result<Option<RawObject<'a>>, Syntax> {
    if s.peek() != Some(b'{') {
        s.skip()?;
        return Ok(None);
    }
    let mut readable = true;
    let mut object = None;
    s.object(|s, key| {
        match key.name().as_deref() {
            Some("object") => {
                readable &= object.is_none();
                object = Some(scan_object(s)?);
            }
            Some(_) => s.skip()?,
            None => {
                readable = false;
                s.skip()?;
            }
        }
        Ok::<_, Syntax>(())
    })?;
    Ok(object.flatten().filter(|_| readable))
}

/// `data.object`: the raw text of the members the state machine reads, when it is an object that
/// names none of them twice.
fn scan_object<'a>(s: &mut Scanner<'a>) -> Result<Option<RawObject<'a>>, Syntax> {
    if s.peek() != Some(b'{') {
        s.skip()?;
        return Ok(None);
    }
    let mut readable = true;
    let mut raw = RawObject::default();
    s.object(|s, key| {
        let Some(name) = key.name() else {
            readable = false;
            return s.skip();
        };
        match raw.slot(&name) {
            Some(slot) => {
                readable &= slot.is_none();
                *slot = Some(s.value()?);
            }
            None => s.skip()?,
        }
        Ok(())
    })?;
    Ok(Some(raw).filter(|_| readable))
}

/// One of the envelope's identity strings, decoded.
fn identity<'a>(raw: Option<&'a str>) -> Result<Cow<'a, str>, EventError> {
    let content = raw.and_then(string_content).ok_or(EventError::NotAnEvent(
        "no string `id`, `object` and `type`",
    ))?;
    decode(content).ok_or_else(|| EventError::Json("a string's escape does not decode".into()))
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
        // One pass checks the whole body and keeps the raw text of the members read below. A `data`
        // that does not read (not an object, a member named twice) leaves `data.object`
        // unreadable: such an event is still an event.
        let e = scan_envelope(body)?;
        let id = identity(e.id)?;
        let object = identity(e.object)?;
        let event_type = identity(e.event_type)?;
        if object != "event" {
            return Err(EventError::NotAnEvent("`object` is not \"event\""));
        }
        if !is_stripe_id(&id) {
            return Err(EventError::NotAnEvent("`id` is not a Stripe id"));
        }
        if event_type.is_empty() || event_type.len() > 128 || !is_printable(&event_type) {
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
        let object = match e.data.flatten() {
            Some(raw) => read_object(&raw, &mut r),
            None => {
                r.unreadable.get_or_insert("data.object");
                EventObject::default()
            }
        };
        Ok(StripeEvent {
            id: id.into_owned(),
            event_type: event_type.into_owned(),
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

#[cfg(test)]
mod tests;
