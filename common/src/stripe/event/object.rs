//! `data.object` of an event: the fields the ledger reads (a Checkout Session's, a charge's, a
//! refund's or a dispute's), each read on its own from the raw text, leniently: a nested object
//! (`metadata`, an expanded id, `evidence_details`, a charge's `refunds` list) only when it is an
//! object, and a present field that cannot be read named as unreadable.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::fields::{Reader, boolean};

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
    /// Refunds and disputes: their `status`.
    pub status: Option<String>,
    /// Charges, refunds and disputes: their `amount`.
    pub amount: Option<i64>,
    /// Charges: `amount_refunded`.
    pub amount_refunded: Option<i64>,
    /// Refunds and disputes: their charge's id (whether the field holds an id or an object).
    pub charge: Option<String>,
    /// Disputes: `reason`.
    pub reason: Option<String>,
    /// Disputes: `evidence_details.due_by` (Unix seconds).
    pub evidence_due_by: Option<i64>,
    /// Charges of older API versions: the refunds embedded in `refunds.data`.
    pub refunds: Vec<EmbeddedRefund>,
}

/// A refund as a charge of an older API version embeds it (`refunds.data[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedRefund {
    pub id: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub status: Option<String>,
}

/// The fields of `data.object` the state machine reads, as raw JSON text; the others are skipped.
#[derive(Default)]
pub(super) struct RawObject<'a> {
    object: Option<&'a str>,
    id: Option<&'a str>,
    client_reference_id: Option<&'a str>,
    metadata: Option<&'a str>,
    payment_status: Option<&'a str>,
    amount_total: Option<&'a str>,
    currency: Option<&'a str>,
    payment_intent: Option<&'a str>,
    refunded: Option<&'a str>,
    amount_refunded: Option<&'a str>,
    amount: Option<&'a str>,
    status: Option<&'a str>,
    charge: Option<&'a str>,
    reason: Option<&'a str>,
    evidence_details: Option<&'a str>,
    refunds: Option<&'a str>,
}

impl<'a> RawObject<'a> {
    /// Where the member named `name` goes; `None` for a member the state machine does not read.
    pub(super) fn slot(&mut self, name: &str) -> Option<&mut Option<&'a str>> {
        Some(match name {
            "object" => &mut self.object,
            "id" => &mut self.id,
            "client_reference_id" => &mut self.client_reference_id,
            "metadata" => &mut self.metadata,
            "payment_status" => &mut self.payment_status,
            "amount_total" => &mut self.amount_total,
            "currency" => &mut self.currency,
            "payment_intent" => &mut self.payment_intent,
            "refunded" => &mut self.refunded,
            "amount_refunded" => &mut self.amount_refunded,
            "amount" => &mut self.amount,
            "status" => &mut self.status,
            "charge" => &mut self.charge,
            "reason" => &mut self.reason,
            "evidence_details" => &mut self.evidence_details,
            "refunds" => &mut self.refunds,
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
struct EvidenceDetails<'a> {
    #[serde(default, borrow)]
    due_by: Option<&'a RawValue>,
}

/// A charge's `refunds` list (older API versions).
#[derive(Deserialize)]
struct RefundList<'a> {
    #[serde(default, borrow)]
    data: Option<Vec<RawRefund<'a>>>,
}

#[derive(Deserialize)]
struct RawRefund<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    amount: Option<&'a RawValue>,
    #[serde(default, borrow)]
    currency: Option<&'a RawValue>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(default, borrow)]
    order_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Expanded<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
}

/// Reads the fields of `data.object` the state machine needs; a present field that cannot be read is
/// named in `r`.
pub(super) fn read_object(raw: &RawObject<'_>, r: &mut Reader) -> EventObject {
    let metadata_order_id = nested::<Metadata<'_>>(raw.metadata, r, "data.object.metadata")
        .and_then(|m| r.text(raw_text(m.order_id), "data.object.metadata.order_id"));
    let payment_intent = id_or_expanded(
        raw.payment_intent,
        r,
        "data.object.payment_intent",
        "data.object.payment_intent.id",
    );
    let charge = id_or_expanded(raw.charge, r, "data.object.charge", "data.object.charge.id");
    let evidence_due_by =
        nested::<EvidenceDetails<'_>>(raw.evidence_details, r, "data.object.evidence_details")
            .and_then(|e| r.int(raw_text(e.due_by), "data.object.evidence_details.due_by"));
    let refunds = nested::<RefundList<'_>>(raw.refunds, r, "data.object.refunds")
        .and_then(|list| list.data)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| {
            Some(EmbeddedRefund {
                id: r.text(raw_text(item.id), "data.object.refunds.data.id")?,
                amount: r.int(raw_text(item.amount), "data.object.refunds.data.amount"),
                currency: r
                    .text(raw_text(item.currency), "data.object.refunds.data.currency")
                    .map(lowercase),
                status: r.text(raw_text(item.status), "data.object.refunds.data.status"),
            })
        })
        .collect();
    let refunded = boolean(raw.refunded) == Some(true);
    let amount_refunded = r.int(raw.amount_refunded, "data.object.amount_refunded");
    let amount = r.int(raw.amount, "data.object.amount");
    EventObject {
        kind: r.text(raw.object, "data.object.object"),
        id: r.text(raw.id, "data.object.id"),
        client_reference_id: r.text(raw.client_reference_id, "data.object.client_reference_id"),
        metadata_order_id,
        payment_status: r.text(raw.payment_status, "data.object.payment_status"),
        amount_total: r.int(raw.amount_total, "data.object.amount_total"),
        currency: r.text(raw.currency, "data.object.currency").map(lowercase),
        payment_intent,
        fully_refunded: refunded
            || matches!((amount_refunded, amount), (Some(r), Some(a)) if a > 0 && r >= a),
        status: r.text(raw.status, "data.object.status"),
        amount,
        amount_refunded,
        charge,
        reason: r.text(raw.reason, "data.object.reason"),
        evidence_due_by,
        refunds,
    }
}

/// A field holding an object's id, or the object itself expanded (its `id` is read).
fn id_or_expanded(
    raw: Option<&str>,
    r: &mut Reader,
    field: &'static str,
    id_field: &'static str,
) -> Option<String> {
    match raw {
        Some(v) if v.starts_with('{') => {
            nested::<Expanded<'_>>(raw, r, field).and_then(|v| r.text(raw_text(v.id), id_field))
        }
        other => r.text(other, field),
    }
}

/// A field holding a JSON object, read as `T`: `None` when it is absent or not an object, and
/// `field` named unreadable when it is an object that does not read as `T`.
fn nested<'a, T: Deserialize<'a>>(
    raw: Option<&'a str>,
    r: &mut Reader,
    field: &'static str,
) -> Option<T> {
    let raw = raw.filter(|v| v.starts_with('{'))?;
    match serde_json::from_str::<T>(raw) {
        Ok(v) => Some(v),
        Err(_) => {
            r.unreadable.get_or_insert(field);
            None
        }
    }
}

/// A nested object's field as raw JSON text.
fn raw_text(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get)
}

/// A currency code in lower case, as Stripe writes it, converted in place.
fn lowercase(mut code: String) -> String {
    code.make_ascii_lowercase();
    code
}
