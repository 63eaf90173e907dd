//! The one-event ledger write, kept as the differential oracle for the batched write (every
//! sequence of events must leave the same answers and the same database either way) and as the
//! pgbench reference of one transaction per event (`ledger-sql` prints these statements). It is
//! a second, deliberately plain spelling of the rules' I/O: two statements, one order per event,
//! and the outbox row of its status change.

use chrono::{DateTime, Utc};
use common::ledger::decide::{Decision, Target, judge, keys};
use common::ledger::money::{self, MoneyChange, MoneyColumns};
use common::ledger::outbox::NotificationKind;
use common::ledger::{Applied, OrderRow, OrderStatus, Source};
use common::stripe::event::StripeEvent;
use deadpool_postgres::Pool;
use uuid::Uuid;

/// Locks the event's order (found by keys $1–$4; for a session's event, `client_reference_id` and
/// `metadata.order_id` only find an order with no session or the same one, else the order they
/// name is a mismatch) and inserts the event; one row: the inserted count, whether the order is a
/// mismatch, then the order.
pub const LOCK_AND_INSERT: &str = "\
WITH found AS (
    SELECT COALESCE(
        (SELECT o.id FROM orders AS o WHERE o.stripe_session_id = $1),
        (SELECT o.id FROM orders AS o WHERE o.id = $2
            AND ($1::text IS NULL OR o.stripe_session_id IS NULL OR o.stripe_session_id = $1)),
        (SELECT o.id FROM orders AS o WHERE o.id = $3
            AND ($1::text IS NULL OR o.stripe_session_id IS NULL OR o.stripe_session_id = $1)),
        (SELECT o.id FROM orders AS o WHERE o.stripe_payment_intent_id = $4 LIMIT 1)) AS order_id,
        (SELECT o.id FROM orders AS o WHERE $1::text IS NOT NULL AND o.id IN ($2, $3)
            AND o.stripe_session_id <> $1 LIMIT 1) AS other_id
), target AS (
    SELECT id, status, amount_total, currency, stripe_payment_intent_id, amount_refunded
    FROM orders
    WHERE id = (SELECT coalesce(order_id, other_id) FROM found)
    FOR UPDATE
), inserted AS (
    INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
        order_id, livemode, api_version, stripe_created_at, payload, source, request_id,
        client_reference_id, metadata_order_id, stripe_payment_intent_id)
    SELECT $5, $6, $7, $1,
        CASE WHEN (SELECT order_id FROM found) IS NOT NULL THEN (SELECT id FROM target) END,
        $8, $9, $10, $11::text::json, $12, $13, $2, $3, $4
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT order_id IS NULL AND other_id IS NOT NULL FROM found) AS mismatch,
       t.id, t.status, t.amount_total, t.currency, t.stripe_payment_intent_id, t.amount_refunded
FROM (VALUES (1)) AS one (x) LEFT JOIN target AS t ON true";

/// Writes one order's change.
pub const UPDATE_ORDER: &str = "\
UPDATE orders
SET status = $2,
    paid_at = COALESCE($3, paid_at),
    stripe_payment_intent_id = CASE WHEN $6 THEN $4 ELSE COALESCE(stripe_payment_intent_id, $4) END,
    anomaly = COALESCE($5, anomaly),
    amount_total = COALESCE(amount_total, $7),
    currency = COALESCE(currency, $8),
    updated_at = now()
WHERE id = $1";

/// Puts one status change in the outbox, with the order as it now is.
pub const INSERT_TRANSITION: &str = "\
INSERT INTO order_transitions (order_id, kind, from_status, to_status, stripe_event_id, occurred_at,
    livemode, stripe_session_id, amount_total, currency, amount_refunded, dispute_status)
SELECT id, $2, $3, $4, $5, $6, $7, stripe_session_id, amount_total, currency, amount_refunded,
    dispute_status
FROM orders WHERE id = $1";

/// How one event is recorded.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    pub source: Source,
    pub request_id: Option<&'a str>,
    pub expect_livemode: Option<bool>,
}

