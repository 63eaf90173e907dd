//! The object-level sweep (`reconciler sweep`, or `SWEEP_SCHEDULE`): the Events API keeps 30 days
//! and Stripe, in rare cases, never generates an event; the sweep lists the objects themselves
//! (Checkout Sessions, refunds, disputes) created in a window of any age, and applies what the
//! orders lack through the ledger (source `sweep`). It shares the pass's lock (so it never runs
//! beside a pass), its Stripe budget, size caps and time-outs, and `RECONCILE_PASS_TIMEOUT`; each
//! list's progress is stored page by page, so that a sweep that fails resumes where it stopped.
//! Recorded in `reconcile_runs` with scope `sweep`.
//!
//! - `cursors`: where each list got to, and the slices a sweep reads.
//! - `apply`: one page: the synthetic events, what the orders lack, the ledger write.

mod apply;
mod cursors;

use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::Reconciler;
use crate::error::Error;
use crate::pass::lock::PassLock;
use crate::runs::{self, Counts, RunStatus, Scope, Trigger};
use crate::stripe_api::ObjectList;

/// The JSON summary of a sweep (what `reconciler sweep` prints).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    pub run_id: Option<i64>,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub stripe_requests: u64,
    /// Objects listed.
    pub objects_seen: u64,
    /// Objects whose state their order lacked.
    pub objects_missing: u64,
    /// Of those, applied now (the others were applied meanwhile by a webhook or a pass).
    pub objects_applied: u64,
    pub orders_updated: u64,
    /// Objects that could not be written; the sweep then fails and the next one retries them.
    pub failed_objects: u64,
    /// An unfinished earlier sweep was resumed from its stored cursor.
    pub resumed: bool,
    pub error: Option<String>,
}

impl SweepSummary {
    fn counts(&self) -> Counts {
        Counts {
            stripe_requests: self.stripe_requests,
            seen: self.objects_seen,
            missing: self.objects_missing,
            backfilled: self.objects_applied,
            orders_updated: self.orders_updated,
        }
    }
}

/// A point in time on the command line: RFC 3339 (`2026-10-01T00:00:00Z`), a date (`2026-10-01`,
/// midnight UTC), or a duration back from `now` (`35d`, `12h`).
pub fn parse_instant(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    match common::config::parse_duration(v) {
        Ok(back) => Ok(now - ChronoDuration::from_std(back).unwrap_or_default()),
        Err(_) => Err(format!(
            "`{v}` is not a time: give 2026-10-01T00:00:00Z, 2026-10-01 or a duration back such as 35d"
        )),
    }
}

/// The window of a scheduled sweep: `SWEEP_LOOKBACK` back from now.
pub fn scheduled_window(r: &Reconciler, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let lookback = ChronoDuration::from_std(r.config.sweep_lookback).unwrap_or_default();
    (now - lookback, now)
}

/// Sweeps the objects created in `[from, to]` (and whatever an unfinished sweep left), unless a
/// pass or another sweep holds the lock (then `skipped`). `stop` ends it between pages.
pub async fn run(
    r: &Reconciler,
    trigger: Trigger,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    stop: &watch::Receiver<bool>,
) -> SweepSummary {
    let started = Instant::now();
    let requests_before = r.stripe.requests();
    let mut summary = SweepSummary {
        run_id: None,
        status: RunStatus::Failed,
        trigger,
        window_from: from,
        window_to: to,
        stripe_requests: 0,
        objects_seen: 0,
        objects_missing: 0,
        objects_applied: 0,
        orders_updated: 0,
        failed_objects: 0,
        resumed: false,
        error: None,
    };
    let result = locked(r, trigger, stop, &mut summary).await;
    summary.stripe_requests = r.stripe.requests() - requests_before;
    match result {
        Ok(status) => summary.status = status,
        Err(e) => {
            summary.status = RunStatus::Failed;
            summary.error = Some(e.run_text());
            tracing::error!(error = %e, runId = summary.run_id, "sweep failed");
        }
    }
    if let Some(id) = summary.run_id {
        let counts = summary.counts();
        runs::record_end(
            &r.pool,
            "sweep",
            id,
            summary.status,
            &counts,
            summary.error.as_deref(),
        )
        .await;
    }
    r.metrics.sweep_runs.inc((trigger, summary.status));
    r.metrics
        .sweep_duration
        .record_value(started.elapsed().as_secs_f64());
    if summary.status == RunStatus::Ok {
        r.metrics
            .sweep_last_success
            .set_value(Utc::now().timestamp() as f64);
    }
    tracing::info!(
        runId = summary.run_id,
        status = summary.status.as_str(),
        objectsSeen = summary.objects_seen,
        objectsMissing = summary.objects_missing,
        objectsApplied = summary.objects_applied,
        ordersUpdated = summary.orders_updated,
        stripeRequests = summary.stripe_requests,
        "sweep finished"
    );
    summary
}

