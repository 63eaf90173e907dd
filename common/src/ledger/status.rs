//! Status queries over the ledger's tables that a binary exports as gauges (the last successful
//! pass, open disputes by evidence deadline), so that what they report is known however the
//! other binary runs (the reconciler as a daemon, or `reconciler once`
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

crate::label! {
    /// When an open dispute's evidence is due (`edge_disputes_open{due}`).
    pub enum DisputeDue: "due" {
        PastDue = "past_due",
        Within24h = "within_24h",
        Within72h = "within_72h",
        Within7d = "within_7d",
        Later = "later",
        /// Stripe gave no deadline.
        Unknown = "unknown",
    }
}

/// Open disputes (needing a response or under review) by when their evidence is due, for every
/// bucket (zero included).
pub async fn open_disputes<C: GenericClient>(
    client: &C,
) -> Result<Vec<(DisputeDue, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT CASE
                 WHEN evidence_due_by IS NULL THEN 'unknown'
                 WHEN evidence_due_by < now() THEN 'past_due'
                 WHEN evidence_due_by < now() + interval '24 hours' THEN 'within_24h'
                 WHEN evidence_due_by < now() + interval '72 hours' THEN 'within_72h'
                 WHEN evidence_due_by < now() + interval '7 days' THEN 'within_7d'
                 ELSE 'later' END,
                 count(*)
             FROM disputes
             WHERE status IN ('warning_needs_response', 'needs_response', 'warning_under_review',
                 'under_review')
             GROUP BY 1",
            &[],
        )
        .await?;
    Ok(DisputeDue::ALL
        .iter()
        .map(|&due| {
            let n = rows
                .iter()
                .find(|r| r.get::<_, &str>(0) == due.as_str())
                .map_or(0, |r| r.get::<_, i64>(1));
            (due, n)
        })
        .collect())
}
