//! `reconcile_scans`: the windows of Stripe's event history that passes scan, and how far each
//! scan got, so that a backlog larger than one pass drains across passes (newest window first)
//! instead of being listed from the top again and again.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// A window still to scan, and where its scan resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scan {
    pub id: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The last event listed and applied (`starting_after`), and its `created`.
    pub cursor: Option<(String, DateTime<Utc>)>,
}

/// The newest window ever opened (a recheck never is): its end, and whether its scan is done.
pub(super) async fn newest<C: GenericClient>(
    client: &C,
) -> Result<Option<(DateTime<Utc>, bool)>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT window_to, completed_at IS NOT NULL FROM reconcile_scans
             WHERE NOT recheck ORDER BY window_to DESC, id DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Whether a recheck is still open (a pass opens a new one only once it is done, so that rechecks
/// never pile up behind a backlog).
pub(super) async fn recheck_open<C: GenericClient>(
    client: &C,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM reconcile_scans WHERE recheck AND completed_at IS NULL)",
            &[],
        )
        .await?
        .get(0))
}

/// Opens a window for `run` to scan; a `recheck` (a re-read of the overlap) is scanned after
/// every other open window.
pub(super) async fn open<C: GenericClient>(
    client: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    recheck: bool,
    run: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO reconcile_scans (window_from, window_to, recheck, created_by_run)
             VALUES ($1, $2, $3, $4)",
            &[&from, &to, &recheck, &run],
        )
        .await?;
    Ok(())
}

/// Every window still to scan, in the order a pass scans them: newest first, the rechecks last.
pub(super) async fn open_windows<C: GenericClient>(
    client: &C,
) -> Result<Vec<Scan>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, window_from, window_to, cursor, cursor_created FROM reconcile_scans
             WHERE completed_at IS NULL ORDER BY recheck, window_to DESC, id DESC",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Scan {
            id: r.get(0),
            from: r.get(1),
            to: r.get(2),
            cursor: match (r.get::<_, Option<String>>(3), r.get(4)) {
                (Some(id), Some(created)) => Some((id, created)),
                _ => None,
            },
        })
        .collect())
}

/// The scan of window `id` has listed and applied everything up to event `cursor` (created at
/// `created`), `seen` more events.
pub(super) async fn advance<C: GenericClient>(
    client: &C,
    id: i64,
    cursor: &str,
    created: DateTime<Utc>,
    seen: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE reconcile_scans SET cursor = $2, cursor_created = $3, events_seen = events_seen + $4
             WHERE id = $1",
            &[&id, &cursor, &created, &seen],
        )
        .await?;
    Ok(())
}

/// The scan of window `id` is done.
pub(super) async fn complete<C: GenericClient>(
    client: &C,
    id: i64,
    run: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE reconcile_scans SET completed_at = now(), completed_by_run = $2 WHERE id = $1",
            &[&id, &run],
        )
        .await?;
    Ok(())
}

/// How far behind the reconciler is: the windows still to scan, and the seconds of Stripe's
/// event history in them not scanned yet.
pub(super) async fn backlog<C: GenericClient>(
    client: &C,
) -> Result<(u64, f64), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(extract(epoch FROM
                 coalesce(cursor_created, window_to) - window_from)), 0)::float8
             FROM reconcile_scans WHERE completed_at IS NULL",
            &[],
        )
        .await?;
    Ok((row.get::<_, i64>(0).max(0) as u64, row.get(1)))
}
