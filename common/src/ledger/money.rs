//! The money after the payment, the ledger's side: the refund, dispute and charge snapshots an
//! event carries ([`snapshots`]), as the array parameters of `ledger_apply_money` (migration V7),
//! which keeps each refund and dispute at its newest snapshot, sums the succeeded refunds into
//! `orders.amount_refunded`, moves the order between `paid`, `partially_refunded` and `refunded`
//! and follows its newest dispute in `orders.dispute_status`, writing an outbox row for each
//! change. The rules live in that one function, so that the batch write and the one-event oracle
//! apply them identically; the status ranks that break ties are below, with their tests.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::OrderStatus;
use crate::stripe::event::{StripeEvent, types};

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// What a snapshot is about (`p_kind` of `ledger_apply_money`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Refund,
    Dispute,
    /// A refunded charge: its `amount_refunded` (for API versions that embed no refunds).
    Charge,
    /// No snapshot: an order the batch paid that already had refunds is settled again.
    Settle,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refund => "refund",
            Self::Dispute => "dispute",
            Self::Charge => "charge",
            Self::Settle => "settle",
        }
    }
}

/// One snapshot of an object as an event shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub kind: SnapshotKind,
    pub object_id: Option<String>,
    pub status: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub reason: Option<String>,
    pub evidence_due_by: Option<DateTime<Utc>>,
    /// Charges: the amount refunded (the whole amount when the charge says `refunded`).
    pub charge_refunded: Option<i64>,
}

impl Snapshot {
    fn settle() -> Self {
        Self {
            kind: SnapshotKind::Settle,
            object_id: None,
            status: None,
            amount: None,
            currency: None,
            payment_intent: None,
            charge: None,
            reason: None,
            evidence_due_by: None,
            charge_refunded: None,
        }
    }
}

/// The snapshots a money event carries: a refund; a dispute; a refunded charge and the refunds it
/// embeds (older API versions). Empty for other events, and for objects without an id or status.
pub fn snapshots(event: &StripeEvent) -> Vec<Snapshot> {
    if !event.is_money() {
        return Vec::new();
    }
    let o = &event.object;
    let base = Snapshot {
        object_id: o.id.clone(),
        status: o.status.clone(),
        amount: o.amount,
        currency: o.currency.clone(),
        payment_intent: o.payment_intent.clone(),
        charge: o.charge.clone(),
        ..Snapshot::settle()
    };
    match o.kind.as_deref() {
        Some("refund") if o.id.is_some() && o.status.is_some() => vec![Snapshot {
            kind: SnapshotKind::Refund,
            ..base
        }],
        Some("dispute") if o.id.is_some() && o.status.is_some() => vec![Snapshot {
            kind: SnapshotKind::Dispute,
            reason: o.reason.clone(),
            evidence_due_by: o
                .evidence_due_by
                .and_then(|t| DateTime::from_timestamp(t, 0)),
            ..base
        }],
        Some("charge") if event.event_type == types::CHARGE_REFUNDED => {
            let mut out: Vec<Snapshot> = o
                .refunds
                .iter()
                .filter(|r| r.status.is_some())
                .map(|r| Snapshot {
                    kind: SnapshotKind::Refund,
                    object_id: Some(r.id.clone()),
                    status: r.status.clone(),
                    amount: r.amount,
                    currency: r.currency.clone().or_else(|| o.currency.clone()),
                    payment_intent: o.payment_intent.clone(),
                    charge: o.id.clone(),
                    ..Snapshot::settle()
                })
                .collect();
            let refunded = match (o.fully_refunded, o.amount, o.amount_refunded) {
                (true, Some(amount), r) => Some(r.unwrap_or(0).max(amount)),
                (_, _, r) => r,
            };
            if let Some(refunded) = refunded {
                out.push(Snapshot {
                    kind: SnapshotKind::Charge,
                    charge: o.id.clone(),
                    charge_refunded: Some(refunded),
                    ..base
                });
            }
            out
        }
        _ => Vec::new(),
    }
}

crate::label! {
    /// A refund's `status`, as counted (`edge_refunds_total{status}`).
    pub enum RefundStatus: "status" {
        Pending = "pending",
        RequiresAction = "requires_action",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
        /// A status Stripe added after this build.
        Other = "other",
    }
}

