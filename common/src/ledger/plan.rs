//! What a batch does, decided without I/O: the state machine folded over its events in order
//! ([`Plan::fold`]), so that two events for one order in one batch move it exactly as two
//! transactions would. The result is one answer per entry (applied, or left out because its order
//! is busy) and the writes to make (`params::Writes`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide::{Target, judge};
use super::money::{self, MoneyChange, MoneyColumns};
use super::outbox::NotificationKind;
use super::params::{Columns, TransitionColumns, Writes};
use super::{Applied, BatchEntry, Decision, OrderBusy, OrderRow, OrderStatus};

/// What the database said about one distinct event of a batch.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// The event is new (inserted now, or an orphan being adopted): the rules apply to it.
    pub new: bool,
    /// Its order is locked by another transaction: the event was left out.
    pub busy: bool,
    /// `order` is not the event's own but another session's order that the event names.
    pub mismatch: bool,
    /// Its order (or the order it names, for a mismatch), as locked.
    pub order: Option<OrderRow>,
    /// Its ledger row already points at that order (set by the insert itself).
    pub linked: bool,
}

impl Found {
    /// Reads the lock columns of a row from column `at` on (busy, mismatch, then the order).
    pub(super) fn read(row: &tokio_postgres::Row, at: usize, new: bool, linked: bool) -> Self {
        Self {
            new,
            busy: row.get(at),
            mismatch: row.get(at + 1),
            order: OrderRow::read(row, at + 2),
            linked,
        }
    }
}

/// An order as the batch has moved it so far, and what must be written to it.
struct Tracked {
    row: OrderRow,
    changed: bool,
    paid_at: Option<DateTime<Utc>>,
    paid_amount: Option<i64>,
    paid_currency: Option<String>,
    payment_intent: Option<String>,
    /// `payment_intent` replaces the order's (a paying event's), not only fills a gap.
    replaces_payment_intent: bool,
    anomaly: Option<String>,
    /// The batch applied money snapshots to it (its refunded amount may have changed).
    money: bool,
}

impl Tracked {
    fn new(row: OrderRow) -> Self {
        Self {
            row,
            money: false,
            changed: false,
            paid_at: None,
            paid_amount: None,
            paid_currency: None,
            payment_intent: None,
            replaces_payment_intent: false,
            anomaly: None,
        }
    }

    /// Moves the order as one more event's decision says, and keeps what the final `UPDATE`
    /// writes: the one-event rules applied in turn (the last `paid_at` and anomaly, the payment
    /// intent the order has after the last event that set it).
    fn absorb(&mut self, decision: Decision) {
        self.changed = true;
        if let Some(to) = decision.to {
            self.row.status = to;
        }
        if decision.paid_at.is_some() {
            self.paid_at = decision.paid_at;
            if self.row.amount_total.is_none() && decision.paid_amount.is_some() {
                self.row.amount_total = decision.paid_amount;
                self.paid_amount = decision.paid_amount;
            }
            if self.row.currency.is_none() && decision.paid_currency.is_some() {
                self.row.currency.clone_from(&decision.paid_currency);
                self.paid_currency = decision.paid_currency;
            }
        }
        if let Some(pi) = decision.payment_intent {
            self.row.payment_intent = Some(pi.clone());
            self.payment_intent = Some(pi);
            self.replaces_payment_intent |= decision.replaces_payment_intent;
        }
        if decision.order_anomaly.is_some() {
            self.anomaly = decision.order_anomaly;
        }
    }
}

/// One change of an order's status, in the order the batch made them: a row of the outbox.
pub(super) struct Transition {
    pub(super) order_id: Uuid,
    pub(super) kind: NotificationKind,
    pub(super) from: OrderStatus,
    pub(super) to: OrderStatus,
    pub(super) event_id: String,
    pub(super) occurred_at: DateTime<Utc>,
    pub(super) livemode: bool,
    /// The order's amount and currency at that point of the batch.
    pub(super) amount_total: Option<i64>,
    pub(super) currency: Option<String>,
}

/// What a batch does: one answer per entry, the orders to write, the events to link and the
/// transitions to put in the outbox.
pub(super) struct Plan {
    pub applied: Vec<Result<Applied, OrderBusy>>,
    /// Changed orders, in the order they were first touched.
    orders: Vec<Tracked>,
    links: Vec<(String, Uuid)>,
    transitions: Vec<Transition>,
    money: MoneyColumns,
    /// Each entry's event id, for the money changes' answers (empty without money snapshots: the
    /// checkout batches of the hot path allocate nothing for it).
    pub event_ids: Vec<String>,
    /// An order's status changed after the batch applied money snapshots to it: the money is
    /// applied after the statuses, so this batch must be written one event per transaction to
    /// keep the order's notifications in the order of its events.
    pub interleaved: bool,
}

