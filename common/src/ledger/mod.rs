//! The ledger: the one way verified Stripe events are written. Each event goes to `payment_events`
//! and its order's new state in the same transaction; the edge (source `webhook`), the reconciler
//! (`reconciler`) and a manual session reconcile (`manual`) all go through it, and one event is
//! simply a batch of one.
//!
//! # Layout
//! - this file: the types every caller sees (sources, statuses, answers, errors).
//! - [`decide`]: the pure state machine and the lookup keys of an event, with their table tests.
//! - `sql`: every statement the ledger runs, written once.
//! - `plan`: folds the state machine over a batch, in order, into the writes to make; `params`: the
//!   array parameters of the batch statements.
//! - [`write`]: the one write: a batch sent in its own transaction (two stages: sent, then
//!   recorded, with the retries of a failed batch).
//! - `connection`: the connection guard that never reuses a half-written transaction, and the two
//!   stages of a batch on it.
//! - [`orphans`]: linking events stored before their order existed.
//! - [`money`]: refunds, disputes and refunded charges: the snapshots an event carries, applied
//!   by the database function `ledger_apply_money`.
//! - [`outbox`]: order notifications: which one each transition is, the channel that wakes the
//!   deliverers.
//! - [`lookup`]: the read-only queries callers share (known event ids, an event's order).
//! - [`status`]: status queries a binary exports as gauges (the last successful pass).

use std::fmt;
use std::sync::Arc;

use deadpool_postgres::PoolError;
use uuid::Uuid;

use crate::stripe::event::StripeEvent;

mod connection;
pub mod decide;
pub mod lookup;
pub mod money;
pub mod orphans;
pub mod outbox;
mod params;
mod plan;
mod sql;
pub mod status;
pub mod write;

pub use connection::LedgerConnection;
pub use decide::{Decision, decide};
pub use lookup::{find_order, known_event_ids, lacking};
pub use orphans::{Adopted, Claimants, adopt_orphans};
pub use write::{Recorded, Sent, record};

/// Who delivered the event (`payment_events.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Reconciler,
    Manual,
    /// The object-level sweep: a synthetic event made from an object Stripe listed.
    Sweep,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Reconciler => "reconciler",
            Self::Manual => "manual",
            Self::Sweep => "sweep",
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
    PartiallyRefunded,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        Self::Pending,
        Self::Paid,
        Self::Failed,
        Self::Expired,
        Self::PartiallyRefunded,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The order was paid: `paid`, or moved on from it by a refund.
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Paid | Self::PartiallyRefunded | Self::Refunded)
    }

    /// No event moves the order back to pending, failed or expired any more: a success page
    /// that sees it need not ask Stripe.
    pub fn is_final(self) -> bool {
        self.is_paid()
    }
}

impl serde::Serialize for OrderStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every transition the state machine can make (metric labels are registered from this): the
/// payment's, then the refunds' (which can also take an order back towards `paid`).
pub const TRANSITIONS: [(OrderStatus, OrderStatus); 11] = [
    (OrderStatus::Pending, OrderStatus::Paid),
    (OrderStatus::Failed, OrderStatus::Paid),
    (OrderStatus::Expired, OrderStatus::Paid),
    (OrderStatus::Pending, OrderStatus::Failed),
    (OrderStatus::Pending, OrderStatus::Expired),
    (OrderStatus::Paid, OrderStatus::PartiallyRefunded),
    (OrderStatus::Paid, OrderStatus::Refunded),
    (OrderStatus::PartiallyRefunded, OrderStatus::Refunded),
    (OrderStatus::PartiallyRefunded, OrderStatus::Paid),
    (OrderStatus::Refunded, OrderStatus::PartiallyRefunded),
    (OrderStatus::Refunded, OrderStatus::Paid),
];

crate::label! {
    /// Something wrong with an event that is kept but must not move the order; the label values
    /// are the `kind` of the anomaly counters and `orders.anomaly`.
    pub enum AnomalyKind: "kind" {
        /// The session's amount or currency differs from what the order expects.
        AmountMismatch = "amount_mismatch",
        /// A test-mode event reached a live edge, or the reverse (`STRIPE_EXPECT_LIVEMODE`).
        LivemodeMismatch = "livemode_mismatch",
        /// A session's event names (by `client_reference_id` or `metadata.order_id`) an order that
        /// has another session.
        SessionMismatch = "session_mismatch",
        /// A field the state machine needs cannot be read.
        Unreadable = "unreadable",
    }
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
    /// The refund or dispute the event carried, when it was applied to its order.
    pub money: Option<money::MoneySeen>,
}