crate::label! {
    /// A dispute's `status`, as counted (`edge_disputes_total{status}`).
    pub enum DisputeStatus: "status" {
        WarningNeedsResponse = "warning_needs_response",
        WarningUnderReview = "warning_under_review",
        WarningClosed = "warning_closed",
        NeedsResponse = "needs_response",
        UnderReview = "under_review",
        Won = "won",
        Lost = "lost",
        Prevented = "prevented",
        /// A status Stripe added after this build.
        Other = "other",
    }
}

impl RefundStatus {
    pub fn of(status: &str) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == status)
            .unwrap_or(Self::Other)
    }
}

impl DisputeStatus {
    pub fn of(status: &str) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == status)
            .unwrap_or(Self::Other)
    }
}

/// What an applied event said about money: the status of the refund or dispute it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneySeen {
    Refund(RefundStatus),
    Dispute(DisputeStatus),
}

impl MoneySeen {
    /// The refund or dispute an event's own object is, if it is one.
    pub fn of(snapshots: &[Snapshot]) -> Option<Self> {
        snapshots
            .iter()
            .find_map(|s| match (s.kind, s.status.as_deref()) {
                (SnapshotKind::Refund, Some(st)) => Some(Self::Refund(RefundStatus::of(st))),
                (SnapshotKind::Dispute, Some(st)) => Some(Self::Dispute(DisputeStatus::of(st))),
                _ => None,
            })
    }
}

/// How far along a refund's status is (`ledger_refund_rank`): between two snapshots of the same
/// `created`, the further one wins.
pub fn refund_rank(status: &str) -> u8 {
    match status {
        "pending" | "requires_action" => 1,
        "succeeded" => 2,
        "failed" | "canceled" => 3,
        _ => 0,
    }
}

/// How far along a dispute's status is (`ledger_dispute_rank`).
pub fn dispute_rank(status: &str) -> u8 {
    match status {
        "warning_needs_response" | "needs_response" => 1,
        "warning_under_review" | "under_review" => 2,
        "warning_closed" | "won" | "lost" | "prevented" => 3,
        _ => 0,
    }
}

/// Whether a dispute in this status still needs the shop (open: evidence or review pending).
pub fn dispute_is_open(status: &str) -> bool {
    matches!(dispute_rank(status), 1 | 2)
}

/// The statement that applies snapshots (parameters: [`MoneyColumns::params`]).
pub const APPLY_MONEY: &str = super::sql::APPLY_MONEY;

/// The snapshots of a batch as the array parameters of [`APPLY_MONEY`], in the order the batch
/// applies them.
#[derive(Debug, Default, Clone)]
pub struct MoneyColumns {
    order: Vec<Uuid>,
    event: Vec<String>,
    occurred: Vec<DateTime<Utc>>,
    livemode: Vec<bool>,
    kind: Vec<&'static str>,
    object: Vec<Option<String>>,
    status: Vec<Option<String>>,
    amount: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    payment_intent: Vec<Option<String>>,
    charge: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    due_by: Vec<Option<DateTime<Utc>>>,
    charge_refunded: Vec<Option<i64>>,
    moves: Vec<bool>,
}

impl MoneyColumns {
    /// Adds an event's snapshots for its order; `moves`: the order was paid at that point of the
    /// batch, so that the snapshots may move its status.
    pub fn push(
        &mut self,
        order: Uuid,
        event: &StripeEvent,
        snapshots: Vec<Snapshot>,
        moves: bool,
    ) {
        for s in snapshots {
            self.moves.push(moves);
            self.order.push(order);
            self.event.push(event.id.clone());
            self.occurred.push(event.created);
            self.livemode.push(event.livemode);
            self.kind.push(s.kind.as_str());
            self.object.push(s.object_id);
            self.status.push(s.status);
            self.amount.push(s.amount);
            self.currency.push(s.currency);
            self.payment_intent.push(s.payment_intent);
            self.charge.push(s.charge);
            self.reason.push(s.reason);
            self.due_by.push(s.evidence_due_by);
            self.charge_refunded.push(s.charge_refunded);
        }
    }

