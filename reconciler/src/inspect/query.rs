//! The database's side of an inspection: which order and session a target is, the orders a
//! reconcile run touched, and the ledger rows and runs of a timeline. Every statement is fixed
//! text with parameters.

use chrono::{DateTime, Utc};
use common::ledger::decide::Keys;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{EventView, RunView, Target};
use crate::error::Error;
use crate::orders::{self, OrderView};
use crate::runs;

/// The order and session a target is about (either may be unknown).
pub(super) async fn resolve<C: GenericClient>(
    client: &C,
    target: &Target,
) -> Result<(Option<OrderView>, Option<String>), Error> {
    let row =
        match target {
            Target::Order(id) => return Ok((orders::view(client, *id).await?, None)),
            Target::Session(cs) => return Ok((by_session(client, cs).await?, Some(cs.clone()))),
            Target::Event(evt) => {
                client
                    .query_opt(
                        "SELECT order_id, stripe_session_id FROM payment_events
                     WHERE stripe_event_id = $1",
                        &[evt],
                    )
                    .await?
            }
            Target::RequestId(rid) => client
                .query_opt(
                    "SELECT order_id, stripe_session_id FROM payment_events WHERE request_id = $1
                     ORDER BY (order_id IS NULL), id LIMIT 1",
                    &[rid],
                )
                .await?,
        };
    let Some(row) = row else {
        return Ok((None, None));
    };
    let (order_id, session_id): (Option<Uuid>, Option<String>) = (row.get(0), row.get(1));
    let order = match (order_id, &session_id) {
        (Some(id), _) => orders::view(client, id).await?,
        (None, Some(cs)) => by_session(client, cs).await?,
        (None, None) => None,
    };
    Ok((order, session_id))
}

/// The order of a session, found as the ledger finds it.
pub(super) async fn by_session<C: GenericClient>(
    client: &C,
    session_id: &str,
) -> Result<Option<OrderView>, Error> {
    let keys = Keys {
        session_id: Some(session_id),
        client_ref: None,
        metadata_ref: None,
        payment_intent: None,
    };
    Ok(orders::find(client, &keys).await?)
}

/// Every order that the ledger rows written under a reconcile run's request id belong to, oldest
/// first.
pub(super) async fn orders_of_run<C: GenericClient>(
    client: &C,
    request_id: &str,
) -> Result<Vec<OrderView>, Error> {
    let ids: Vec<Uuid> = client
        .query(
            "SELECT DISTINCT order_id FROM payment_events
             WHERE request_id = $1 AND order_id IS NOT NULL",
            &[&request_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut orders = Vec::new();
    for id in ids {
        orders.extend(orders::view(client, id).await?);
    }
    orders.sort_by_key(|o| o.created_at);
    Ok(orders)
}

/// What selects the ledger rows of a timeline: any of these that is set.
pub(super) struct EventFilter<'a> {
    pub order_id: Option<Uuid>,
    pub session_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    /// A reconcile run's request id (every row it wrote).
    pub run_request_id: Option<&'a str>,
}

/// The ledger rows of a timeline, in Stripe's order.
pub(super) async fn events<C: GenericClient>(
    client: &C,
    filter: &EventFilter<'_>,
) -> Result<Vec<EventView>, Error> {
    let rows = client
        .query(
            "SELECT stripe_event_id, event_type, source, request_id, stripe_created_at,
                    received_at, order_id IS NOT NULL
             FROM payment_events
             WHERE ($1::uuid IS NOT NULL AND order_id = $1)
                OR ($2::text IS NOT NULL AND stripe_session_id = $2)
                OR ($3::text IS NOT NULL AND stripe_event_id = $3)
                OR ($4::text IS NOT NULL AND request_id = $4)
             ORDER BY stripe_created_at, id",
            &[
                &filter.order_id,
                &filter.session_id,
                &filter.event_id,
                &filter.run_request_id,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| EventView {
            stripe_event_id: r.get(0),
            event_type: r.get(1),
            source: r.get(2),
            request_id: r.get(3),
            stripe_created_at: r.get::<_, DateTime<Utc>>(4),
            received_at: r.get(5),
            linked_to_order: r.get(6),
        })
        .collect())
}

/// The runs that wrote the timeline's rows (and the target's own run).
pub(super) async fn runs<C: GenericClient>(
    client: &C,
    events: &[EventView],
    run_of_target: Option<i64>,
) -> Result<Vec<RunView>, Error> {
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|e| runs::run_of(e.request_id.as_deref()?))
        .chain(run_of_target)
        .collect();
    let rows = client
        .query(
            "SELECT id, trigger, status, started_at, events_backfilled
             FROM reconcile_runs WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunView {
            id: r.get(0),
            trigger: r.get(1),
            status: r.get(2),
            started_at: r.get(3),
            events_backfilled: r.get(4),
        })
        .collect())
}

/// The order's refunds and disputes, oldest first.
pub(super) async fn money<C: GenericClient>(
    client: &C,
    order_id: Uuid,
) -> Result<Vec<super::MoneyView>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT 'refund', id, status, amount, currency, NULL::text, NULL::timestamptz,
                 stripe_created_at
             FROM refunds WHERE order_id = $1
             UNION ALL
             SELECT 'dispute', id, status, amount, currency, reason, evidence_due_by,
                 stripe_created_at
             FROM disputes WHERE order_id = $1
             ORDER BY 8, 2",
            &[&order_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| super::MoneyView {
            kind: r.get(0),
            id: r.get(1),
            status: r.get(2),
            amount: r.get(3),
            currency: r.get(4),
            reason: r.get(5),
            evidence_due_by: r.get(6),
            as_of: r.get(7),
        })
        .collect())
}
