//! `reconcile_runs`: what started a pass, how it ended, and every write of a run's row, with the
//! request id (`reconcile-run-<id>`) that ties a run to the ledger rows it wrote.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

common::label! {
    /// What started a pass (`reconcile_runs.trigger`).
    pub enum Trigger: "trigger" {
        Schedule = "schedule",
        Manual = "manual",
        Cli = "cli",
    }
}

common::label! {
    /// How a pass ended (`reconcile_runs.status`, and the `outcome` label of the run counter).
    pub enum RunStatus: "outcome" {
        Running = "running",
        Ok = "ok",
        Failed = "failed",
        Skipped = "skipped",
    }
}

impl RunStatus {
    /// Every (trigger, outcome) series of the run counter: a run is counted once it has ended.
    pub fn outcomes() -> Vec<(Trigger, RunStatus)> {
        Trigger::ALL
            .iter()
            .flat_map(|&t| {
                [Self::Ok, Self::Failed, Self::Skipped]
                    .into_iter()
                    .map(move |s| (t, s))
            })
            .collect()
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for Trigger {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for RunStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Statuses sort by name, as they read.
impl Ord for RunStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Trigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a run covers (`reconcile_runs.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Window,
    Session,
    /// The object-level sweep.
    Sweep,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Session => "session",
            Self::Sweep => "sweep",
        }
    }
}

/// The request id a run writes on every ledger row it records.
pub fn request_id(run_id: i64) -> String {
    format!("{REQUEST_ID_PREFIX}{run_id}")
}

/// The run of a request id written by [`request_id`].
pub fn run_of(request_id: &str) -> Option<i64> {
    request_id.strip_prefix(REQUEST_ID_PREFIX)?.parse().ok()
}

const REQUEST_ID_PREFIX: &str = "reconcile-run-";

/// The counts a run records when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub stripe_requests: u64,
    pub seen: u64,
    pub missing: u64,
    pub backfilled: u64,
    pub orders_updated: u64,
}

/// Records a run of `scope` that did not run, and why (another replica held the lock, or had
/// already done the pass of the same tick).
pub async fn skipped<C: GenericClient>(
    client: &C,
    trigger: Trigger,
    scope: Scope,
    tick: Option<DateTime<Utc>>,
    reason: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO reconcile_runs (trigger, scope, status, finished_at, tick_at, error)
             VALUES ($1, $2, 'skipped', now(), $3, $4) RETURNING id",
            &[&trigger.as_str(), &scope.as_str(), &tick, &reason],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether a replica already did the pass of this tick.
pub async fn tick_done<C: GenericClient>(
    client: &C,
    tick: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM reconcile_runs
             WHERE tick_at = $1 AND scope = 'window' AND status = 'ok')",
            &[&tick],
        )
        .await?
        .get(0))
}

/// Holding the pass lock, no other pass runs: a `running` window row is one that died (for
/// instance with the database unreachable, unable to record its own failure).
pub async fn fail_interrupted<C: GenericClient>(client: &C) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE reconcile_runs SET status = 'failed', finished_at = now(),
               error = coalesce(error, 'interrupted: the run ended without recording its outcome')
             WHERE status = 'running' AND scope IN ('window', 'sweep')",
            &[],
        )
        .await
}

/// The end of the window of the last `ok` window pass.
pub async fn high_water<C: GenericClient>(
    client: &C,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT max(window_to) FROM reconcile_runs WHERE status = 'ok' AND scope = 'window'",
            &[],
        )
        .await?
        .get(0))
}

/// When the last pass that adopted orphans started: orders changed since (less the overlap) are
/// the ones that may claim orphans now.
pub async fn last_adoption_start<C: GenericClient>(
    client: &C,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT max(started_at) FROM reconcile_runs
             WHERE orphans_adopted AND scope = 'window'",
            &[],
        )
        .await?
        .get(0))
}

/// Records that run `id` adopted the orphans its claimants had.
pub async fn adopted<C: GenericClient>(client: &C, id: i64) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE reconcile_runs SET orphans_adopted = true WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Records the start of a run over a window (of a scheduled tick, for scheduled passes);
/// returns its id.
pub async fn start<C: GenericClient>(
    client: &C,
    trigger: Trigger,
    scope: Scope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tick: Option<DateTime<Utc>>,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO reconcile_runs (trigger, scope, window_from, window_to, tick_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&trigger.as_str(), &scope.as_str(), &from, &to, &tick],
        )
        .await?;
    Ok(row.get(0))
}

/// Records how run `id` (`what`: a pass, a sweep) ended, on a connection of `pool`; a failure is
/// logged (the row stays `running` until the next run, holding the lock, marks it interrupted).
pub async fn record_end(
    pool: &deadpool_postgres::Pool,
    what: &str,
    id: i64,
    status: RunStatus,
    counts: &Counts,
    error: Option<&str>,
) {
    let ended = match pool.get().await {
        Ok(client) => finish(&client, id, status, counts, error)
            .await
            .map_err(|e| common::error::postgres(&e)),
        Err(e) => Err(common::error::chain(&e)),
    };
    if let Err(e) = ended {
        tracing::error!(error = %e, runId = id, "cannot record the end of the {what}");
    }
}

/// Records how a run ended (a `skipped` row is never rewritten).
pub async fn finish<C: GenericClient>(
    client: &C,
    id: i64,
    status: RunStatus,
    counts: &Counts,
    error: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let int = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    client
        .execute(
            "UPDATE reconcile_runs SET status = $2, finished_at = now(), stripe_requests = $3,
               events_seen = $4, events_missing = $5, events_backfilled = $6,
               orders_updated = $7, error = $8
             WHERE id = $1 AND status <> 'skipped'",
            &[
                &id,
                &status.as_str(),
                &int(counts.stripe_requests),
                &int(counts.seen),
                &int(counts.missing),
                &int(counts.backfilled),
                &int(counts.orders_updated),
                &error,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip() {
        assert_eq!(run_of(&request_id(42)), Some(42));
        assert_eq!(run_of("reconcile-run-x"), None);
        assert_eq!(run_of("req_1"), None);
    }

    #[test]
    fn statuses_compare_with_their_names() {
        assert_eq!(RunStatus::Ok, "ok");
        let mut s = vec![RunStatus::Skipped, RunStatus::Ok];
        s.sort_unstable();
        assert_eq!(s, vec!["ok", "skipped"]);
    }
}
