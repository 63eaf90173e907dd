//! One reconcile pass over a time window: list Stripe's order events page by page, find the ones
//! the ledger lacks with one query per page, record them through the shared ledger code (source
//! `reconciler`), adopt orphans whose order now exists, and record the pass in `reconcile_runs`.
//!
//! Only one pass runs at a time across replicas (a Postgres advisory lock; the loser records a
//! `skipped` run). A pass that fails part-way keeps what it committed and does not advance the
//! high-water mark (only `ok` runs do).

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Timelike, Utc};
use common::db;
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use serde::Serialize;
use tokio::sync::watch;

use crate::Reconciler;
use crate::config::MAX_LOOKBACK;
use crate::error::Error;
pub use crate::runs::Trigger;
use crate::runs::{self, Counts, RunStatus, Scope};
use crate::stripe_api::{EventQuery, ListedEvent};

/// Advisory lock key held by the running pass.
const PASS_LOCK_KEY: i64 = 0x5354_5249_5045_0002;
/// The longest error text a run row keeps.
const MAX_ERROR_TEXT: usize = 4000;
/// Orphans adopted per pass at most (the next pass takes the rest).
const ORPHANS_PER_PASS: i64 = 10_000;

/// The JSON summary of a pass (what `reconciler once` prints).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    pub run_id: Option<i64>,
    /// ok, failed or skipped.
    pub status: RunStatus,
    pub trigger: Trigger,
    /// The scheduled tick the pass belongs to (scheduled passes only).
    pub tick_at: Option<DateTime<Utc>>,
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub stripe_requests: u64,
    pub events_seen: u64,
    pub events_missing: u64,
    pub events_backfilled: u64,
    pub orders_updated: u64,
    pub orphans_linked: u64,
    /// Events that could not be written (each with its error); the pass then fails, so that the
    /// high-water mark does not pass them.
    pub failed_events: Vec<String>,
    pub error: Option<String>,
}

impl PassSummary {
    fn new(trigger: Trigger) -> Self {
        Self {
            run_id: None,
            status: RunStatus::Failed,
            trigger,
            tick_at: None,
            window_from: None,
            window_to: None,
            stripe_requests: 0,
            events_seen: 0,
            events_missing: 0,
            events_backfilled: 0,
            orders_updated: 0,
            orphans_linked: 0,
            failed_events: Vec::new(),
            error: None,
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            stripe_requests: self.stripe_requests,
            seen: self.events_seen,
            missing: self.events_missing,
            backfilled: self.events_backfilled,
            orders_updated: self.orders_updated,
        }
    }
}

impl Reconciler {
    /// Runs one window pass now. `stop` turning true ends it between pages (shutdown).
    pub async fn pass(&self, trigger: Trigger, stop: &watch::Receiver<bool>) -> PassSummary {
        self.pass_of_tick(trigger, None, stop).await
    }

    /// Runs the pass of a scheduled `tick`, unless a replica already did it (then it is
    /// recorded `skipped`).
    pub async fn pass_of_tick(
        &self,
        trigger: Trigger,
        tick: Option<DateTime<Utc>>,
        stop: &watch::Receiver<bool>,
    ) -> PassSummary {
        let started = Instant::now();
        let requests_before = self.stripe.requests();
        let mut summary = PassSummary::new(trigger);
        summary.tick_at = tick;
        let result = self.locked_pass(trigger, tick, stop, &mut summary).await;
        summary.stripe_requests = self.stripe.requests() - requests_before;
        match result {
            Ok(status) => summary.status = status,
            Err(e) => {
                summary.status = RunStatus::Failed;
                let mut text = e.run_text();
                if !summary.failed_events.is_empty() {
                    text = format!("{text}: {}", summary.failed_events.join("; "));
                    text.truncate(MAX_ERROR_TEXT);
                }
                summary.error = Some(text);
                tracing::error!(error = %e, runId = summary.run_id, "reconcile pass failed");
            }
        }
        if let Some(id) = summary.run_id
            && let Err(e) = self.record_end(id, &summary).await
        {
            tracing::error!(error = %e, runId = id, "cannot record the end of the pass");
        }
        self.metrics.runs.inc((trigger, summary.status));
        self.metrics
            .run_duration
            .record_value(started.elapsed().as_secs_f64());
        if summary.status == RunStatus::Ok {
            self.metrics
                .last_success
                .set_value(Utc::now().timestamp() as f64);
        }
        tracing::info!(
            runId = summary.run_id,
            status = summary.status.as_str(),
            eventsSeen = summary.events_seen,
            eventsMissing = summary.events_missing,
            eventsBackfilled = summary.events_backfilled,
            ordersUpdated = summary.orders_updated,
            stripeRequests = summary.stripe_requests,
            "reconcile pass finished"
        );
        summary
    }

