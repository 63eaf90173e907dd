//! Group commit: many verified events applied in one transaction, with exactly the results that
//! applying them one by one, in the order given, would have had.
//!
//! One statement looks up every event's order, locks those orders (in id order, so that
//! concurrent batches cannot deadlock on them) and inserts every event from `unnest` arrays with
//! `ON CONFLICT DO NOTHING RETURNING`. The state machine ([`super::decide`]) is then folded over the
//! inserted events in order, per order, so two events for one order in one batch move it exactly
//! as two transactions would. One set-based `UPDATE` writes each changed order's final state.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::{
    Applied, Decision, LedgerError, OpenTransaction, OrderRow, Param, Source, judge, keys,
    order_lookup_sql,
};
use crate::stripe::event::StripeEvent;

/// One event of a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchEntry<'a> {
    pub event: &'a StripeEvent,
    /// The JSON stored in `payment_events.payload`.
    pub payload: &'a str,
    pub request_id: Option<&'a str>,
}

/// Who delivered a batch and which mode it expects (`STRIPE_EXPECT_LIVEMODE`).
#[derive(Debug, Clone, Copy)]
pub struct BatchMeta {
    pub source: Source,
    pub expect_livemode: Option<bool>,
}

/// Looks up every distinct event's order, locks those orders in id order (so that concurrent
/// batches cannot deadlock on them), then inserts the events. Parameters 1–5: the lookup keys
/// and the event id; 6–12: the other columns; 13: the source. One row per distinct event, in
/// input order: whether it was inserted, then its order as locked.
#[doc(hidden)]
pub const LOCK_AND_INSERT_BATCH: &str = concat!(
    "WITH matched AS MATERIALIZED (
    SELECT i.n, i.event_id, i.session_id, ",
    order_lookup_sql!(
        "i.session_id",
        "i.client_ref",
        "i.metadata_ref",
        "i.payment_intent"
    ),
    " AS order_id
    FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
        WITH ORDINALITY AS i (session_id, client_ref, metadata_ref, payment_intent, event_id, n)
), locked AS MATERIALIZED (
    SELECT o.id, o.status, o.amount_total, o.currency, o.stripe_payment_intent_id
    FROM orders AS o
    WHERE o.id = ANY (ARRAY(SELECT m.order_id FROM matched AS m WHERE m.order_id IS NOT NULL))
    ORDER BY o.id
    FOR UPDATE
), inserted AS (
    INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
        order_id, livemode, api_version, stripe_created_at, payload, source, request_id)
    SELECT m.event_id, e.event_type, e.object_id, m.session_id, l.id, e.livemode, e.api_version,
        e.created, e.payload::jsonb, $13, e.request_id
    FROM unnest($6::text[], $7::text[], $8::bool[], $9::text[], $10::timestamptz[], $11::text[],
            $12::text[])
        WITH ORDINALITY AS e (event_type, object_id, livemode, api_version, created, payload,
            request_id, n)
    JOIN matched AS m ON m.n = e.n
    LEFT JOIN locked AS l ON l.id = m.order_id
    ORDER BY m.event_id
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING stripe_event_id
)
SELECT m.event_id IN (SELECT x.stripe_event_id FROM inserted AS x) AS inserted,
       l.id, l.status, l.amount_total, l.currency, l.stripe_payment_intent_id
FROM matched AS m LEFT JOIN locked AS l ON l.id = m.order_id
ORDER BY m.n"
);

/// Writes each changed order's final state; the same `COALESCE` rules as the one-event `UPDATE`.
#[doc(hidden)]
pub const UPDATE_ORDERS: &str = "\
UPDATE orders AS o
SET status = u.status,
    paid_at = COALESCE(u.paid_at, o.paid_at),
    stripe_payment_intent_id = COALESCE(o.stripe_payment_intent_id, u.payment_intent),
    anomaly = COALESCE(u.anomaly, o.anomaly),
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
    AS u (id, status, paid_at, payment_intent, anomaly)
