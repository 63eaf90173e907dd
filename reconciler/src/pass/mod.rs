//! One reconcile pass over a time window: list Stripe's order events page by page, find the ones
//! the ledger lacks with one query per page, record them through the shared ledger code (source
//! `reconciler`), adopt orphans whose order now exists, and record the pass in `reconcile_runs`.
//!
//! Only one pass runs at a time across replicas (a Postgres advisory lock; the loser records a
//! `skipped` run). A pass that fails part-way keeps what it committed and does not advance the
//! high-water mark (only `ok` runs do).

mod backfill;
pub(crate) mod lock;
mod scans;

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Timelike, Utc};
use deadpool_postgres::GenericClient;
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
#[derive(Debug, Clone, Serialize, PartialEq)]
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
    /// Windows of Stripe's history still to scan after this pass (0 when caught up).
    pub windows_open: u64,
    /// Seconds of Stripe's history in those windows not scanned yet: how far behind the
    /// reconciler is.
    pub backlog_seconds: f64,
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
            windows_open: 0,
            backlog_seconds: 0.0,
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
    if let Some(id) = summary.run_id {
        let counts = summary.counts();
        runs::record_end(
            &r.pool,
            "pass",
            id,
            summary.status,
            &counts,
            summary.error.as_deref(),
        )
        .await;
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
        summary.run_id =
            Some(runs::skipped(&client, self.trigger, Scope::Window, self.tick, why).await?);
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

    /// The pass itself, under the lock: unless the tick's pass is done already, records the run,
    /// opens the window of Stripe's history since the newest one, scans every open window
    /// (newest first, each from where its scan stopped) within `RECONCILE_PASS_TIMEOUT`, then
    /// adopts orphans, whatever Stripe answered.
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
        let newest = match scans::newest(&client).await? {
            // A recheck of its end only when it was scanned, and none is waiting.
            Some((end, scanned)) => Some((end, scanned && !scans::recheck_open(&client).await?)),
            // Before the first window was recorded: the last ok pass of an earlier build.
            None => runs::high_water(&client).await?.map(|end| (end, true)),
        };
        let windows = Windows::new(r, newest, Utc::now());
        summary.window_from = Some(windows.from());
        summary.window_to = Some(windows.to);
        let run_id = runs::start(
            &client,
            self.trigger,
            Scope::Window,
            windows.from(),
            windows.to,
            self.tick,
        )
        .await?;
        summary.run_id = Some(run_id);
        windows.open(&client, run_id).await?;
        let open = scans::open_windows(&client).await?;
        drop(client);
        let deadline = backfill::Deadline::after(r.config.pass_timeout);
        let scanned = backfill::scan_windows(r, run_id, &open, &deadline, self.stop, summary).await;
        let adopted = backfill::adopt(r, run_id, windows.from(), summary).await;
        let (open, backlog) = scans::backlog(&r.pool.get().await?).await?;
        summary.windows_open = open;
        summary.backlog_seconds = backlog;
        r.metrics.backlog.set_value(backlog);
        if let Err(e) = &adopted {
            tracing::error!(error = %e, "orphan adoption failed");
        }
        scanned?;
        adopted?;
        Ok(RunStatus::Ok)
    }
}

/// The windows a pass opens: the new one, from the end of the newest window (the first pass:
/// `RECONCILE_LOOKBACK` back) to `RECONCILE_SETTLE` before now (webhooks still being delivered are
/// not missing; the next pass's recheck covers them), and, when the newest window's scan is done
/// and no recheck is waiting, the recheck of `RECONCILE_OVERLAP` before its end (for events that
/// became visible late; an open window still covers its own end). Never older than Stripe keeps
/// events.
struct Windows {
    recheck_from: Option<DateTime<Utc>>,
    new_from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Windows {
    fn new(r: &Reconciler, newest: Option<(DateTime<Utc>, bool)>, now: DateTime<Utc>) -> Self {
        let duration = |d| ChronoDuration::from_std(d).unwrap_or_default();
        let oldest = now - duration(MAX_LOOKBACK);
        let settled = now - duration(r.config.settle);
        let to = settled.with_nanosecond(0).unwrap_or(settled);
        let clamp = |t: DateTime<Utc>| t.max(oldest).min(to);
        match newest {
            None => Self {
                recheck_from: None,
                new_from: clamp(now - duration(r.config.lookback)),
                to,
            },
            Some((end, scanned)) => Self {
                recheck_from: scanned.then(|| clamp(end - duration(r.config.overlap))),
                new_from: clamp(end),
                to,
            },
        }
    }

    /// Where the pass's windows start.
    fn from(&self) -> DateTime<Utc> {
        self.recheck_from.unwrap_or(self.new_from)
    }

    async fn open<C: GenericClient>(&self, client: &C, run: i64) -> Result<(), Error> {
        if self.new_from < self.to {
            scans::open(client, self.new_from, self.to, false, run).await?;
        }
        if let Some(from) = self.recheck_from.filter(|from| *from < self.new_from) {
            scans::open(client, from, self.new_from, true, run).await?;
        }
        Ok(())
    }
}