/// Takes the pass lock (held elsewhere: `skipped`), sweeps, releases it.
async fn locked(
    r: &Reconciler,
    trigger: Trigger,
    stop: &watch::Receiver<bool>,
    summary: &mut SweepSummary,
) -> Result<RunStatus, Error> {
    let Some(lock) = PassLock::try_acquire(&r.config.db).await? else {
        let client = r.pool.get().await?;
        summary.run_id = Some(
            runs::skipped(
                &client,
                trigger,
                Scope::Sweep,
                None,
                "a pass or another sweep holds the lock",
            )
            .await?,
        );
        return Ok(RunStatus::Skipped);
    };
    let result = sweep(r, trigger, stop, summary).await;
    lock.release().await;
    result
}

/// Every list, each segment page by page within `RECONCILE_PASS_TIMEOUT`.
async fn sweep(
    r: &Reconciler,
    trigger: Trigger,
    stop: &watch::Receiver<bool>,
    summary: &mut SweepSummary,
) -> Result<RunStatus, Error> {
    let (from, to) = (summary.window_from, summary.window_to);
    let client = r.pool.get().await?;
    runs::fail_interrupted(&client).await?;
    let run_id = runs::start(&client, trigger, Scope::Sweep, from, to, None).await?;
    summary.run_id = Some(run_id);
    drop(client);
    let deadline = tokio::time::Instant::now() + r.config.pass_timeout;
    for list in ObjectList::ALL {
        let segments = cursors::plan(&r.pool.get().await?, list, from, to).await?;
        summary.resumed |= segments.iter().any(|s| s.cursor.is_some());
        for segment in &segments {
            let mut pages = r.stripe.objects(
                list,
                segment.from.timestamp(),
                segment.to.timestamp(),
                segment.cursor.clone(),
            );
            loop {
                if *stop.borrow() {
                    return Err(Error::Stopped);
                }
                let page = match tokio::time::timeout_at(deadline, pages.next_page()).await {
                    Ok(page) => page?,
                    Err(_) => return Err(Error::PassTimeout(r.config.pass_timeout)),
                };
                let Some(objects) = page else { break };
                apply::page(r, run_id, list, &objects, summary).await?;
                if summary.failed_objects > 0 {
                    return Err(Error::EventsNotWritten(summary.failed_objects as usize));
                }
                if segment.stored
                    && let Some(cursor) = pages.cursor()
                {
                    cursors::advance(&r.pool.get().await?, list, cursor).await?;
                }
            }
        }
        cursors::complete(&r.pool.get().await?, list, from, to).await?;
    }
    Ok(RunStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_as_support_types_them() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |v| parse_instant(v, now).map(|t| t.to_rfc3339());
        assert_eq!(at("2026-10-01"), Ok("2026-10-01T00:00:00+00:00".into()));
        assert_eq!(
            at("2026-10-01T12:30:00+02:00"),
            Ok("2026-10-01T10:30:00+00:00".into())
        );
        assert_eq!(at("35d"), Ok("2026-10-30T10:00:00+00:00".into()));
        assert!(at("yesterday").is_err());
    }
}