WHERE o.id = u.id";

/// Links events that an earlier event of the same batch made findable (a refund whose payment
/// intent the batch's own session event recorded on the order).
const LINK_EVENTS: &str = "\
UPDATE payment_events AS p SET order_id = l.order_id
FROM unnest($1::text[], $2::uuid[]) AS l (event_id, order_id)
WHERE p.stripe_event_id = l.event_id";

/// Records a batch in one transaction of its own on a pooled connection; returns one [`Applied`]
/// per entry, in order, only after `COMMIT`. If this future fails or is dropped while the
/// transaction may be open, the connection is discarded rather than returned to the pool.
pub async fn record_batch(
    pool: &Pool,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
) -> Result<Vec<Applied>, LedgerError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let conn = OpenTransaction {
        client: Some(pool.get().await?),
    };
    let applied = record_batch_on(conn.client()?, entries, meta, || ()).await?;
    conn.committed();
    Ok(applied)
}

/// Records a batch in one transaction of its own on `client`, in two round trips as for one
/// event: `BEGIN` goes with the lock-and-insert statement, then the order updates go with
/// `COMMIT`. Returns one [`Applied`] per entry, in order, only after `COMMIT`.
///
/// `sent` is called as soon as the transaction's last message has been sent (its `COMMIT`, or the
/// `ROLLBACK` after an earlier error), before the answer: from then on the connection takes the
/// next transaction, which Postgres starts while this one's commit record is flushed. Every
/// message of this transaction is sent before `sent` is called, so a caller that shares the
/// connection only after `sent` never interleaves two transactions. `sent` is never called if
/// the transaction may still be open: this future dropped or panicking midway, or a `ROLLBACK`
/// that failed; the connection must then be closed, never reused.
pub async fn record_batch_on(
    client: &deadpool_postgres::Object,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
    sent: impl FnOnce(),
) -> Result<Vec<Applied>, LedgerError> {
    let opened = async {
        // Polled in order: BEGIN is sent first, then the statement, in one round trip.
        let (begin, plan) = tokio::join!(
            client.batch_execute("BEGIN"),
            Plan::lock_and_insert(client, entries, meta)
        );
        begin?;
        let plan = plan?;
        let statements = plan.prepare(client).await?;
        Ok::<_, LedgerError>((plan, statements))
    };
    let (plan, statements) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            rollback(client, sent).await;
            return Err(e);
        }
    };
    let (written, commit) = {
        let written = plan.write(client, &statements);
        let commit = client.batch_execute("COMMIT");
        tokio::pin!(written, commit);
        // Each statement is sent on its future's first poll: the updates, then COMMIT.
        let written_now = poll_once(written.as_mut()).await;
        if let Poll::Ready(Err(e)) = written_now {
            // Nothing was sent (the parameters did not encode): no COMMIT for half a batch; the
            // COMMIT future is dropped unpolled, so it sends nothing.
            rollback(client, sent).await;
            return Err(e);
        }
        let commit_now = poll_once(commit.as_mut()).await;
        sent();
        let written = match written_now {
            Poll::Ready(result) => result,
            Poll::Pending => written.await,
        };
        let commit = match commit_now {
            Poll::Ready(result) => result,
            Poll::Pending => commit.await,
        };
        (written, commit)
    };
    // A failed update turns the pipelined COMMIT into a rollback: report the update's error.
    written?;
    commit?;
    Ok(plan.applied)
}

/// Ends a transaction that failed before its `COMMIT` was sent; `sent` only if that worked (a
/// lost connection fails it too).
async fn rollback(client: &deadpool_postgres::Object, sent: impl FnOnce()) {
    if client.batch_execute("ROLLBACK").await.is_ok() {
        sent();
    }
}

/// Polls a future once, so that whatever it sends on its first poll is sent now.
async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(move |cx| match future.take() {
        Some(f) => Poll::Ready(f.poll(cx)),
        None => Poll::Pending,
    })
    .await
}

