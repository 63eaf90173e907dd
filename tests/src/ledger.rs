//! Reads and writes of `orders` and `payment_events` that tests use to arrange and check state.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

pub use sim::app::{NewOrder, insert_order};

/// A pending order for a Checkout Session, with no expected amount: the usual test order.
pub async fn pending_order(db: &Client, session_id: &str) -> Uuid {
    insert_order(
        db,
        NewOrder {
            session_id: Some(session_id.to_owned()),
            ..Default::default()
        },
    )
    .await
}

/// An order's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub status: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub payment_intent: Option<String>,
    pub anomaly: Option<String>,
}

pub async fn order(db: &Client, id: Uuid) -> OrderView {
    let row = db
        .query_one(
            "SELECT status, paid_at, stripe_payment_intent_id, anomaly FROM orders WHERE id = $1",
            &[&id],
        )
        .await
        .expect("order row");
    OrderView {
        status: row.get(0),
        paid_at: row.get(1),
        payment_intent: row.get(2),
        anomaly: row.get(3),
    }
}

/// A ledger row, as support would look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_type: String,
    pub order_id: Option<Uuid>,
    pub session_id: Option<String>,
    pub source: String,
    pub request_id: Option<String>,
    pub livemode: bool,
    pub payload: serde_json::Value,
}

/// The ledger rows of one Stripe event id (0 or 1 of them).
pub async fn event_rows(db: &Client, event_id: &str) -> Vec<EventRow> {
    db.query(
        "SELECT event_type, order_id, stripe_session_id, source, request_id, livemode, payload
         FROM payment_events WHERE stripe_event_id = $1",
        &[&event_id],
    )
    .await
    .expect("ledger rows")
    .iter()
    .map(|r| EventRow {
        event_type: r.get(0),
        order_id: r.get(1),
        session_id: r.get(2),
        source: r.get(3),
        request_id: r.get(4),
        livemode: r.get(5),
        payload: r.get(6),
    })
    .collect()
}

/// Total ledger rows.
pub async fn event_count(db: &Client) -> i64 {
    db.query_one("SELECT count(*) FROM payment_events", &[])
        .await
        .expect("count")
        .get(0)
}

/// How many transactions wrote the ledger rows of these events (distinct `xmin`).
pub async fn writing_transactions(db: &Client, event_ids: &[&str]) -> i64 {
    db.query_one(
        "SELECT count(DISTINCT xmin::text) FROM payment_events WHERE stripe_event_id = ANY($1)",
        &[&event_ids],
    )
    .await
    .expect("xmin")
    .get(0)
}

/// Waits (up to 10 s) until exactly one backend of this database waits for a lock (a row lock or
/// an advisory lock that the test holds); whether it came to that.
pub async fn one_backend_waits_for_a_lock(db: &Client) -> bool {
    crate::http::eventually(std::time::Duration::from_secs(10), || async {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        waiting == 1
    })
    .await
}

/// The outbox as the orders whose session id is `LIKE like` see it: how many have exactly one
/// notification, an `order.paid`, and how many have anything else (none, several, another kind).
pub async fn paid_notifications(db: &Client, like: &str) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE n = 1 AND paid = 1),
                    count(*) FILTER (WHERE NOT (n = 1 AND paid = 1))
             FROM (SELECT o.id, count(t.id) AS n,
                          count(t.id) FILTER (WHERE t.kind = 'order.paid') AS paid
                   FROM orders AS o LEFT JOIN order_transitions AS t ON t.order_id = o.id
                   WHERE o.stripe_session_id LIKE $1
                   GROUP BY o.id) AS x",
            &[&like],
        )
        .await
        .expect("outbox");
    (row.get(0), row.get(1))
}
