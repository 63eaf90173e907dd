//! The ledger: the code that applies verified Stripe events. It writes each event to
//! `payment_events` and the order's new state in the same transaction. The edge (source `webhook`),
//! the reconciler (`reconciler`) and a manual session reconcile (`manual`) all go through it.
//!
//! The state machine (`decide`) is a pure function, and `judge` turns its decision into the
//! answer for one new event. `record`/`apply` do the I/O for one event in two statements: one
//! that locks the order and inserts the event (`ON CONFLICT DO NOTHING`), and, only when the event
//! was new and the order must change, one `UPDATE`. `batch` does the same for many events in
//! one transaction (group commit), with the same results.

use std::fmt;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError, Transaction};
use uuid::Uuid;

use crate::stripe::event::{StripeEvent, types};

mod batch;
pub use batch::{
    BatchEntry, BatchMeta, LOCK_AND_INSERT_BATCH, UPDATE_ORDERS, apply_batch, record_batch,
    record_batch_on,
};

/// Who delivered the event (`payment_events.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Reconciler,
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Reconciler => "reconciler",
            Self::Manual => "manual",
        }
    }
}

/// `orders.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Paid,
    Failed,
    Expired,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        Self::Pending,
        Self::Paid,
        Self::Failed,
        Self::Expired,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every transition the state machine can make (metric labels are registered from this).
pub const TRANSITIONS: [(OrderStatus, OrderStatus); 6] = [
    (OrderStatus::Pending, OrderStatus::Paid),
    (OrderStatus::Failed, OrderStatus::Paid),
    (OrderStatus::Expired, OrderStatus::Paid),
    (OrderStatus::Pending, OrderStatus::Failed),
    (OrderStatus::Pending, OrderStatus::Expired),
    (OrderStatus::Paid, OrderStatus::Refunded),
];

/// Something wrong with an event that is kept but must not move the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// The session's amount or currency differs from what the order expects.
    AmountMismatch,
    /// A test-mode event reached a live edge, or the reverse (`STRIPE_EXPECT_LIVEMODE`).
    LivemodeMismatch,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 2] = [Self::AmountMismatch, Self::LivemodeMismatch];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AmountMismatch => "amount_mismatch",
            Self::LivemodeMismatch => "livemode_mismatch",
        }
    }
}

/// How the caller asks for an event to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    pub source: Source,
    pub request_id: Option<&'a str>,
    /// `STRIPE_EXPECT_LIVEMODE`: events of the other mode are kept but change nothing.
    pub expect_livemode: Option<bool>,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The event was already in the ledger; nothing changed.
    pub duplicate: bool,
    pub order_id: Option<Uuid>,
    pub transition: Option<(OrderStatus, OrderStatus)>,
    /// An order-moving event with no matching order (kept with `order_id` NULL).
    pub orphan: bool,
    pub anomaly: Option<AnomalyKind>,
}

impl Applied {
    /// Nothing happened to an order (yet).
    fn new(duplicate: bool, order_id: Option<Uuid>) -> Self {
        Self {
            duplicate,
            order_id,
            transition: None,
            orphan: false,
            anomaly: None,
        }
    }
}

/// The order as locked for the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: Uuid,
    pub status: OrderStatus,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
}

impl OrderRow {
    /// The order columns (id, status, amount_total, currency, payment intent) of a row, from
    /// column `at` on; `None` when the id is NULL (the event has no order).
    fn read(row: &tokio_postgres::Row, at: usize) -> Option<Self> {
        Some(Self {
            id: row.get::<_, Option<Uuid>>(at)?,
            status: OrderStatus::parse(row.get::<_, &str>(at + 1)).unwrap_or(OrderStatus::Pending),
            amount_total: row.get(at + 2),
            currency: row.get(at + 3),
            payment_intent: row.get(at + 4),
        })
    }
}

/// What the state machine wants done to the order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub to: Option<OrderStatus>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Recorded on the order when it has none yet (a later refund finds the order by it).
    pub payment_intent: Option<String>,
    pub anomaly: Option<AnomalyKind>,
    /// Text stored in `orders.anomaly` (only for anomalies that concern the order itself).
    pub order_anomaly: Option<String>,
}