/// Applies a batch inside the caller's transaction (the caller commits).
pub async fn apply_batch<C: GenericClient>(
    client: &C,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
) -> Result<Vec<Applied>, LedgerError> {
    let plan = Plan::lock_and_insert(client, entries, meta).await?;
    if !plan.writes_nothing() {
        let statements = plan.prepare(client).await?;
        plan.write(client, &statements).await?;
    }
    Ok(plan.applied)
}

/// The array parameters of `LOCK_AND_INSERT_BATCH`, one element per distinct event id (a second
/// delivery of an id within the batch is answered as a duplicate of the first).
struct Columns<'a> {
    /// For each entry, the index of its distinct event.
    slot: Vec<usize>,
    /// For each entry, whether it is the first with its id.
    first: Vec<bool>,
    session_id: Vec<Option<&'a str>>,
    client_ref: Vec<Option<Uuid>>,
    metadata_ref: Vec<Option<Uuid>>,
    payment_intent: Vec<Option<&'a str>>,
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
    fn new(entries: &[BatchEntry<'a>], source: Source) -> Self {
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

    fn params(&self) -> [Param<'_>; 13] {
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

/// An order as the batch has moved it so far, and what must be written to it.
struct Tracked {
    row: OrderRow,
    changed: bool,
    paid_at: Option<DateTime<Utc>>,
    payment_intent: Option<String>,
    anomaly: Option<String>,
}

impl Tracked {
    fn new(row: OrderRow) -> Self {
        Self {
            row,
            changed: false,
            paid_at: None,
            payment_intent: None,
            anomaly: None,
        }
    }

    /// Moves the order as one more event's decision says, and keeps what the final `UPDATE`
    /// writes: the one-event `UPDATE`'s rules applied in turn (the last `paid_at` and anomaly,
    /// the first payment intent).
    fn absorb(&mut self, decision: Decision) {
        self.changed = true;
        if let Some(to) = decision.to {
            self.row.status = to;
        }
        if decision.paid_at.is_some() {
            self.paid_at = decision.paid_at;
        }
        if let Some(pi) = decision.payment_intent {
            self.row.payment_intent = Some(pi.clone());
            self.payment_intent = Some(pi);
        }
        if decision.order_anomaly.is_some() {
            self.anomaly = decision.order_anomaly;
        }
    }
}

/// What the batch does: one [`Applied`] per entry, the orders to write and the events to link.
struct Plan {
    applied: Vec<Applied>,
    /// Changed orders, in the order they were first touched.
    orders: Vec<Tracked>,
    links: Vec<(String, Uuid)>,
}

impl Plan {
    /// Runs `LOCK_AND_INSERT_BATCH` for the entries and folds its rows (no I/O when empty).
    async fn lock_and_insert<C: GenericClient>(
        client: &C,
        entries: &[BatchEntry<'_>],
        meta: BatchMeta,
    ) -> Result<Self, LedgerError> {
        let columns = Columns::new(entries, meta.source);
        let rows = match entries.is_empty() {
            true => Vec::new(),
            false => {
                let stmt = client.prepare_cached(LOCK_AND_INSERT_BATCH).await?;
                client.query(&stmt, &columns.params()).await?
            }
        };
        Ok(Self::fold(entries, &columns, &rows, meta.expect_livemode))
    }

    /// Folds the state machine over the batch's inserted events, in entry order.
    fn fold(
        entries: &[BatchEntry<'_>],
        columns: &Columns<'_>,
        rows: &[tokio_postgres::Row],
        expect_livemode: Option<bool>,
    ) -> Self {
        let mut orders: Vec<Tracked> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        // Payment intents recorded on an order by this batch, so that a later event looked up by
        // payment intent finds the order as it would after the earlier event's own commit.
        let mut recorded_intents: HashMap<String, usize> = HashMap::new();
        let mut links = Vec::new();
        let mut applied = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let event = entry.event;
            let slot = columns.slot[i];
            let Some(row) = rows.get(slot) else {
                // Unreachable: the statement returns one row per distinct event.
                applied.push(Applied::new(true, None));
                continue;
            };
            let locked = OrderRow::read(row, 1).map(|order| {
                *index.entry(order.id).or_insert_with(|| {
                    orders.push(Tracked::new(order));
                    orders.len() - 1
                })
            });
            let at = locked.or_else(|| {
                columns.payment_intent[slot]
                    .and_then(|pi| recorded_intents.get(pi))
                    .copied()
            });
            let new_event = row.get::<_, bool>(0) && columns.first[i];
            if !new_event {
                applied.push(Applied::new(true, at.map(|at| orders[at].row.id)));
                continue;
            }
            let Some(at) = at else {
                applied.push(judge(event, None, expect_livemode).0);
                continue;
            };
            let tracked = &mut orders[at];
            if locked.is_none() {
                links.push((event.id.clone(), tracked.row.id));
            }
            let (result, decision) = judge(event, Some(&tracked.row), expect_livemode);
            if let Some(decision) = decision {
                if let Some(pi) = &decision.payment_intent {
                    recorded_intents.insert(pi.clone(), at);
                }
                tracked.absorb(decision);
            }
            applied.push(result);
        }
        orders.retain(|o| o.changed);
        Self {
            applied,
            orders,
            links,
        }
    }

    fn writes_nothing(&self) -> bool {
        self.orders.is_empty() && self.links.is_empty()
    }

    /// Prepares the statements [`Plan::write`] needs. This must finish before `write` is
    /// pipelined with a `COMMIT`: a statement still being prepared would reach the server after
    /// the `COMMIT`, outside the transaction.
    async fn prepare<C: GenericClient>(&self, client: &C) -> Result<Statements, LedgerError> {
        Ok(Statements {
            update: match self.orders.is_empty() {
                true => None,
                false => Some(client.prepare_cached(UPDATE_ORDERS).await?),
            },
            link: match self.links.is_empty() {
                true => None,
                false => Some(client.prepare_cached(LINK_EVENTS).await?),
            },
        })
    }

    /// The set-based `UPDATE` of the changed orders and the late links, both sent on the first
    /// poll.
    async fn write<C: GenericClient>(
        &self,
        client: &C,
        statements: &Statements,
    ) -> Result<(), LedgerError> {
        let Statements { update, link } = statements;
        let ids: Vec<Uuid> = self.orders.iter().map(|o| o.row.id).collect();
        let status: Vec<&str> = self.orders.iter().map(|o| o.row.status.as_str()).collect();
        let paid_at: Vec<Option<DateTime<Utc>>> = self.orders.iter().map(|o| o.paid_at).collect();
        let intents: Vec<Option<&str>> = self
            .orders
            .iter()
            .map(|o| o.payment_intent.as_deref())
            .collect();
        let anomaly: Vec<Option<&str>> = self.orders.iter().map(|o| o.anomaly.as_deref()).collect();
        let link_events: Vec<&str> = self.links.iter().map(|(e, _)| e.as_str()).collect();
        let link_orders: Vec<Uuid> = self.links.iter().map(|(_, o)| *o).collect();
        let updated = async {
            match update {
                Some(stmt) => {
                    client
                        .execute(stmt, &[&ids, &status, &paid_at, &intents, &anomaly])
                        .await
                }
                None => Ok(0),
            }
        };
        let linked = async {
            match link {
                Some(stmt) => client.execute(stmt, &[&link_events, &link_orders]).await,
                None => Ok(0),
            }
        };
        let (updated, linked) = tokio::join!(updated, linked);
        updated?;
        linked?;
        Ok(())
    }
}

/// The prepared statements of [`Plan::write`].
struct Statements {
    update: Option<tokio_postgres::Statement>,
    link: Option<tokio_postgres::Statement>,
}
