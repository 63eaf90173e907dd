//! Orphans: order-moving events stored before their order existed (`order_id` NULL). When the
//! order appears, they are linked to it and the state machine is applied, through the same fold
//! and the same writes as a batch of new events.

use deadpool_postgres::GenericClient;

use super::plan::{Columns, Found, Plan};
use super::write::Statements;
use super::{BatchEntry, LedgerError, OrderRow, OrderStatus, Source, sql};
use crate::stripe::event::{StripeEvent, types};

/// What adopting orphans did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Orphan events now linked to an order.
    pub linked: u64,
    /// Order transitions those events made.
    pub transitions: Vec<(OrderStatus, OrderStatus)>,
}

/// Links orphan events to the order that now matches, oldest first (at most `limit` of them), and
/// applies the state machine to it, inside the caller's transaction.
pub async fn adopt_orphans<C: GenericClient>(
    client: &C,
    expect_livemode: Option<bool>,
    limit: i64,
) -> Result<Adopted, LedgerError> {
    let types: Vec<&str> = types::ORDER_TYPES.to_vec();
    let stmt = client.prepare_cached(sql::ORPHANS).await?;
    let rows = client.query(&stmt, &[&types, &limit]).await?;
    let payloads: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    let events: Vec<StripeEvent> = payloads
        .iter()
        .filter_map(|p| StripeEvent::parse(p.as_bytes()).ok())
        .collect();
    if events.is_empty() {
        return Ok(Adopted::default());
    }
    let entries: Vec<BatchEntry<'_>> = events
        .iter()
        .map(|event| BatchEntry {
            event,
            payload: "",
            request_id: None,
        })
        .collect();
    let columns = Columns::new(&entries, Source::Reconciler);
    let stmt = client.prepare_cached(sql::LOCK_ORDERS).await?;
    let found: Vec<Found> = client
        .query(&stmt, &columns.lookup_params())
        .await?
        .iter()
        .map(|row| Found {
            new: true,
            order: OrderRow::read(row, 0),
            linked: false,
        })
        .collect();
    let plan = Plan::fold(&entries, &columns, &found, expect_livemode);
    let writes = plan.writes();
    Statements::prepare(client, &writes)
        .await?
        .send(client, writes)
        .await?;
    Ok(Adopted {
        linked: plan.applied.iter().filter(|a| a.order_id.is_some()).count() as u64,
        transitions: plan.applied.iter().filter_map(|a| a.transition).collect(),
    })
}
