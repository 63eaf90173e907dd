//! `sweep_cursors`: where each object list's sweep got to (its window and the last object applied),
//! so that a sweep that fails or is stopped resumes there, and which slices of history a sweep
//! lists to cover both the window asked for and the one left unfinished.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::stripe_api::ObjectList;

/// A slice of one list to read: `[from, to]` by `created`, after `cursor` when resuming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub cursor: Option<String>,
    /// This segment's progress is stored (the stored window being resumed, or a fresh one).
    pub stored: bool,
}

/// The segments that cover `[from, to]` and whatever an unfinished earlier sweep of `list` left:
/// the part of the asked window newer than the stored one, the stored window from its cursor,
/// the part older than it.
pub async fn plan<C: GenericClient>(
    client: &C,
    list: ObjectList,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Segment>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT window_from, window_to, cursor FROM sweep_cursors
             WHERE list = $1 AND completed_at IS NULL",
            &[&list.as_str()],
        )
        .await?;
    let Some(row) = row else {
        client
            .execute(
                "INSERT INTO sweep_cursors (list, window_from, window_to) VALUES ($1, $2, $3)
                 ON CONFLICT (list) DO UPDATE SET window_from = $2, window_to = $3, cursor = NULL,
                     completed_at = NULL, updated_at = now()",
                &[&list.as_str(), &from, &to],
            )
            .await?;
        return Ok(vec![Segment {
            from,
            to,
            cursor: None,
            stored: true,
        }]);
    };
    let (stored_from, stored_to, cursor): (DateTime<Utc>, DateTime<Utc>, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let mut segments = Vec::new();
    if to > stored_to {
        segments.push(Segment {
            from: stored_to.max(from),
            to,
            cursor: None,
            stored: false,
        });
    }
    segments.push(Segment {
        from: stored_from,
        to: stored_to,
        cursor,
        stored: true,
    });
    if from < stored_from {
        segments.push(Segment {
            from,
            to: stored_from.min(to),
            cursor: None,
            stored: false,
        });
    }
    Ok(segments)
}

/// Records that the stored window of `list` was read and applied up to `cursor`.
pub async fn advance<C: GenericClient>(
    client: &C,
    list: ObjectList,
    cursor: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE sweep_cursors SET cursor = $2, updated_at = now()
             WHERE list = $1 AND completed_at IS NULL",
            &[&list.as_str(), &cursor],
        )
        .await?;
    Ok(())
}

/// Records that `list` was swept over `[from, to]`, every segment done.
pub async fn complete<C: GenericClient>(
    client: &C,
    list: ObjectList,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE sweep_cursors SET window_from = least(window_from, $2),
                 window_to = greatest(window_to, $3), cursor = NULL, completed_at = now(),
                 updated_at = now()
             WHERE list = $1",
            &[&list.as_str(), &from, &to],
        )
        .await?;
    Ok(())
}
