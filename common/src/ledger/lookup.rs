//! Read-only queries that every caller of the ledger shares: which events the ledger already
//! holds, and the order that an event (or a session) belongs to, found exactly as the write finds
//! it.

use std::collections::HashSet;

use deadpool_postgres::GenericClient;

use super::decide::Keys;
use super::{OrderRow, sql};

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