/// Records one event in its own transaction, one statement after the other.
pub async fn record(
    pool: &Pool,
    event: &StripeEvent,
    payload: &str,
    meta: &RecordMeta<'_>,
) -> Result<Applied, tokio_postgres::Error> {
    let mut client = pool.get().await.expect("oracle connection");
    let tx = client.transaction().await?;
    let k = keys(event);
    let row = tx
        .query_one(
            LOCK_AND_INSERT,
            &[
                &k.session_id,
                &k.client_ref,
                &k.metadata_ref,
                &k.payment_intent,
                &event.id,
                &event.event_type,
                &event.object.id,
                &event.livemode,
                &event.api_version,
                &event.created,
                &payload,
                &meta.source.as_str(),
                &meta.request_id,
            ],
        )
        .await?;
    let inserted: i64 = row.get(0);
    let mismatch: bool = row.get(1);
    let order = OrderRow::read(&row, 2);
    if inserted == 0 {
        tx.commit().await?;
        return Ok(Applied::new(
            true,
            order.filter(|_| !mismatch).map(|o| o.id),
        ));
    }
    let target = match &order {
        Some(o) if mismatch => Target::Mismatch(o),
        Some(o) => Target::Order(o),
        None => Target::None,
    };
    let (mut applied, decision) = judge(event, target, meta.expect_livemode);
    if let (true, Some(order_id)) = (mismatch, applied.order_id) {
        // An older session of a retried checkout: linked to the order it names.
        tx.execute(
            "UPDATE payment_events SET order_id = $2 WHERE stripe_event_id = $1",
            &[&event.id, &order_id],
        )
        .await?;
    }
    if let Some((order, decision)) = order.clone().zip(decision) {
        let update = Update::new(&order, decision);
        tx.execute(
            UPDATE_ORDER,
            &[
                &update.id,
                &update.to,
                &update.paid_at,
                &update.payment_intent,
                &update.anomaly,
                &update.replaces_payment_intent,
                &update.paid_amount,
                &update.paid_currency,
            ],
        )
        .await?;
    }
    if let (Some(order_id), Some((from, to))) = (applied.order_id, applied.transition)
        && let Some(kind) = NotificationKind::of_status(to)
    {
        tx.execute(
            INSERT_TRANSITION,
            &[
                &order_id,
                &kind.as_str(),
                &from.as_str(),
                &to.as_str(),
                &event.id,
                &event.created,
                &event.livemode,
            ],
        )
        .await?;
    }
    // The money after the payment: the event's snapshots, then the settling of an order it paid
    // with refunds already known.
    if let (Some(order), false) = (&order, mismatch)
        && applied.anomaly.is_none()
    {
        let mut columns = MoneyColumns::default();
        let snapshots = money::snapshots(event);
        applied.money = money::MoneySeen::of(&snapshots);
        let had_money = !snapshots.is_empty();
        if had_money {
            columns.push(order.id, event, snapshots, order.status.is_paid());
        }
        if applied
            .transition
            .is_some_and(|(_, to)| to == OrderStatus::Paid)
            && (order.amount_refunded > 0 || had_money)
        {
            columns.settle(order.id, event);
        }
        if !columns.is_empty() {
            for row in tx.query(money::APPLY_MONEY, &columns.params()).await? {
                if let Some(MoneyChange { from, to, .. }) = MoneyChange::read(&row) {
                    let from = applied.transition.map_or(from, |(from, _)| from);
                    applied.transition = (from != to).then_some((from, to));
                }
            }
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// The parameters of [`UPDATE_ORDER`].
struct Update {
    id: Uuid,
    to: &'static str,
    paid_at: Option<DateTime<Utc>>,
    payment_intent: Option<String>,
    anomaly: Option<String>,
    replaces_payment_intent: bool,
    paid_amount: Option<i64>,
    paid_currency: Option<String>,
}

impl Update {
    fn new(order: &OrderRow, decision: Decision) -> Self {
        Self {
            id: order.id,
            to: decision.to.unwrap_or(order.status).as_str(),
            paid_at: decision.paid_at,
            payment_intent: decision.payment_intent,
            anomaly: decision.order_anomaly,
            replaces_payment_intent: decision.replaces_payment_intent,
            paid_amount: decision.paid_amount,
            paid_currency: decision.paid_currency,
        }
    }
}
