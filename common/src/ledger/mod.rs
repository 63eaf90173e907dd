//! The ledger: the one way verified Stripe events are written. Each event goes to `payment_events`
//! and its order's new state in the same transaction; the edge (source `webhook`), the reconciler
//! (`reconciler`) and a manual session reconcile (`manual`) all go through it, and one event is
//! simply a batch of one.
//!
//! # Layout
//! - this file: the types every caller sees (sources, statuses, answers, errors).
//! - [`decide`]: the pure state machine and the lookup keys of an event, with their table tests.
//! - `sql`: every statement the ledger runs, written once.
//! - `plan`: folds the state machine over a batch, in order, into the writes to make.
//! - [`write`]: the I/O: a batch sent in its own transaction (two stages: sent, then committed) or
//!   applied inside the caller's, and the connection guard that never reuses a half-written one.
//! - [`orphans`]: linking events stored before their order existed.
//! - [`lookup`]: the read-only queries callers share (known event ids, an event's order).

use std::fmt;

use deadpool_postgres::PoolError;
use uuid::Uuid;

use crate::stripe::event::StripeEvent;

pub mod decide;
pub mod lookup;
pub mod orphans;
mod plan;
mod sql;
pub mod write;

pub use decide::{Decision, decide};
pub use lookup::{find_order, known_event_ids};
pub use orphans::{Adopted, adopt_orphans};
pub use write::{LedgerConnection, PendingCommit, apply_batch, record_batch};

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

/// The `kind` label of the anomaly counters.
impl crate::metrics::Label for AnomalyKind {
    const KEY: &'static str = "kind";
    const COUNT: usize = Self::ALL.len();
    fn index(self) -> usize {
        self as usize
    }
    fn all() -> Vec<Self> {
        Self::ALL.to_vec()
    }
    fn value(self) -> String {
        self.as_str().to_owned()
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
}

impl Applied {
    /// Nothing happened to an order (yet).
    pub fn new(duplicate: bool, order_id: Option<Uuid>) -> Self {
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
    pub fn read(row: &tokio_postgres::Row, at: usize) -> Option<Self> {
        Some(Self {
            id: row.get::<_, Option<Uuid>>(at)?,
            status: OrderStatus::parse(row.get::<_, &str>(at + 1)).unwrap_or(OrderStatus::Pending),
            amount_total: row.get(at + 2),
            currency: row.get(at + 3),
            payment_intent: row.get(at + 4),
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
