//! Status queries over the ledger's tables that a binary exports as gauges, so that what they
//! report is known however the other binary runs (the reconciler as a daemon, or `reconciler once`
//! under cron, which has no `/metrics`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// When the last successful reconcile window pass ended.
pub async fn last_reconcile_success<C: GenericClient>(
    client: &C,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT max(finished_at) FROM reconcile_runs WHERE status = 'ok' AND scope = 'window'",
            &[],
        )
        .await?
        .get(0))
}
