//! Read-only queries that every caller of the ledger shares: which events the ledger already
//! holds, the order that an event (or a session) belongs to, found exactly as the write finds
//! it, and which of a sweep's events their orders lack.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;

use super::decide::{Keys, keys};
use super::{OrderRow, sql};
use crate::stripe::event::StripeEvent;

/// Which of `ids` the ledger holds.
pub async fn known_event_ids<C: GenericClient>(
    client: &C,
    ids: &[&str],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let stmt = client.prepare_cached(sql::KNOWN_EVENT_IDS).await?;
    Ok(client
        .query(&stmt, &[&ids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The order that an event with these keys belongs to (without locking it).
pub async fn find_order<C: GenericClient>(
    client: &C,
    keys: &Keys<'_>,
) -> Result<Option<OrderRow>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(sql::FIND_ORDER).await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &keys.session_id,
                &keys.client_ref,
                &keys.metadata_ref,
                &keys.payment_intent,
            ],
        )
        .await?;
    Ok(row.and_then(|r| OrderRow::read(&r, 0)))
}

/// Which of `events` (a sweep's synthetic events) their order lacks: those whose order exists
/// (found as the write finds it) and does not already show what they say. Their indexes, in order.
pub async fn lacking<C: GenericClient>(
    client: &C,
    events: &[StripeEvent],
) -> Result<Vec<usize>, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut session_id = Vec::with_capacity(events.len());
    let mut client_ref = Vec::with_capacity(events.len());
    let mut metadata_ref = Vec::with_capacity(events.len());
    let mut payment_intent = Vec::with_capacity(events.len());
    let mut event_type = Vec::with_capacity(events.len());
    let mut object_id = Vec::with_capacity(events.len());
    let mut status = Vec::with_capacity(events.len());
    for e in events {
        let k = keys(e);
        session_id.push(k.session_id);
        client_ref.push(k.client_ref);
        metadata_ref.push(k.metadata_ref);
        payment_intent.push(k.payment_intent);
        event_type.push(e.event_type.as_str());
        object_id.push(e.object.id.as_deref());
        status.push(e.object.status.as_deref());
    }
    let stmt = client.prepare_cached(sql::SWEEP_LACKING).await?;
    Ok(client
        .query(
            &stmt,
            &[
                &session_id,
                &client_ref,
                &metadata_ref,
                &payment_intent,
                &event_type,
                &object_id,
                &status,
            ],
        )
        .await?
        .iter()
        .filter_map(|r| usize::try_from(r.get::<_, i64>(0) - 1).ok())
        .collect())
}
