//! The outbox's delivery state in `order_transitions`: claiming the next notification (the
//! oldest due one whose order has nothing earlier undelivered, locked with `SKIP LOCKED` so that
//! replicas share the work and none delivers a row twice at once), recording how an attempt
//! ended, the backlog the gauges show, and queueing rows again (`redeliver`).

use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::payload::{COLUMNS, Notification};

/// The next notification to deliver, locked for the caller's transaction ($1: the livemode to
/// deliver, NULL for both). A row waits for every earlier undelivered row of its order.
fn claim_sql() -> String {
    format!(
        "SELECT {COLUMNS}
FROM order_transitions AS t
WHERE t.delivered_at IS NULL AND t.dead_at IS NULL AND t.next_attempt_at <= now()
  AND ($1::bool IS NULL OR t.livemode = $1)
  AND NOT EXISTS (
      SELECT 1 FROM order_transitions AS e
      WHERE e.order_id = t.order_id AND e.id < t.id
        AND e.delivered_at IS NULL AND e.dead_at IS NULL
        AND ($1::bool IS NULL OR e.livemode = $1))
ORDER BY t.next_attempt_at, t.id
LIMIT 1
FOR UPDATE OF t SKIP LOCKED"
    )
}

/// How an attempt ended, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Delivered,
    /// Try again after this delay.
    Retry {
        after: Duration,
        error: String,
    },
    /// Past APP_NOTIFY_MAX_AGE: no more attempts until redelivered.
    Dead {
        error: String,
    },
}

/// Records an attempt's end ($1: the row; $2 delivered, $3 dead, $4 seconds to the next attempt,
/// $5 the error). The clock, not `now()`: the transaction began before the attempt did.
const RECORD: &str = "\
UPDATE order_transitions
SET attempts = attempts + 1,
    delivered_at = CASE WHEN $2 THEN clock_timestamp() END,
    dead_at = CASE WHEN $3 THEN clock_timestamp() END,
    next_attempt_at = clock_timestamp() + make_interval(secs => $4),
    last_error = $5
WHERE id = $1";

/// Claims the next due notification in `tx` (the row stays locked until `tx` ends).
pub async fn claim(
    tx: &Transaction<'_>,
    livemode: Option<bool>,
) -> Result<Option<Notification>, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(&claim_sql()).await?;
    Ok(tx
        .query_opt(&stmt, &[&livemode])
        .await?
        .map(|row| Notification::read(&row)))
}

/// Records how the attempt on `row_id` ended.
pub async fn record(
    tx: &Transaction<'_>,
    row_id: i64,
    ended: &Ended,
) -> Result<(), tokio_postgres::Error> {
    let (delivered, dead, after, error) = match ended {
        Ended::Delivered => (true, false, 0.0, None),
        Ended::Retry { after, error } => (false, false, after.as_secs_f64(), Some(error.as_str())),
        Ended::Dead { error } => (false, true, 0.0, Some(error.as_str())),
    };
    let stmt = tx.prepare_cached(RECORD).await?;
    tx.execute(&stmt, &[&row_id, &delivered, &dead, &after, &error])
        .await?;
    Ok(())
}

/// What is waiting, for the gauges: the age in seconds of the oldest undelivered notification
/// (0 when none), how many are undelivered, how many are dead.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub lag_seconds: f64,
    pub pending: i64,
    pub dead: i64,
}

pub async fn backlog(
    client: &impl GenericClient,
    livemode: Option<bool>,
) -> Result<Backlog, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - min(t.queued_at)
                        FILTER (WHERE t.delivered_at IS NULL AND t.dead_at IS NULL)), 0)::float8,
                    count(*) FILTER (WHERE t.delivered_at IS NULL AND t.dead_at IS NULL),
                    (SELECT count(*) FROM order_transitions AS d
                     WHERE d.dead_at IS NOT NULL AND ($1::bool IS NULL OR d.livemode = $1))
             FROM order_transitions AS t
             WHERE t.delivered_at IS NULL AND t.dead_at IS NULL
               AND ($1::bool IS NULL OR t.livemode = $1)",
            &[&livemode],
        )
        .await?;
    Ok(Backlog {
        lag_seconds: row.get::<_, f64>(0).max(0.0),
        pending: row.get(1),
        dead: row.get(2),
    })
}

/// Which notifications to queue again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeliver {
    /// One notification, by its row id.
    Transition(i64),
    /// Every notification of one order, delivered or not.
    Order(Uuid),
    /// Every dead notification.
    Dead,
}

/// Queues the chosen notifications for delivery again, as if new (attempts kept, the age reset),
/// and wakes the deliverers; returns how many were queued.
pub async fn redeliver(
    client: &impl GenericClient,
    which: &Redeliver,
) -> Result<u64, tokio_postgres::Error> {
    let set = "UPDATE order_transitions SET delivered_at = NULL, dead_at = NULL, \
               next_attempt_at = now(), queued_at = now() WHERE ";
    let queued = match which {
        Redeliver::Transition(id) => client.execute(&format!("{set}id = $1"), &[id]).await?,
        Redeliver::Order(order) => {
            client
                .execute(&format!("{set}order_id = $1"), &[order])
                .await?
        }
        Redeliver::Dead => {
            client
                .execute(&format!("{set}dead_at IS NOT NULL"), &[])
                .await?
        }
    };
    if queued > 0 {
        client
            .execute(
                "SELECT pg_notify($1, '')",
                &[&common::ledger::outbox::CHANNEL],
            )
            .await?;
    }
    Ok(queued)
}

/// One notification as support sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub from: Option<String>,
    pub to: String,
    pub stripe_event_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: i32,
    /// `delivered`, `dead`, `pending` (never tried) or `retrying`.
    pub state: &'static str,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub dead_at: Option<chrono::DateTime<chrono::Utc>>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
}

/// An order's notifications, oldest first.
pub async fn of_order(
    client: &impl GenericClient,
    order: Uuid,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, kind, from_status, to_status, stripe_event_id, created_at, attempts,
                    delivered_at, dead_at, next_attempt_at, last_error
             FROM order_transitions WHERE order_id = $1 ORDER BY id",
            &[&order],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let attempts: i32 = r.get(6);
            let delivered_at: Option<chrono::DateTime<chrono::Utc>> = r.get(7);
            let dead_at: Option<chrono::DateTime<chrono::Utc>> = r.get(8);
            let state = match (delivered_at, dead_at, attempts) {
                (Some(_), _, _) => "delivered",
                (_, Some(_), _) => "dead",
                (_, _, 0) => "pending",
                _ => "retrying",
            };
            Delivery {
                id: super::payload::public_id(r.get(0)),
                kind: r.get(1),
                from: r.get(2),
                to: r.get(3),
                stripe_event_id: r.get(4),
                created_at: r.get(5),
                attempts,
                state,
                delivered_at,
                dead_at,
                next_attempt_at: (state == "pending" || state == "retrying").then(|| r.get(9)),
                last_error: r.get(10),
            }
        })
        .collect())
}