impl Decision {
    fn changes_order(&self) -> bool {
        self.to.is_some() || self.payment_intent.is_some() || self.order_anomaly.is_some()
    }
}

/// The state machine of DESIGN.md. `paid` is never downgraded; only the listed moves exist.
pub fn decide(event: &StripeEvent, order: &OrderRow, expect_livemode: Option<bool>) -> Decision {
    use OrderStatus::*;
    if expect_livemode.is_some_and(|want| want != event.livemode) {
        return Decision {
            anomaly: Some(AnomalyKind::LivemodeMismatch),
            ..Decision::default()
        };
    }
    let o = &event.object;
    let from = order.status;
    let to = match event.event_type.as_str() {
        types::SESSION_COMPLETED
            if matches!(
                o.payment_status.as_deref(),
                Some("paid" | "no_payment_required")
            ) && matches!(from, Pending | Failed | Expired) =>
        {
            Some(Paid)
        }
        types::SESSION_ASYNC_SUCCEEDED if matches!(from, Pending | Failed) => Some(Paid),
        types::SESSION_ASYNC_FAILED if from == Pending => Some(Failed),
        types::SESSION_EXPIRED if from == Pending => Some(Expired),
        types::CHARGE_REFUNDED if o.fully_refunded && from == Paid => Some(Refunded),
        _ => None,
    };
    let payment_intent = match (event.session_id(), &o.payment_intent, &order.payment_intent) {
        (Some(_), Some(pi), None) => Some(pi.clone()),
        _ => None,
    };
    if to == Some(Paid)
        && let Some(problem) = amount_problem(event, order)
    {
        return Decision {
            payment_intent,
            anomaly: Some(AnomalyKind::AmountMismatch),
            order_anomaly: Some(problem),
            ..Decision::default()
        };
    }
    Decision {
        to,
        paid_at: (to == Some(Paid)).then_some(event.created),
        payment_intent,
        ..Decision::default()
    }
}

/// Describes how the session's amount or currency differs from the order's expectation.
fn amount_problem(event: &StripeEvent, order: &OrderRow) -> Option<String> {
    let o = &event.object;
    let amount_ok = order
        .amount_total
        .is_none_or(|want| o.amount_total == Some(want));
    let currency_ok = order
        .currency
        .as_deref()
        .is_none_or(|want| o.currency.as_deref() == Some(want.to_ascii_lowercase().as_str()));
    if amount_ok && currency_ok {
        return None;
    }
    let show = |a: Option<i64>, c: Option<&str>| {
        format!(
            "{} {}",
            a.map_or_else(|| "?".into(), |a| a.to_string()),
            c.unwrap_or("?")
        )
    };
    Some(format!(
        "amount_mismatch: order expects {}, {} event {} has {}",
        show(order.amount_total, order.currency.as_deref()),
        event.event_type,
        event.id,
        show(o.amount_total, o.currency.as_deref()),
    ))
}

/// What a new event does: the answer for whoever delivered it and, when its order must change,
/// the decision. `order` is the order as locked (or as earlier events of the same batch left it);
/// `None` makes an order-moving event an orphan.
fn judge(
    event: &StripeEvent,
    order: Option<&OrderRow>,
    expect_livemode: Option<bool>,
) -> (Applied, Option<Decision>) {
    let Some(order) = order else {
        let applied = Applied {
            orphan: event.moves_orders(),
            anomaly: expect_livemode
                .is_some_and(|want| want != event.livemode)
                .then_some(AnomalyKind::LivemodeMismatch),
            ..Applied::new(false, None)
        };
        return (applied, None);
    };
    let decision = decide(event, order, expect_livemode);
    let mut applied = Applied::new(false, Some(order.id));
    applied.anomaly = decision.anomaly;
    if !decision.changes_order() {
        return (applied, None);
    }
    applied.transition = decision.to.map(|to| (order.status, to));
    (applied, Some(decision))
}

