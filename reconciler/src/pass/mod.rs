//! One reconcile pass over a time window: list Stripe's order events page by page, find the ones
//! the ledger lacks with one query per page, record them through the shared ledger code (source
//! `reconciler`), adopt orphans whose order now exists, and record the pass in `reconcile_runs`.
//!
//! Only one pass runs at a time across replicas (a Postgres advisory lock; the loser records a
//! `skipped` run). A pass that fails part-way keeps what it committed and does not advance the
//! high-water mark (only `ok` runs do).

mod backfill;
mod lock;

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Timelike, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::Reconciler;
use crate::config::MAX_LOOKBACK;
use crate::error::Error;
pub use crate::runs::Trigger;
use crate::runs::{self, Counts, RunStatus, Scope};
use lock::PassLock;

/// The longest error text a run row keeps.
const MAX_ERROR_TEXT: usize = 4000;

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

/// Runs the pass of a scheduled `tick` (`None` for a pass on demand), unless a replica already
/// did it (then it is recorded `skipped`). `stop` turning true ends it between pages (shutdown).
pub async fn run(
    r: &Reconciler,
    trigger: Trigger,
    tick: Option<DateTime<Utc>>,
    stop: &watch::Receiver<bool>,
) -> PassSummary {
    let started = Instant::now();
    let requests_before = r.stripe.requests();
    let mut summary = PassSummary::new(trigger);
    summary.tick_at = tick;
    let pass = Pass {
        r,
        trigger,
        tick,
        stop,
    };
    let result = pass.run_locked(&mut summary).await;
    summary.stripe_requests = r.stripe.requests() - requests_before;
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
        && let Err(e) = record_end(r, id, &summary).await
    {
        tracing::error!(error = %e, runId = id, "cannot record the end of the pass");
    }
    observe(r, &summary, started);
    summary
}

/// Counts the pass and logs its summary.
fn observe(r: &Reconciler, summary: &PassSummary, started: Instant) {
    r.metrics.runs.inc((summary.trigger, summary.status));
    r.metrics
        .run_duration
        .record_value(started.elapsed().as_secs_f64());
    if summary.status == RunStatus::Ok {
        r.metrics
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
}

async fn record_end(r: &Reconciler, id: i64, s: &PassSummary) -> Result<(), Error> {
    let client = r.pool.get().await?;
    runs::finish(&client, id, s.status, &s.counts(), s.error.as_deref()).await?;
    Ok(())
}

/// A pass being run: who asked for it, the tick it belongs to, and the shutdown signal.
struct Pass<'a> {
    r: &'a Reconciler,
    trigger: Trigger,
    tick: Option<DateTime<Utc>>,
    stop: &'a watch::Receiver<bool>,
}

impl Pass<'_> {
    /// Records the pass as not run, and why.
    async fn skipped(&self, why: &str, summary: &mut PassSummary) -> Result<RunStatus, Error> {
        let client = self.r.pool.get().await?;
        summary.run_id = Some(runs::skipped(&client, self.trigger, self.tick, why).await?);
        Ok(RunStatus::Skipped)
    }

    /// Takes the pass lock (another replica holding it: `skipped`), runs the pass, releases it.
    async fn run_locked(&self, summary: &mut PassSummary) -> Result<RunStatus, Error> {
        let Some(lock) = PassLock::try_acquire(&self.r.config.db).await? else {
            return self
                .skipped("another replica's pass holds the lock", summary)
                .await;
        };
        let result = self.holding_lock(summary).await;
        lock.release().await;
        result
    }

    /// The pass itself, under the lock: unless the tick's pass is done already, records the run
    /// over its window and scans it within `RECONCILE_PASS_TIMEOUT`.
    async fn holding_lock(&self, summary: &mut PassSummary) -> Result<RunStatus, Error> {
        let r = self.r;
        let client = r.pool.get().await?;
        if let Some(tick) = self.tick
            && runs::tick_done(&client, tick).await?
        {
            return self
                .skipped("another replica already did this tick's pass", summary)
                .await;
        }
        runs::fail_interrupted(&client).await?;
        let high_water = runs::high_water(&client).await?;
        let (from, to) = window(r, high_water, Utc::now());
        summary.window_from = Some(from);
        summary.window_to = Some(to);
        let run_id = runs::start(&client, self.trigger, Scope::Window, from, to, self.tick).await?;
        summary.run_id = Some(run_id);
        drop(client);
        let deadline = r.config.pass_timeout;
        let scan = backfill::scan(r, run_id, from, to, self.stop, summary);
        match tokio::time::timeout(deadline, scan).await {
            Ok(result) => result.map(|()| RunStatus::Ok),
            Err(_) => Err(Error::PassTimeout(deadline)),
        }
    }
}

/// A pass's window: from the last ok pass's high-water mark less the overlap (the first pass:
/// `RECONCILE_LOOKBACK`), never older than Stripe keeps events, to `RECONCILE_SETTLE` before now
/// (webhooks still being delivered are not missing; the next pass's overlap covers them).
fn window(
    r: &Reconciler,
    high_water: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let duration = |d| ChronoDuration::from_std(d).unwrap_or_default();
    let oldest = now - duration(MAX_LOOKBACK);
    let settled = now - duration(r.config.settle);
    let to = settled.with_nanosecond(0).unwrap_or(settled);
    let from = high_water
        .map_or(now - duration(r.config.lookback), |hw| {
            hw - duration(r.config.overlap)
        })
        .max(oldest)
        .min(to);
    (from, to)
}