    async fn record_end(&self, id: i64, s: &PassSummary) -> Result<(), Error> {
        let client = self.pool.get().await?;
        runs::finish(&client, id, s.status, &s.counts(), s.error.as_deref()).await?;
        Ok(())
    }

    async fn locked_pass(
        &self,
        trigger: Trigger,
        tick: Option<DateTime<Utc>>,
        stop: &watch::Receiver<bool>,
        summary: &mut PassSummary,
    ) -> Result<RunStatus, Error> {
        // A dedicated session holds the lock: if this process dies, the lock goes with it.
        let lock = db::connect(&self.config.db).await?;
        let acquired: bool = lock
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PASS_LOCK_KEY])
            .await?
            .get(0);
        let client = self.pool.get().await?;
        if !acquired {
            let why = "another replica's pass holds the lock";
            summary.run_id = Some(runs::skipped(&client, trigger, tick, why).await?);
            return Ok(RunStatus::Skipped);
        }
        if let Some(tick) = tick
            && runs::tick_done(&client, tick).await?
        {
            let why = "another replica already did this tick's pass";
            summary.run_id = Some(runs::skipped(&client, trigger, Some(tick), why).await?);
            let _ = lock
                .execute("SELECT pg_advisory_unlock($1)", &[&PASS_LOCK_KEY])
                .await;
            return Ok(RunStatus::Skipped);
        }
        runs::fail_interrupted(&client).await?;
        let now = Utc::now();
        let high_water = runs::high_water(&client).await?;
        let overlap = ChronoDuration::from_std(self.config.overlap).unwrap_or_default();
        let lookback = ChronoDuration::from_std(self.config.lookback).unwrap_or_default();
        let settle = ChronoDuration::from_std(self.config.settle).unwrap_or_default();
        let oldest = now - ChronoDuration::from_std(MAX_LOOKBACK).unwrap_or_default();
        // Webhooks still being delivered are not missing: the window ends `settle` before now,
        // and the next pass's overlap covers the rest.
        let to = (now - settle).with_nanosecond(0).unwrap_or(now - settle);
        let from = high_water
            .map_or(now - lookback, |hw| hw - overlap)
            .max(oldest)
            .min(to);
        summary.window_from = Some(from);
        summary.window_to = Some(to);
        let run_id = runs::start(&client, trigger, Scope::Window, from, to, tick).await?;
        summary.run_id = Some(run_id);
        drop(client);

        let deadline = self.config.pass_timeout;
        let result = match tokio::time::timeout(
            deadline,
            self.scan(run_id, from, to, stop, summary),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::PassTimeout(deadline)),
        };
        let _ = lock
            .execute("SELECT pg_advisory_unlock($1)", &[&PASS_LOCK_KEY])
            .await;
        result.map(|()| RunStatus::Ok)
    }

    async fn scan(
        &self,
        run_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
        summary: &mut PassSummary,
    ) -> Result<(), Error> {
        let request_id = runs::request_id(run_id);
        let mut pages = self.stripe.events(EventQuery {
            types: types::ORDER_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            created_gte: Some(from.timestamp()),
            created_lte: Some(to.timestamp()),
            limit: 100,
            ..EventQuery::default()
        });
        loop {
            if *stop.borrow() {
                return Err(Error::Stopped);
            }
            let Some(page) = pages.next_page().await? else {
                break;
            };
            summary.events_seen += page.len() as u64;
            self.metrics.events_seen.increment(page.len() as u64);
            self.backfill(&page, &request_id, summary).await?;
        }
        let mut client = self.pool.get().await?;
        let overlap = ChronoDuration::from_std(self.config.overlap).unwrap_or_default();
        let changed_since = runs::last_ok_start(&client).await?.unwrap_or(from) - overlap;
        let claimants = ledger::Claimants {
            changed_since,
            orders: Vec::new(),
        };
        let tx = client.transaction().await?;
        let adopted = ledger::adopt_orphans(
            &tx,
            &claimants,
            self.config.expect_livemode,
            ORPHANS_PER_PASS,
        )
        .await?;
        tx.commit().await?;
        summary.orphans_linked = adopted.linked;
        summary.orders_updated += adopted.transitions.len() as u64;
        match summary.failed_events.len() {
            0 => Ok(()),
            n => Err(Error::EventsNotWritten(n)),
        }
    }

    /// Records the events of one page that the ledger lacks, oldest first, in one transaction.
    /// Only the missing events are parsed in full; each is stored as the exact JSON Stripe sent.
    async fn backfill(
        &self,
        page: &[ListedEvent],
        request_id: &str,
        summary: &mut PassSummary,
    ) -> Result<(), Error> {
        let ids: Vec<&str> = page.iter().map(|e| e.head.id.as_str()).collect();
        let known = ledger::known_event_ids(&self.pool.get().await?, &ids).await?;
        let mut missing = Vec::new();
        for listed in page.iter().filter(|e| !known.contains(&e.head.id)) {
            let raw = listed.raw.get();
            match StripeEvent::parse_str(raw) {
                Ok(event) => missing.push((event, raw)),
                Err(e) => {
                    // Not an event the ledger can hold: named on the run, the page goes on.
                    tracing::error!(eventId = %listed.head.id, error = %e, "event not backfilled");
                    summary
                        .failed_events
                        .push(format!("{} ({e})", listed.head.id));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_by_key(|(e, _)| e.created);
        summary.events_missing += missing.len() as u64;
        self.metrics.events_missing.increment(missing.len() as u64);
        let meta = BatchMeta {
            source: Source::Reconciler,
            expect_livemode: self.config.expect_livemode,
        };
        let entries: Vec<BatchEntry<'_>> = missing
            .iter()
            .map(|(event, raw)| BatchEntry {
                event,
                payload: raw,
                request_id: Some(request_id),
            })
            .collect();
        let now = Utc::now();
        // The page's missing events in one set-based write, as the edge's group commit does (the
        // ledger retries the events of a page that failed on a statement on their own).
        let recorded = ledger::record(&self.pool, &entries, meta).await;
        if let Some(e) = recorded.failure.filter(|e| !e.is_statement_failure()) {
            return Err(e.into());
        }
        let mut backfilled = 0u64;
        let mut updated = 0u64;
        for ((event, _), result) in missing.iter().zip(recorded.answers) {
            let applied = match result {
                Ok(applied) => applied,
                Err(e) => {
                    tracing::error!(eventId = %event.id, eventType = %event.event_type, sqlstate = e.sqlstate(), error = %e, "event not backfilled");
                    summary.failed_events.push(format!("{} ({e})", event.id));
                    continue;
                }
            };
            if applied.duplicate {
                continue; // the webhook won the race
            }
            backfilled += 1;
            updated += u64::from(applied.transition.is_some());
            let age = (now - event.created).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.missing_event_age.record_value(age);
            tracing::info!(
                eventId = %event.id,
                eventType = %event.event_type,
                orderId = applied.order_id.map(tracing::field::display),
                transition = applied.transition_text().map(tracing::field::display),
                ageSeconds = age,
                "backfilled an event the webhooks missed"
            );
        }
        summary.events_backfilled += backfilled;
        summary.orders_updated += updated;
        self.metrics.events_backfilled.increment(backfilled);
        Ok(())
    }
}
