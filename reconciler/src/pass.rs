//! One reconcile pass over a time window: list Stripe's order events page by page, find the ones
//! the ledger lacks with one query per page, record them through the shared ledger code (source
//! `reconciler`), adopt orphans whose order now exists, and record the pass in `reconcile_runs`.
//!
//! Only one pass runs at a time across replicas (a Postgres advisory lock; the loser records a
//! `skipped` run). A pass that fails part-way keeps what it committed and does not advance the
//! high-water mark (only `ok` runs do).

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::config::MAX_LOOKBACK;
use common::db;
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, storable_payload, types};
use serde::Serialize;
use tokio::sync::watch;

use crate::Reconciler;
use serde_json::value::RawValue;

use crate::stripe_api::{EventHead, EventQuery, StripeError};

/// Advisory lock key held by the running pass.
const PASS_LOCK_KEY: i64 = 0x5354_5249_5045_0002;
/// Orphans examined per pass.
const ORPHANS_PER_PASS: i64 = 1000;

/// What started a pass (`reconcile_runs.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Cli => "cli",
        }
    }
}

/// The JSON summary of a pass (what `reconciler once` prints).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    pub run_id: Option<i64>,
    /// ok, failed or skipped.
    pub status: &'static str,
    pub trigger: &'static str,
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub stripe_requests: u64,
    pub events_seen: u64,
    pub events_missing: u64,
    pub events_backfilled: u64,
    pub orders_updated: u64,
    pub orphans_linked: u64,
    pub error: Option<String>,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("database: {0}")]
    Db(String),
    #[error("Stripe returned an event that cannot be read: {0}")]
    BadEvent(String),
    #[error("stopped by shutdown between pages")]
    Stopped,
}

impl From<tokio_postgres::Error> for PassError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        })
    }
}

impl From<ledger::LedgerError> for PassError {
    fn from(e: ledger::LedgerError) -> Self {
        match e {
            ledger::LedgerError::Write(e) => e.into(),
            other => Self::Db(other.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for PassError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.to_string())
    }
}

impl From<db::DbError> for PassError {
    fn from(e: db::DbError) -> Self {
        Self::Db(e.to_string())
    }
}

#[derive(Default)]
struct Counts {
    seen: u64,
    missing: u64,
    backfilled: u64,
    orders_updated: u64,
    orphans_linked: u64,
}

impl Reconciler {
    /// Runs one window pass. `stop` turning true ends it between pages (shutdown).
    pub async fn pass(&self, trigger: Trigger, stop: &watch::Receiver<bool>) -> PassSummary {
        let started = Instant::now();
        let requests_before = self.stripe.requests();
        let mut summary = PassSummary {
            run_id: None,
            status: "failed",
            trigger: trigger.as_str(),
            window_from: None,
            window_to: None,
            stripe_requests: 0,
            events_seen: 0,
            events_missing: 0,
            events_backfilled: 0,
            orders_updated: 0,
            orphans_linked: 0,
            error: None,
        };
        let result = self.locked_pass(trigger, stop, &mut summary).await;
        summary.stripe_requests = self.stripe.requests() - requests_before;
        match result {
            Ok(status) => summary.status = status,
            Err(e) => {
                summary.status = "failed";
                summary.error = Some(e.to_string());
                tracing::error!(error = %e, runId = summary.run_id, "reconcile pass failed");
            }
        }
        if let Some(id) = summary.run_id
            && let Err(e) = self.finish_run(id, &summary).await
        {
            tracing::error!(error = %e, runId = id, "cannot record the end of the pass");
        }
        self.metrics.run(trigger.as_str(), summary.status);
        self.metrics
            .run_duration
            .record(started.elapsed().as_secs_f64());
        if summary.status == "ok" {
            self.metrics.last_success.set(Utc::now().timestamp() as f64);
        }
        tracing::info!(
            runId = summary.run_id,
            status = summary.status,
            eventsSeen = summary.events_seen,
            eventsMissing = summary.events_missing,
            eventsBackfilled = summary.events_backfilled,
            ordersUpdated = summary.orders_updated,
            stripeRequests = summary.stripe_requests,
            "reconcile pass finished"
        );
        summary
    }

