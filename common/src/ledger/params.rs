//! The array parameters of the batch statements: what the lookup and the lock-and-insert take for
//! each distinct event ([`Columns`]), and what the order `UPDATE`, the late links and the money
//! function take once the batch is folded ([`Writes`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide::keys;
use super::money::MoneyColumns;
use super::plan::Transition;
use super::{BatchEntry, Source};

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The array parameters of the batch statements, one element per distinct event id (a second
/// delivery of an id within the batch is answered as a duplicate of the first).
pub(super) struct Columns<'a> {
    /// For each entry, the index of its distinct event.
    pub(super) slot: Vec<usize>,
    /// For each entry, whether it is the first with its id.
    pub(super) first: Vec<bool>,
    session_id: Vec<Option<&'a str>>,
    client_ref: Vec<Option<Uuid>>,
    metadata_ref: Vec<Option<Uuid>>,
    pub(super) payment_intent: Vec<Option<&'a str>>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    object_id: Vec<Option<&'a str>>,
    livemode: Vec<bool>,
    api_version: Vec<Option<&'a str>>,
    created: Vec<DateTime<Utc>>,
    payload: Vec<&'a str>,
    request_id: Vec<Option<&'a str>>,
    source: &'static str,
}

impl<'a> Columns<'a> {
    pub(super) fn new(entries: &[BatchEntry<'a>], source: Source) -> Self {
        let n = entries.len();
        let mut c = Self {
            slot: Vec::with_capacity(n),
            first: Vec::with_capacity(n),
            session_id: Vec::with_capacity(n),
            client_ref: Vec::with_capacity(n),
            metadata_ref: Vec::with_capacity(n),
            payment_intent: Vec::with_capacity(n),
            event_id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            object_id: Vec::with_capacity(n),
            livemode: Vec::with_capacity(n),
            api_version: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            source: source.as_str(),
        };
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        for entry in entries {
            let e = entry.event;
            if let Some(&slot) = seen.get(e.id.as_str()) {
                c.slot.push(slot);
                c.first.push(false);
                continue;
            }
            let slot = c.event_id.len();
            seen.insert(&e.id, slot);
            c.slot.push(slot);
            c.first.push(true);
            let k = keys(e);
            c.session_id.push(k.session_id);
            c.client_ref.push(k.client_ref);
            c.metadata_ref.push(k.metadata_ref);
            c.payment_intent.push(k.payment_intent);
            c.event_id.push(&e.id);
            c.event_type.push(&e.event_type);
            c.object_id.push(e.object.id.as_deref());
            c.livemode.push(e.livemode);
            c.api_version.push(e.api_version.as_deref());
            c.created.push(e.created);
            c.payload.push(entry.payload);
            c.request_id.push(entry.request_id);
        }
        c
    }

    /// Parameters 1–5: what finds each event's order.
    pub(super) fn lookup_params(&self) -> [Param<'_>; 5] {
        [
            &self.session_id,
            &self.client_ref,
            &self.metadata_ref,
            &self.payment_intent,
            &self.event_id,
        ]
    }

    /// Parameters 1–13 of the lock-and-insert statement.
    pub(super) fn insert_params(&self) -> [Param<'_>; 13] {
        [
            &self.session_id,
            &self.client_ref,
            &self.metadata_ref,
            &self.payment_intent,
            &self.event_id,
            &self.event_type,
            &self.object_id,
            &self.livemode,
            &self.api_version,
            &self.created,
            &self.payload,
            &self.request_id,
            &self.source,
        ]
    }
}

/// The outbox rows of a batch as the array parameters of the order `UPDATE` (7–13).
pub(super) struct TransitionColumns {
    order_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    from: Vec<&'static str>,
    to: Vec<&'static str>,
    event_id: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    livemode: Vec<bool>,
    amount_total: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
}

impl TransitionColumns {
    pub(super) fn new(transitions: &[Transition]) -> Self {
        Self {
            order_id: transitions.iter().map(|t| t.order_id).collect(),
            kind: transitions.iter().map(|t| t.kind.as_str()).collect(),
            from: transitions.iter().map(|t| t.from.as_str()).collect(),
            to: transitions.iter().map(|t| t.to.as_str()).collect(),
            event_id: transitions.iter().map(|t| t.event_id.clone()).collect(),
            occurred_at: transitions.iter().map(|t| t.occurred_at).collect(),
            livemode: transitions.iter().map(|t| t.livemode).collect(),
            amount_total: transitions.iter().map(|t| t.amount_total).collect(),
            currency: transitions.iter().map(|t| t.currency.clone()).collect(),
        }
    }
}

/// The parameters of the order `UPDATE` and of the late links.
pub(super) struct Writes {
    pub(super) ids: Vec<Uuid>,
    pub(super) status: Vec<&'static str>,
    pub(super) paid_at: Vec<Option<DateTime<Utc>>>,
    pub(super) paid_amount: Vec<Option<i64>>,
    pub(super) paid_currency: Vec<Option<String>>,
    pub(super) payment_intent: Vec<Option<String>>,
    pub(super) replaces_payment_intent: Vec<bool>,
    pub(super) anomaly: Vec<Option<String>>,
    pub(super) link_events: Vec<String>,
    pub(super) link_orders: Vec<Uuid>,
    pub(super) transitions: TransitionColumns,
    pub(super) money: MoneyColumns,
}

impl Writes {
    pub(super) fn updates_orders(&self) -> bool {
        !self.ids.is_empty()
    }

    pub(super) fn links_events(&self) -> bool {
        !self.link_events.is_empty()
    }

    pub(super) fn applies_money(&self) -> bool {
        !self.money.is_empty()
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.updates_orders() && !self.links_events() && !self.applies_money()
    }

    pub(super) fn money_params(&self) -> [Param<'_>; 15] {
        self.money.params()
    }

    pub(super) fn update_params(&self) -> [Param<'_>; 17] {
        let t = &self.transitions;
        [
            &self.ids,
            &self.status,
            &self.paid_at,
            &self.payment_intent,
            &self.anomaly,
            &self.replaces_payment_intent,
            &t.order_id,
            &t.kind,
            &t.from,
            &t.to,
            &t.event_id,
            &t.occurred_at,
            &t.livemode,
            &self.paid_amount,
            &self.paid_currency,
            &t.amount_total,
            &t.currency,
        ]
    }

    pub(super) fn link_params(&self) -> [Param<'_>; 2] {
        [&self.link_events, &self.link_orders]
    }
}