    /// Settles an order that `event` paid while refunds were already recorded for it.
    pub fn settle(&mut self, order: Uuid, event: &StripeEvent) {
        self.push(order, event, vec![Snapshot::settle()], true);
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn params(&self) -> [Param<'_>; 15] {
        [
            &self.order,
            &self.event,
            &self.occurred,
            &self.livemode,
            &self.kind,
            &self.object,
            &self.status,
            &self.amount,
            &self.currency,
            &self.payment_intent,
            &self.charge,
            &self.reason,
            &self.due_by,
            &self.charge_refunded,
            &self.moves,
        ]
    }
}

/// A change of an order's status made by `ledger_apply_money`: the event that made it, from, to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyChange {
    pub event_id: String,
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl MoneyChange {
    pub fn read(row: &tokio_postgres::Row) -> Option<Self> {
        Some(Self {
            event_id: row.get(0),
            from: OrderStatus::parse(row.get(1))?,
            to: OrderStatus::parse(row.get(2))?,
        })
    }
}

/// Folds the money changes into the answers of their events (`event_ids`: each answer's event):
/// an event's transition runs from the status before it to the status after all it did.
pub(super) fn merge(
    applied: &mut [Result<super::Applied, super::OrderBusy>],
    event_ids: &[String],
    changes: &[MoneyChange],
) {
    for change in changes {
        let answer = applied
            .iter_mut()
            .zip(event_ids)
            .find_map(|(a, id)| match a {
                Ok(a) if !a.duplicate && *id == change.event_id => Some(a),
                _ => None,
            });
        if let Some(a) = answer {
            let from = a.transition.map_or(change.from, |(from, _)| from);
            a.transition = (from != change.to).then_some((from, change.to));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_order_statuses_by_how_far_along_they_are() {
        assert!(refund_rank("succeeded") > refund_rank("pending"));
        assert!(refund_rank("failed") > refund_rank("succeeded"));
        assert_eq!(refund_rank("canceled"), refund_rank("failed"));
        assert!(dispute_rank("under_review") > dispute_rank("needs_response"));
        assert!(dispute_rank("lost") > dispute_rank("under_review"));
        assert!(dispute_is_open("warning_needs_response"));
        assert!(!dispute_is_open("won"));
    }

    #[test]
    fn a_charge_of_an_older_api_version_brings_its_refunds() {
        let body = serde_json::json!({
            "id": "evt_1", "object": "event", "type": "charge.refunded", "created": 10,
            "livemode": false,
            "data": {"object": {"id": "ch_1", "object": "charge", "amount": 1000,
                "amount_refunded": 300, "refunded": false, "currency": "eur",
                "payment_intent": "pi_1",
                "refunds": {"object": "list", "data": [
                    {"id": "re_1", "object": "refund", "amount": 300, "status": "succeeded"}
                ]}}}
        });
        let event = StripeEvent::parse_str(&body.to_string()).expect("event");
        let s = snapshots(&event);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].kind, SnapshotKind::Refund);
        assert_eq!(s[0].object_id.as_deref(), Some("re_1"));
        assert_eq!(s[0].currency.as_deref(), Some("eur"));
        assert_eq!(s[1].kind, SnapshotKind::Charge);
        assert_eq!(s[1].charge_refunded, Some(300));
    }

    #[test]
    fn a_fully_refunded_charge_counts_its_whole_amount() {
        let body = serde_json::json!({
            "id": "evt_1", "object": "event", "type": "charge.refunded", "created": 10,
            "livemode": false,
            "data": {"object": {"id": "ch_1", "object": "charge", "amount": 1000,
                "refunded": true, "payment_intent": "pi_1"}}
        });
        let event = StripeEvent::parse_str(&body.to_string()).expect("event");
        assert_eq!(snapshots(&event)[0].charge_refunded, Some(1000));
    }

    #[test]
    fn a_dispute_names_its_deadline() {
        let body = serde_json::json!({
            "id": "evt_1", "object": "event", "type": "charge.dispute.created", "created": 10,
            "livemode": false,
            "data": {"object": {"id": "du_1", "object": "dispute", "amount": 1000,
                "status": "needs_response", "reason": "fraudulent", "charge": "ch_1",
                "payment_intent": "pi_1", "evidence_details": {"due_by": 1723679999}}}
        });
        let event = StripeEvent::parse_str(&body.to_string()).expect("event");
        let s = snapshots(&event);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SnapshotKind::Dispute);
        assert_eq!(s[0].reason.as_deref(), Some("fraudulent"));
        assert_eq!(
            s[0].evidence_due_by.map(|t| t.timestamp()),
            Some(1_723_679_999)
        );
    }
}