/// Why the ledger could not record an event. The edge maps these to 5xx so that Stripe retries.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("timed out waiting for a database connection")]
    PoolTimeout,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database write failed: {0}")]
    Write(#[from] tokio_postgres::Error),
}

impl LedgerError {
    /// A statement failed on a healthy connection (a constraint, a trigger, a deadlock): the same
    /// events in smaller transactions may succeed.
    pub fn is_statement_failure(&self) -> bool {
        match self {
            Self::Write(e) => e.as_db_error().is_some(),
            Self::PoolTimeout | Self::Unavailable(_) => false,
        }
    }

    /// The same failure, for each of the requests that shared the transaction.
    pub fn shared(&self) -> Self {
        match self {
            Self::PoolTimeout => Self::PoolTimeout,
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::Write(e) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<PoolError> for LedgerError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(_) => Self::PoolTimeout,
            PoolError::Backend(e) => Self::Unavailable(e.to_string()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// The id of the order an event belongs to: by session id, else `client_reference_id`, else
/// `metadata.order_id`, else payment intent, each a single index probe. The arguments are the SQL
/// expressions of those four keys.
macro_rules! order_lookup_sql {
    ($session:literal, $client_ref:literal, $metadata_ref:literal, $payment_intent:literal) => {
        concat!(
            "COALESCE(
    (SELECT o.id FROM orders AS o WHERE o.stripe_session_id = ",
            $session,
            "),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $client_ref,
            "),
    (SELECT o.id FROM orders AS o WHERE o.id = ",
            $metadata_ref,
            "),
    (SELECT o.id FROM orders AS o WHERE o.stripe_payment_intent_id = ",
            $payment_intent,
            " LIMIT 1))"
        )
    };
}
use order_lookup_sql;

/// Locks the order an event belongs to, found by its keys $1–$4 (see `order_lookup_sql!`).
macro_rules! lock_order_sql {
    () => {
        concat!(
            "SELECT id, status, amount_total, currency, stripe_payment_intent_id
FROM orders
WHERE id = ",
            order_lookup_sql!("$1", "$2", "$3", "$4"),
            "
FOR UPDATE"
        )
    };
}

/// Locks the event's order and inserts the event; one row: inserted count, then the order.
#[doc(hidden)]
pub const LOCK_AND_INSERT: &str = concat!(
    "WITH target AS (\n",
    lock_order_sql!(),
    "\n), inserted AS (
    INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id, stripe_session_id,
        order_id, livemode, api_version, stripe_created_at, payload, source, request_id)
    SELECT $5, $6, $7, $1, (SELECT id FROM target), $8, $9, $10, $11::text::jsonb, $12, $13
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       t.id, t.status, t.amount_total, t.currency, t.stripe_payment_intent_id
FROM (VALUES (1)) AS one (x) LEFT JOIN target AS t ON true"
);

/// Writes one order's change (`OrderUpdate`).
#[doc(hidden)]
pub const UPDATE_ORDER: &str = "\
UPDATE orders
SET status = $2,
    paid_at = COALESCE($3, paid_at),
    stripe_payment_intent_id = COALESCE(stripe_payment_intent_id, $4),
    anomaly = COALESCE($5, anomaly),
    updated_at = now()
WHERE id = $1";

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The order change a new event asks for (parameters of `UPDATE_ORDER`).
struct OrderUpdate {
    id: Uuid,
    to: &'static str,
    paid_at: Option<DateTime<Utc>>,
    payment_intent: Option<String>,
    anomaly: Option<String>,
}

impl OrderUpdate {
    fn new(order: &OrderRow, decision: Decision) -> Self {
        Self {
            id: order.id,
            to: decision.to.unwrap_or(order.status).as_str(),
            paid_at: decision.paid_at,
            payment_intent: decision.payment_intent,
            anomaly: decision.order_anomaly,
        }
    }

    fn params(&self) -> [Param<'_>; 5] {
        [
            &self.id,
            &self.to,
            &self.paid_at,
            &self.payment_intent,
            &self.anomaly,
        ]
    }
}

/// The parameters of `LOCK_AND_INSERT` for one event.
struct InsertParams<'a> {
    keys: Keys<'a>,
    event: &'a StripeEvent,
    payload: &'a str,
    source: &'static str,
    request_id: Option<&'a str>,
}

impl<'a> InsertParams<'a> {
    fn new(event: &'a StripeEvent, payload: &'a str, meta: &RecordMeta<'a>) -> Self {
        Self {
            keys: keys(event),
            event,
            payload,
            source: meta.source.as_str(),
            request_id: meta.request_id,
        }
    }

    fn params(&self) -> [Param<'_>; 13] {
        let (k, e) = (&self.keys, self.event);
        [
            &k.session_id,
            &k.client_ref,
            &k.metadata_ref,
            &k.payment_intent,
            &e.id,
            &e.event_type,
            &e.object.id,
            &e.livemode,
            &e.api_version,
            &e.created,
            &self.payload,
            &self.source,
            &self.request_id,
        ]
    }
}

/// The lookup keys of an event, in precedence order (parameters 1–4 of `LOCK_AND_INSERT`).
struct Keys<'a> {
    session_id: Option<&'a str>,
    client_ref: Option<Uuid>,
    metadata_ref: Option<Uuid>,
    payment_intent: Option<&'a str>,
}

fn keys(event: &StripeEvent) -> Keys<'_> {
    let o = &event.object;
    let session_id = event.session_id();
    Keys {
        session_id,
        client_ref: o
            .client_reference_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        metadata_ref: o
            .metadata_order_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        // Only non-session objects (charges) are matched by payment intent.
        payment_intent: if session_id.is_none() {
            o.payment_intent.as_deref()
        } else {
            None
        },
    }
}

/// Turns the row of `LOCK_AND_INSERT` into what happened and the order change to make.
fn outcome(
    row: &tokio_postgres::Row,
    event: &StripeEvent,
    meta: &RecordMeta<'_>,
) -> (Applied, Option<OrderUpdate>) {
    let inserted: i64 = row.get(0);
    let order = OrderRow::read(row, 1);
    if inserted == 0 {
        return (Applied::new(true, order.map(|o| o.id)), None);
    }
    let (applied, decision) = judge(event, order.as_ref(), meta.expect_livemode);
    let update = order
        .zip(decision)
        .map(|(order, decision)| OrderUpdate::new(&order, decision));
    (applied, update)
}

/// Records one event in its own transaction; returns only after `COMMIT`.
///
/// Two round trips: `BEGIN` is pipelined with the lock-and-insert statement, and the order
/// `UPDATE` (when there is one) with `COMMIT`. If this future is dropped or fails while the
/// transaction is open, the connection is discarded rather than returned to the pool.
pub async fn record(
    pool: &Pool,
    event: &StripeEvent,
    payload: &str,
    meta: &RecordMeta<'_>,
) -> Result<Applied, LedgerError> {
    let conn = OpenTransaction {
        client: Some(pool.get().await?),
    };
    let client = conn.client()?;
    let insert = client.prepare_cached(LOCK_AND_INSERT).await?;
    let insert_params = InsertParams::new(event, payload, meta);
    let params = insert_params.params();
    let (begin, row) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query_one(&insert, &params)
    );
    begin?;
    let (applied, update) = outcome(&row?, event, meta);
    match update {
        None => client.batch_execute("COMMIT").await?,
        Some(u) => {
            let stmt = client.prepare_cached(UPDATE_ORDER).await?;
            let params = u.params();
            let (updated, commit) = tokio::join!(
                client.execute(&stmt, &params),
                client.batch_execute("COMMIT")
            );
            // A failed UPDATE turns the pipelined COMMIT into a rollback: report the UPDATE's error.
            updated?;
            commit?;
        }
    }
    conn.committed();
    Ok(applied)
}

/// A pooled connection with a transaction that may be open. Unless [`OpenTransaction::committed`]
/// is called, dropping it discards the connection so that an unfinished transaction never goes back
/// to the pool.
struct OpenTransaction {
    client: Option<deadpool_postgres::Object>,
}

impl OpenTransaction {
    fn client(&self) -> Result<&deadpool_postgres::Object, LedgerError> {
        self.client
            .as_ref()
            .ok_or_else(|| LedgerError::Unavailable("connection already released".into()))
    }

    fn committed(mut self) {
        // Back to the pool, clean.
        drop(self.client.take());
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Applies one event inside the caller's transaction (the caller commits).
pub async fn apply(
    tx: &Transaction<'_>,
    event: &StripeEvent,
    payload: &str,
    meta: &RecordMeta<'_>,
) -> Result<Applied, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(LOCK_AND_INSERT).await?;
    let row = tx
        .query_one(&stmt, &InsertParams::new(event, payload, meta).params())
        .await?;
    let (applied, update) = outcome(&row, event, meta);
    if let Some(u) = update {
        let stmt = tx.prepare_cached(UPDATE_ORDER).await?;
        tx.execute(&stmt, &u.params()).await?;
    }
    Ok(applied)
}

const ORPHANS: &str = "\
SELECT id, payload::text FROM payment_events
WHERE order_id IS NULL AND event_type = ANY($1) AND stripe_created_at > now() - interval '30 days'
ORDER BY stripe_created_at, id
LIMIT $2";

const LOCK_ORDER: &str = lock_order_sql!();

const LINK_EVENT: &str = "UPDATE payment_events SET order_id = $2 WHERE id = $1";

/// What adopting orphans did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Orphan events now linked to an order.
    pub linked: u64,
    /// Order transitions those events made.
    pub transitions: Vec<(OrderStatus, OrderStatus)>,
}

/// Links orphan events (stored before their order existed) to the order that now matches, oldest
/// first, and applies the state machine to it, inside the caller's transaction.
pub async fn adopt_orphans(
    tx: &Transaction<'_>,
    expect_livemode: Option<bool>,
    limit: i64,
) -> Result<Adopted, tokio_postgres::Error> {
    let types: Vec<&str> = types::ORDER_TYPES.to_vec();
    let orphans = tx
        .query(&tx.prepare_cached(ORPHANS).await?, &[&types, &limit])
        .await?;
    let mut adopted = Adopted::default();
    for row in orphans {
        let (row_id, payload): (i64, &str) = (row.get(0), row.get(1));
        let Ok(event) = StripeEvent::parse(payload.as_bytes()) else {
            continue;
        };
        let k = keys(&event);
        let lock = tx.prepare_cached(LOCK_ORDER).await?;
        let Some(found) = tx
            .query_opt(
                &lock,
                &[
                    &k.session_id,
                    &k.client_ref,
                    &k.metadata_ref,
                    &k.payment_intent,
                ],
            )
            .await?
        else {
            continue;
        };
        let Some(order) = OrderRow::read(&found, 0) else {
            continue;
        };
        let (applied, decision) = judge(&event, Some(&order), expect_livemode);
        if let Some(decision) = decision {
            adopted.transitions.extend(applied.transition);
            let update = OrderUpdate::new(&order, decision);
            tx.execute(&tx.prepare_cached(UPDATE_ORDER).await?, &update.params())
                .await?;
        }
        tx.execute(&tx.prepare_cached(LINK_EVENT).await?, &[&row_id, &order.id])
            .await?;
        adopted.linked += 1;
    }
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::event::EventObject;
    use OrderStatus::*;

    fn event(kind: &str, payment_status: Option<&str>) -> StripeEvent {
        StripeEvent {
            id: "evt_1".into(),
            event_type: kind.into(),
            created: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            livemode: false,
            api_version: None,
            object: EventObject {
                kind: Some(
                    if kind.starts_with("charge") {
                        "charge"
                    } else {
                        "checkout.session"
                    }
                    .into(),
                ),
                id: Some("cs_1".into()),
                payment_status: payment_status.map(Into::into),
                amount_total: Some(1000),
                currency: Some("eur".into()),
                payment_intent: Some("pi_1".into()),
                fully_refunded: true,
                ..EventObject::default()
            },
        }
    }

    fn order(status: OrderStatus) -> OrderRow {
        OrderRow {
            id: Uuid::nil(),
            status,
            amount_total: None,
            currency: None,
            payment_intent: None,
        }
    }

    #[test]
    fn state_machine_table() {
        let cases: &[(&str, Option<&str>, OrderStatus, Option<OrderStatus>)] = &[
            (types::SESSION_COMPLETED, Some("paid"), Pending, Some(Paid)),
            (
                types::SESSION_COMPLETED,
                Some("no_payment_required"),
                Pending,
                Some(Paid),
            ),
            (types::SESSION_COMPLETED, Some("paid"), Failed, Some(Paid)),
            (types::SESSION_COMPLETED, Some("paid"), Expired, Some(Paid)),
            (types::SESSION_COMPLETED, Some("paid"), Paid, None),
            (types::SESSION_COMPLETED, Some("paid"), Refunded, None),
            (types::SESSION_COMPLETED, Some("unpaid"), Pending, None),
            (types::SESSION_ASYNC_SUCCEEDED, None, Pending, Some(Paid)),
            (types::SESSION_ASYNC_SUCCEEDED, None, Failed, Some(Paid)),
            (types::SESSION_ASYNC_SUCCEEDED, None, Expired, None),
            (types::SESSION_ASYNC_FAILED, None, Pending, Some(Failed)),
            (types::SESSION_ASYNC_FAILED, None, Paid, None),
            (types::SESSION_EXPIRED, None, Pending, Some(Expired)),
            (types::SESSION_EXPIRED, None, Paid, None),
            (types::CHARGE_REFUNDED, None, Paid, Some(Refunded)),
            (types::CHARGE_REFUNDED, None, Pending, None),
            ("customer.created", None, Pending, None),
        ];
        for (kind, ps, from, want) in cases {
            let d = decide(&event(kind, *ps), &order(*from), None);
            assert_eq!(d.to, *want, "{kind} {ps:?} from {from}");
            assert_eq!(d.paid_at.is_some(), *want == Some(Paid));
        }
    }

    #[test]
    fn partial_refund_does_not_refund_the_order() {
        let mut e = event(types::CHARGE_REFUNDED, None);
        e.object.fully_refunded = false;
        assert_eq!(decide(&e, &order(Paid), None).to, None);
    }

    #[test]
    fn amount_and_currency_are_guarded() {
        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let mut o = order(Pending);
        o.amount_total = Some(1000);
        o.currency = Some("EUR".into());
        assert_eq!(decide(&e, &o, None).to, Some(Paid));
        o.amount_total = Some(999);
        let d = decide(&e, &o, None);
        assert_eq!(d.to, None);
        assert_eq!(d.anomaly, Some(AnomalyKind::AmountMismatch));
        assert!(
            d.order_anomaly
                .as_deref()
                .is_some_and(|t| t.contains("999 EUR"))
        );
        o.amount_total = Some(1000);
        o.currency = Some("usd".into());
        assert_eq!(
            decide(&e, &o, None).anomaly,
            Some(AnomalyKind::AmountMismatch)
        );
    }

    #[test]
    fn other_mode_changes_nothing() {
        let e = event(types::SESSION_COMPLETED, Some("paid"));
        let d = decide(&e, &order(Pending), Some(true));
        assert_eq!(d.to, None);
        assert_eq!(d.anomaly, Some(AnomalyKind::LivemodeMismatch));
        assert!(!d.changes_order());
        assert_eq!(decide(&e, &order(Pending), Some(false)).to, Some(Paid));
    }

    #[test]
    fn payment_intent_is_recorded_once() {
        let e = event(types::SESSION_COMPLETED, Some("unpaid"));
        assert_eq!(
            decide(&e, &order(Pending), None).payment_intent.as_deref(),
            Some("pi_1")
        );
        let mut o = order(Pending);
        o.payment_intent = Some("pi_0".into());
        assert_eq!(decide(&e, &o, None).payment_intent, None);
    }
}
