//! Orders as support sees them: found through the ledger's own lookup (the same keys, in the same
//! order, as when an event is recorded), and read into one view that `session` and `inspect` both
//! show.

use chrono::{DateTime, Utc};
use common::ledger::{self, OrderStatus, decide::Keys};
use common::stripe::session::CheckoutSession;
use deadpool_postgres::GenericClient;
use serde::Serialize;
use uuid::Uuid;

/// An order as the verdicts and timelines show it. Times are RFC 3339, UTC.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: Uuid,
    pub status: OrderStatus,
    pub stripe_session_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub anomaly: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The sum of its succeeded refunds.
    pub amount_refunded: i64,
    /// The status of its newest dispute, if it has one.
    pub dispute_status: Option<String>,
}

/// The order an event with these keys belongs to, as the ledger would find it.
pub async fn find<C: GenericClient>(
    client: &C,
    keys: &Keys<'_>,
) -> Result<Option<OrderView>, tokio_postgres::Error> {
    match ledger::find_order(client, keys).await? {
        Some(order) => view(client, order.id).await,
        None => Ok(None),
    }
}

/// The order with this id.
pub async fn view<C: GenericClient>(
    client: &C,
    id: Uuid,
) -> Result<Option<OrderView>, tokio_postgres::Error> {
    let row = client
        .query_opt(&format!("{SELECT_VIEW} WHERE id = $1"), &[&id])
        .await?;
    Ok(row.map(read))
}

/// The order whose Checkout Session is `session_id` (the app's own link, `stripe_session_id`).
pub async fn by_session<C: GenericClient>(
    client: &C,
    session_id: &str,
) -> Result<Option<OrderView>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("{SELECT_VIEW} WHERE stripe_session_id = $1"),
            &[&session_id],
        )
        .await?;
    Ok(row.map(read))
}

const SELECT_VIEW: &str = "SELECT id, status, stripe_session_id, amount_total, currency, \
    paid_at, anomaly, created_at, amount_refunded, dispute_status FROM orders";

fn read(r: tokio_postgres::Row) -> OrderView {
    OrderView {
        id: r.get(0),
        status: OrderStatus::parse(r.get(1)).unwrap_or(OrderStatus::Pending),
        stripe_session_id: r.get(2),
        amount_total: r.get(3),
        currency: r.get(4),
        paid_at: r.get(5),
        anomaly: r.get(6),
        created_at: r.get(7),
        amount_refunded: r.get(8),
        dispute_status: r.get(9),
    }
}

/// The keys that find the order of a Checkout Session.
pub fn session_keys(session: &CheckoutSession) -> Keys<'_> {
    Keys {
        session_id: Some(&session.id),
        client_ref: session.client_reference_order(),
        metadata_ref: session.metadata_order(),
        payment_intent: None,
    }
}