/// An order transition as logged: `pending->paid`.
pub struct TransitionText(pub OrderStatus, pub OrderStatus);

impl fmt::Display for TransitionText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.0, self.1)
    }
}

impl Applied {
    /// The order transition, as logged.
    pub fn transition_text(&self) -> Option<TransitionText> {
        self.transition.map(|(from, to)| TransitionText(from, to))
    }

    /// Nothing happened to an order (yet).
    pub fn new(duplicate: bool, order_id: Option<Uuid>) -> Self {
        Self {
            duplicate,
            order_id,
            transition: None,
            orphan: false,
            anomaly: None,
            money: None,
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
    /// The sum of its succeeded refunds (`orders.amount_refunded`).
    pub amount_refunded: i64,
}

impl OrderRow {
    /// The order columns (id, status, amount_total, currency, payment intent, amount refunded) of
    /// a row, from column `at` on; `None` when the id is NULL (the event has no order).
    pub fn read(row: &tokio_postgres::Row, at: usize) -> Option<Self> {
        Some(Self {
            id: row.get::<_, Option<Uuid>>(at)?,
            status: OrderStatus::parse(row.get::<_, &str>(at + 1)).unwrap_or(OrderStatus::Pending),
            amount_total: row.get(at + 2),
            currency: row.get(at + 3),
            payment_intent: row.get(at + 4),
            amount_refunded: row.get::<_, Option<i64>>(at + 5).unwrap_or(0),
        })
    }
}

/// One event to record.
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

/// An event left out of its batch because another transaction holds its order's row lock (a
/// long transaction of the app, a support session, a DDL): nothing of it was written, and its
/// sender should retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBusy;

/// Why the ledger could not record an event. The edge maps these to 5xx so that Stripe retries.
/// Clonable, so that every request of a failed batch gets the same error; the Postgres error is
/// kept whole, and its text shows the server's SQLSTATE and message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("timed out waiting for a database connection")]
    PoolTimeout,
    #[error("no database connection: {}", crate::error::chain(.0.as_ref()))]
    Connect(#[source] Arc<PoolError>),
    #[error("database write failed: {}", crate::error::postgres(.0))]
    Write(#[source] Arc<tokio_postgres::Error>),
    #[error("the order is locked by another transaction; nothing was written")]
    OrderBusy,
    /// A batch changed an order's status after applying money snapshots to it; nothing was
    /// written, and its events are written one per transaction.
    #[error("the batch mixes an order's refunds or disputes with later status changes")]
    Interleaved,
    #[error("{0}")]
    Stopped(&'static str),
}

impl LedgerError {
    /// A statement failed on a healthy connection (a constraint, a trigger, a deadlock, a lock or
    /// statement timeout): the same events in smaller transactions may succeed.
    pub fn is_statement_failure(&self) -> bool {
        matches!(self, Self::Write(e) if e.as_db_error().is_some())
            || matches!(self, Self::Interleaved)
    }

    /// The statement waited too long for a row lock (`lock_timeout`) or ran too long
    /// (`statement_timeout`).
    pub fn is_timeout(&self) -> bool {
        matches!(self.sqlstate(), Some("55P03" | "57014"))
    }

    /// The database refuses writes (a read-only transaction, a standby).
    pub fn is_read_only(&self) -> bool {
        matches!(self.sqlstate(), Some("25006"))
    }

    /// The SQLSTATE Postgres answered with, if it answered.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Write(e) => crate::error::sqlstate(e),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Write(Arc::new(e))
    }
}

impl From<OrderBusy> for LedgerError {
    fn from(_: OrderBusy) -> Self {
        Self::OrderBusy
    }
}

impl From<PoolError> for LedgerError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(_) => Self::PoolTimeout,
            other => Self::Connect(Arc::new(other)),
        }
    }
}