    async fn locked_pass(
        &self,
        trigger: Trigger,
        stop: &watch::Receiver<bool>,
        summary: &mut PassSummary,
    ) -> Result<&'static str, PassError> {
        // A dedicated session holds the lock: if this process dies, the lock goes with it.
        let lock = db::connect(&self.config.db).await?;
        let acquired: bool = lock
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PASS_LOCK_KEY])
            .await?
            .get(0);
        let client = self.pool.get().await?;
        if !acquired {
            let row = client
                .query_one(
                    "INSERT INTO reconcile_runs (trigger, scope, status, finished_at)
                     VALUES ($1, 'window', 'skipped', now()) RETURNING id",
                    &[&trigger.as_str()],
                )
                .await?;
            summary.run_id = Some(row.get(0));
            return Ok("skipped");
        }
        // Holding the lock, no other pass runs: a `running` row is one that died (for instance
        // with the database unreachable, unable to record its own failure).
        client
            .execute(
                "UPDATE reconcile_runs SET status = 'failed', finished_at = now(),
                   error = coalesce(error, 'interrupted: the pass ended without recording its outcome')
                 WHERE status = 'running' AND scope = 'window'",
                &[],
            )
            .await?;
        let now = Utc::now();
        let high_water: Option<DateTime<Utc>> = client
            .query_one(
                "SELECT max(window_to) FROM reconcile_runs WHERE status = 'ok' AND scope = 'window'",
                &[],
            )
            .await?
            .get(0);
        let overlap = ChronoDuration::from_std(self.config.overlap).unwrap_or_default();
        let lookback = ChronoDuration::from_std(self.config.lookback).unwrap_or_default();
        let oldest = now - ChronoDuration::from_std(MAX_LOOKBACK).unwrap_or_default();
        let from = high_water
            .map_or(now - lookback, |hw| hw - overlap)
            .max(oldest);
        summary.window_from = Some(from);
        summary.window_to = Some(now);
        let row = client
            .query_one(
                "INSERT INTO reconcile_runs (trigger, scope, window_from, window_to)
                 VALUES ($1, 'window', $2, $3) RETURNING id",
                &[&trigger.as_str(), &from, &now],
            )
            .await?;
        let run_id: i64 = row.get(0);
        summary.run_id = Some(run_id);
        drop(client);

        let mut counts = Counts::default();
        let result = self.scan(run_id, from, now, stop, &mut counts).await;
        summary.events_seen = counts.seen;
        summary.events_missing = counts.missing;
        summary.events_backfilled = counts.backfilled;
        summary.orders_updated = counts.orders_updated;
        summary.orphans_linked = counts.orphans_linked;
        let _ = lock
            .execute("SELECT pg_advisory_unlock($1)", &[&PASS_LOCK_KEY])
            .await;
        result.map(|()| "ok")
    }

    async fn scan(
        &self,
        run_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
        counts: &mut Counts,
    ) -> Result<(), PassError> {
        let request_id = format!("reconcile-run-{run_id}");
        let mut query = EventQuery {
            types: types::ORDER_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            created_gte: Some(from.timestamp()),
            created_lte: Some(to.timestamp()),
            limit: 100,
            ..EventQuery::default()
        };
        loop {
            if *stop.borrow() {
                return Err(PassError::Stopped);
            }
            let page = self.stripe.list_events(&query).await?;
            counts.seen += page.data.len() as u64;
            self.metrics.events_seen.increment(page.data.len() as u64);
            let heads = page
                .data
                .iter()
                .map(|raw| EventHead::read(raw))
                .collect::<Result<Vec<_>, _>>()?;
            let last_id = heads.last().map(|h| h.id.clone());
            self.backfill(&page.data, &heads, &request_id, counts)
                .await?;
            match (page.has_more, last_id) {
                (true, Some(last)) => query.starting_after = Some(last),
                _ => break,
            }
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let adopted =
            ledger::adopt_orphans(&tx, self.config.expect_livemode, ORPHANS_PER_PASS).await?;
        tx.commit().await?;
        counts.orphans_linked = adopted.linked;
        counts.orders_updated += adopted.transitions.len() as u64;
        Ok(())
    }

    /// Records the events of one page that the ledger lacks, oldest first, in one transaction.
    /// Only the missing events are parsed in full; each is stored as the exact JSON Stripe sent.
    async fn backfill(
        &self,
        page: &[Box<RawValue>],
        heads: &[EventHead],
        request_id: &str,
        counts: &mut Counts,
    ) -> Result<(), PassError> {
        let ids: Vec<&str> = heads.iter().map(|h| h.id.as_str()).collect();
        let mut client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT stripe_event_id FROM payment_events WHERE stripe_event_id = ANY($1)",
            )
            .await?;
        let known: HashSet<String> = client
            .query(&stmt, &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut events = Vec::new();
        for (raw, head) in page.iter().zip(heads) {
            if known.contains(&head.id) {
                continue;
            }
            let event = StripeEvent::parse(raw.get().as_bytes())
                .map_err(|e| PassError::BadEvent(e.to_string()))?;
            events.push((event, raw.get()));
        }
        let mut missing = events;
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_by_key(|(e, _)| e.created);
        counts.missing += missing.len() as u64;
        self.metrics.events_missing.increment(missing.len() as u64);
        let meta = BatchMeta {
            source: Source::Reconciler,
            expect_livemode: self.config.expect_livemode,
        };
        let payloads: Vec<_> = missing
            .iter()
            .map(|(_, raw)| storable_payload(raw))
            .collect();
        let entries: Vec<BatchEntry<'_>> = missing
            .iter()
            .zip(&payloads)
            .map(|((event, _), payload)| BatchEntry {
                event,
                payload,
                request_id: Some(request_id),
            })
            .collect();
        let now = Utc::now();
        let tx = client.transaction().await?;
        // The page's missing events in one set-based write, as the edge's group commit does.
        let results = ledger::apply_batch(&tx, &entries, meta).await?;
        let mut backfilled = 0u64;
        let mut updated = 0u64;
        for ((event, _), applied) in missing.iter().zip(results) {
            if applied.duplicate {
                continue; // the webhook won the race
            }
            backfilled += 1;
            updated += u64::from(applied.transition.is_some());
            let age = (now - event.created).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.missing_event_age.record(age);
            tracing::info!(
                eventId = %event.id,
                eventType = %event.event_type,
                orderId = applied.order_id.map(|id| id.to_string()),
                transition = applied.transition.map(|(f, t)| format!("{f}->{t}")),
                ageSeconds = age,
                "backfilled an event the webhooks missed"
            );
        }
        tx.commit().await?;
        counts.backfilled += backfilled;
        counts.orders_updated += updated;
        self.metrics.events_backfilled.increment(backfilled);
        Ok(())
    }

    async fn finish_run(&self, id: i64, s: &PassSummary) -> Result<(), PassError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE reconcile_runs SET status = $2, finished_at = now(), stripe_requests = $3,
                   events_seen = $4, events_missing = $5, events_backfilled = $6,
                   orders_updated = $7, error = $8
                 WHERE id = $1 AND status <> 'skipped'",
                &[
                    &id,
                    &s.status,
                    &(s.stripe_requests as i32),
                    &(s.events_seen as i32),
                    &(s.events_missing as i32),
                    &(s.events_backfilled as i32),
                    &(s.orders_updated as i32),
                    &s.error,
                ],
            )
            .await?;
        Ok(())
    }
}
