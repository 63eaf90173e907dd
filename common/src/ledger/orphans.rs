//! Orphans: order-moving events stored before their order existed (`order_id` NULL). When their
//! order appears, they are linked to it and the state machine is applied, through the same fold
//! and the same writes as a batch of new events.
//!
//! They are found from the orders' side: the orders created or changed since the last pass (or
//! the orders given) are joined to the orphans through each key's index, so a pass costs the same
//! whether there are a hundred or a million orphans that no order will ever claim.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::connection::Statements;
use super::params::Columns;
use super::plan::{Found, Plan};
use super::{BatchEntry, LedgerError, OrderStatus, Source, sql};
use crate::stripe::event::StripeEvent;

/// Which orders may claim orphans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimants {
    /// Orders created or changed at or after this time.
    pub changed_since: DateTime<Utc>,
    /// And these orders, whenever they changed.
    pub orders: Vec<Uuid>,
}

/// What adopting orphans did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Orphan events now linked to an order.
    pub linked: u64,
    /// Order transitions those events made.
    pub transitions: Vec<(OrderStatus, OrderStatus)>,
    /// Every orphan the claimants matched was looked at: none was left for a later call because
    /// its order was locked elsewhere or the limit was reached. Until then, the next call must
    /// ask with the same claimants (their orders may not change again).
    pub complete: bool,
}

/// Links the orphans that `claimants` now match (at most `limit`, oldest first) to their order,
/// and applies the state machine to it, inside the caller's transaction. An orphan whose order is
/// locked elsewhere, or that names another session's order, stays an orphan.
pub async fn adopt_orphans<C: GenericClient>(
    client: &C,
    claimants: &Claimants,
    expect_livemode: Option<bool>,
    limit: i64,
) -> Result<Adopted, LedgerError> {
    let stmt = client.prepare_cached(sql::CLAIMABLE_ORPHANS).await?;
    let rows = client
        .query(
            &stmt,
            &[&claimants.changed_since, &claimants.orders, &limit],
        )
        .await?;
    let payloads: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    let events: Vec<StripeEvent> = payloads
        .iter()
        .filter_map(|p| StripeEvent::parse_str(p).ok())
        .collect();
    let full = rows.len() as i64 >= limit;
    if events.is_empty() {
        return Ok(Adopted {
            complete: !full,
            ..Adopted::default()
        });
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
        .map(|row| {
            let mut found = Found::read(row, 0, true, false);
            if found.mismatch {
                // Recorded when the event was stored, if its order existed; never re-judged.
                found.mismatch = false;
                found.order = None;
            }
            found
        })
        .collect();
    let busy = found.iter().any(|f| f.busy);
    let mut plan = Plan::fold(&entries, &columns, &found, expect_livemode);
    let writes = plan.writes();
    let changes = Statements::prepare(client, None, &writes)
        .await?
        .send(client, writes)
        .await?;
    plan.absorb_money(&changes);
    let applied = plan.applied.iter().flatten();
    Ok(Adopted {
        linked: applied.clone().filter(|a| a.order_id.is_some()).count() as u64,
        transitions: applied.filter_map(|a| a.transition).collect(),
        complete: !busy && !full,
    })
}
