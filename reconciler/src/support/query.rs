//! The support overview's reads: recent passes and sweeps, open orphans, orders with anomalies,
//! notifications not delivered, open disputes (each bounded), and the order of a payment intent,
//! refund or dispute id typed in the search box. Every value is a bound parameter.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// How many rows each overview table shows.
pub const OVERVIEW_ROWS: i64 = 25;

pub struct RunRow {
    pub id: i64,
    pub trigger: String,
    pub scope: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub missing: i32,
    pub backfilled: i32,
    pub error: Option<String>,
}

pub async fn recent_runs<C: GenericClient>(
    client: &C,
) -> Result<Vec<RunRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, trigger, scope, status, started_at, window_from, window_to,
                 events_missing, events_backfilled, error
             FROM reconcile_runs WHERE scope IN ('window', 'sweep')
             ORDER BY id DESC LIMIT $1",
            &[&OVERVIEW_ROWS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunRow {
            id: r.get(0),
            trigger: r.get(1),
            scope: r.get(2),
            status: r.get(3),
            started_at: r.get(4),
            window_from: r.get(5),
            window_to: r.get(6),
            missing: r.get(7),
            backfilled: r.get(8),
            error: r.get(9),
        })
        .collect())
}

/// (event id, type, session id, received) of the newest events kept with no order.
pub async fn orphans<C: GenericClient>(
    client: &C,
) -> Result<(i64, Vec<(String, String, Option<String>, DateTime<Utc>)>), tokio_postgres::Error> {
    let types: Vec<&str> = common::stripe::event::types::ORDER_TYPES.to_vec();
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM payment_events WHERE order_id IS NULL AND event_type = ANY($1)",
            &[&types],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT stripe_event_id, event_type, stripe_session_id, received_at
             FROM payment_events WHERE order_id IS NULL AND event_type = ANY($1)
             ORDER BY stripe_created_at DESC LIMIT $2",
            &[&types, &OVERVIEW_ROWS],
        )
        .await?;
    Ok((
        count,
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
    ))
}

/// (order id, status, anomaly, updated) of the newest orders with an anomaly.
pub async fn anomalies<C: GenericClient>(
    client: &C,
) -> Result<Vec<(Uuid, String, String, DateTime<Utc>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, status, anomaly, updated_at FROM orders WHERE anomaly IS NOT NULL
             ORDER BY updated_at DESC LIMIT $1",
            &[&OVERVIEW_ROWS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// (notification id number, order id, kind, attempts, dead, last error) of notifications not
/// delivered, oldest first. Those still queued and the dead ones are read apart, each through its
/// partial index: `delivered_at IS NULL` alone would scan every notification ever sent.
pub async fn undelivered<C: GenericClient>(
    client: &C,
) -> Result<Vec<(i64, Uuid, String, i32, bool, Option<String>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, order_id, kind, attempts, dead, last_error FROM (
                 (SELECT id, order_id, kind, attempts, false AS dead, last_error
                  FROM order_transitions WHERE delivered_at IS NULL AND dead_at IS NULL
                  ORDER BY id LIMIT $1)
                 UNION ALL
                 (SELECT id, order_id, kind, attempts, true, last_error
                  FROM order_transitions WHERE dead_at IS NOT NULL
                  ORDER BY id LIMIT $1)
             ) AS u ORDER BY id LIMIT $1",
            &[&OVERVIEW_ROWS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect())
}

/// (dispute id, order id, status, reason, amount, currency, evidence due) of open disputes, the
/// nearest deadline first.
#[allow(clippy::type_complexity)]
pub async fn open_disputes<C: GenericClient>(
    client: &C,
) -> Result<
    Vec<(
        String,
        Uuid,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<DateTime<Utc>>,
    )>,
    tokio_postgres::Error,
> {
    let rows = client
        .query(
            "SELECT id, order_id, status, reason, amount, currency, evidence_due_by FROM disputes
             WHERE status IN ('warning_needs_response', 'needs_response', 'warning_under_review',
                 'under_review')
             ORDER BY evidence_due_by NULLS LAST LIMIT $1",
            &[&OVERVIEW_ROWS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect())
}

/// The order of a payment intent, refund or dispute id.
pub async fn order_of_object<C: GenericClient>(
    client: &C,
    id: &str,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id FROM orders WHERE stripe_payment_intent_id = $1
             UNION ALL SELECT order_id FROM refunds WHERE id = $1
             UNION ALL SELECT order_id FROM disputes WHERE id = $1
             LIMIT 1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