impl Plan {
    /// Folds the state machine over the batch's new events, in entry order. `found` holds one
    /// element per distinct event (`Columns`' slots).
    pub(super) fn fold(
        entries: &[BatchEntry<'_>],
        columns: &Columns<'_>,
        found: &[Found],
        expect_livemode: Option<bool>,
    ) -> Self {
        let mut orders: Vec<Tracked> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        // Payment intents recorded on an order by this batch, so that a later event looked up by
        // payment intent finds the order as it would after the earlier event's own commit.
        let mut recorded_intents: HashMap<String, usize> = HashMap::new();
        let mut links = Vec::new();
        let mut transitions = Vec::new();
        let mut money = MoneyColumns::default();
        let mut interleaved = false;
        let mut applied = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let event = entry.event;
            let slot = columns.slot[i];
            let found = match found.get(slot) {
                Some(found) if !found.busy => found,
                // Unreachable when not busy: the statements return one row per distinct event.
                _ => {
                    applied.push(Err(OrderBusy));
                    continue;
                }
            };
            let new_event = found.new && columns.first[i];
            let locked = found.order.clone().map(|order| {
                *index.entry(order.id).or_insert_with(|| {
                    orders.push(Tracked::new(order));
                    orders.len() - 1
                })
            });
            if found.mismatch {
                let Some(at) = locked.filter(|_| new_event) else {
                    applied.push(Ok(Applied::new(true, None)));
                    continue;
                };
                let (result, decision) =
                    judge(event, Target::Mismatch(&orders[at].row), expect_livemode);
                if let Some(decision) = decision {
                    orders[at].absorb(decision);
                }
                if let Some(order_id) = result.order_id {
                    // A retried checkout's older session: on the order's timeline.
                    links.push((event.id.clone(), order_id));
                }
                applied.push(Ok(result));
                continue;
            }
            let at = locked.or_else(|| {
                columns.payment_intent[slot]
                    .and_then(|pi| recorded_intents.get(pi))
                    .copied()
            });
            if !new_event {
                applied.push(Ok(Applied::new(true, at.map(|at| orders[at].row.id))));
                continue;
            }
            let Some(at) = at else {
                applied.push(Ok(judge(event, Target::None, expect_livemode).0));
                continue;
            };
            let tracked = &mut orders[at];
            if !(found.linked && locked.is_some()) {
                links.push((event.id.clone(), tracked.row.id));
            }
            let (result, decision) = judge(event, Target::Order(&tracked.row), expect_livemode);
            if let Some(decision) = decision {
                if let Some(pi) = &decision.payment_intent {
                    recorded_intents.insert(pi.clone(), at);
                }
                tracked.absorb(decision);
            }
            let mut result = result;
            interleaved |= tracked.money && result.transition.is_some();
            if result.anomaly.is_none() {
                let snapshots = money::snapshots(event);
                result.money = money::MoneySeen::of(&snapshots);
                if !snapshots.is_empty() {
                    money.push(
                        tracked.row.id,
                        event,
                        snapshots,
                        tracked.row.status.is_paid(),
                    );
                    tracked.money = true;
                }
            }
            if result
                .transition
                .is_some_and(|(_, to)| to == OrderStatus::Paid)
                && (tracked.row.amount_refunded > 0 || tracked.money)
            {
                // Refunds were known before the payment: the paying event settles them.
                money.settle(tracked.row.id, event);
            }
            if let Some((from, to)) = result.transition
                && let Some(kind) = NotificationKind::of_status(to)
            {
                transitions.push(Transition {
                    order_id: tracked.row.id,
                    kind,
                    from,
                    to,
                    event_id: event.id.clone(),
                    occurred_at: event.created,
                    livemode: event.livemode,
                    amount_total: tracked.row.amount_total,
                    currency: tracked.row.currency.clone(),
                });
            }
            applied.push(Ok(result));
        }
        orders.retain(|o| o.changed);
        Self {
            applied,
            orders,
            links,
            transitions,
            // Only a batch with money snapshots can get status changes back from the database.
            event_ids: match money.is_empty() {
                true => Vec::new(),
                false => entries.iter().map(|e| e.event.id.clone()).collect(),
            },
            interleaved,
            money,
        }
    }

    /// Puts the status changes the money snapshots made into their events' answers.
    pub(super) fn absorb_money(&mut self, changes: &[MoneyChange]) {
        money::merge(&mut self.applied, &self.event_ids, changes);
    }

    /// The parameters of the writes, owned, so that the statements can be sent and awaited
    /// later (after the turn on a shared connection has been handed on).
    pub(super) fn writes(&self) -> Writes {
        Writes {
            ids: self.orders.iter().map(|o| o.row.id).collect(),
            status: self.orders.iter().map(|o| o.row.status.as_str()).collect(),
            paid_at: self.orders.iter().map(|o| o.paid_at).collect(),
            paid_amount: self.orders.iter().map(|o| o.paid_amount).collect(),
            paid_currency: self
                .orders
                .iter()
                .map(|o| o.paid_currency.clone())
                .collect(),
            payment_intent: self
                .orders
                .iter()
                .map(|o| o.payment_intent.clone())
                .collect(),
            replaces_payment_intent: self
                .orders
                .iter()
                .map(|o| o.replaces_payment_intent)
                .collect(),
            anomaly: self.orders.iter().map(|o| o.anomaly.clone()).collect(),
            link_events: self.links.iter().map(|(e, _)| e.clone()).collect(),
            link_orders: self.links.iter().map(|(_, o)| *o).collect(),
            transitions: TransitionColumns::new(&self.transitions),
            money: self.money.clone(),
        }
    }
}
