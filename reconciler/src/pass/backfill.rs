//! The work of a pass: each open window's order events listed page by page from where its scan
//! stopped, the ones the ledger lacks found with one query per page and recorded through the
//! ledger's one write (source `reconciler`), the window's cursor moved past each page; and the
//! orphans whose order now exists adopted.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use tokio::sync::watch;

use super::PassSummary;
use super::scans::{self, Scan};
use crate::Reconciler;
use crate::error::Error;
use crate::runs;
use crate::stripe_api::{EventQuery, ListedEvent, StripeError};

/// Orphans adopted per pass at most (the next pass takes the rest).
const ORPHANS_PER_PASS: i64 = 10_000;

/// When a pass must end (`RECONCILE_PASS_TIMEOUT` after it started). It is looked at between
/// pages, and a request to Stripe is abandoned when it passes; a page's writes, bounded by the
/// statement time-out, are never cut in the middle, so what a pass reports is what it wrote.
pub(super) struct Deadline {
    at: tokio::time::Instant,
    limit: std::time::Duration,
}

impl Deadline {
    pub(super) fn after(limit: std::time::Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + limit,
            limit,
        }
    }

    fn check(&self) -> Result<(), Error> {
        match tokio::time::Instant::now() >= self.at {
            true => Err(Error::PassTimeout(self.limit)),
            false => Ok(()),
        }
    }

    /// The next page, unless the deadline passes first.
    async fn next_page(
        &self,
        pages: &mut crate::stripe_api::EventPager<'_>,
    ) -> Result<Option<Vec<ListedEvent>>, Error> {
        match tokio::time::timeout_at(self.at, pages.next_page()).await {
            Ok(page) => Ok(page?),
            Err(_) => Err(Error::PassTimeout(self.limit)),
        }
    }
}

/// Scans every open window, newest first, resuming each where its scan stopped, until the
/// deadline.
pub(super) async fn scan_windows(
    r: &Reconciler,
    run_id: i64,
    windows: &[Scan],
    deadline: &Deadline,
    stop: &watch::Receiver<bool>,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    for window in windows {
        scan_window(r, run_id, window, deadline, stop, summary).await?;
    }
    match summary.failed_events.len() {
        0 => Ok(()),
        n => Err(Error::EventsNotWritten(n)),
    }
}

/// Lists one window's events (from its cursor on) and records the missing ones. After each page,
/// the window's cursor moves past it, unless an event of that page or an earlier one could not be
/// written: the next pass lists it again from there. The window is done when its listing ends with
/// every event written.
async fn scan_window(
    r: &Reconciler,
    run_id: i64,
    window: &Scan,
    deadline: &Deadline,
    stop: &watch::Receiver<bool>,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    let request_id = runs::request_id(run_id);
    let mut query = EventQuery {
        types: types::ORDER_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        created_gte: Some(window.from.timestamp()),
        created_lte: Some(window.to.timestamp()),
        limit: 100,
        ..EventQuery::default()
    };
    query.starting_after = window.cursor.as_ref().map(|(id, _)| id.clone());
    let mut pages = r.stripe.events(query.clone());
    let failed_before = summary.failed_events.len();
    let mut first = true;
    loop {
        if *stop.borrow() {
            return Err(Error::Stopped);
        }
        deadline.check()?;
        let page = match deadline.next_page(&mut pages).await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(Error::Stripe(StripeError::NotFound(_))) if first && window.cursor.is_some() => {
                // The cursor's event is gone from Stripe (older than 30 days): list again from
                // its second, without the cursor.
                query.starting_after = None;
                query.created_lte = window.cursor.as_ref().map(|(_, at)| at.timestamp());
                pages = r.stripe.events(query.clone());
                first = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        first = false;
        summary.events_seen += page.len() as u64;
        r.metrics.events_seen.increment(page.len() as u64);
        backfill(r, &page, &request_id, summary).await?;
        let clean = summary.failed_events.len() == failed_before;
        if let (true, Some(last)) = (clean, page.last()) {
            let created = last
                .head
                .created
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .unwrap_or(window.to);
            let client = r.pool.get().await?;
            scans::advance(
                &client,
                window.id,
                &last.head.id,
                created,
                page.len() as i64,
            )
            .await?;
        }
    }
    if summary.failed_events.len() == failed_before {
        scans::complete(&r.pool.get().await?, window.id, run_id).await?;
    }
    Ok(())
}

/// Adopts the orphans that the orders changed since the last complete adoption (less the
/// overlap) claim; `from` when none ran yet. Runs every pass, whatever Stripe answered.
pub(super) async fn adopt(
    r: &Reconciler,
    run_id: i64,
    from: DateTime<Utc>,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    let mut client = r.pool.get().await?;
    let overlap = ChronoDuration::from_std(r.config.overlap).unwrap_or_default();
    let changed_since = runs::last_adoption_start(&client).await?.unwrap_or(from) - overlap;
    let claimants = ledger::Claimants {
        changed_since,
        orders: Vec::new(),
    };
    let tx = client.transaction().await?;
    let adopted =
        ledger::adopt_orphans(&tx, &claimants, r.config.expect_livemode, ORPHANS_PER_PASS).await?;
    if adopted.complete {
        // Else the next pass asks again from the same point.
        runs::adopted(&tx, run_id).await?;
    }
    tx.commit().await?;
    summary.orphans_linked = adopted.linked;
    summary.orders_updated += adopted.transitions.len() as u64;
    Ok(())
}

/// The events of a page that the ledger lacks, parsed, oldest first. Only they are parsed in full;
/// an event that cannot be read is named on the run and the page goes on.
async fn missing<'p>(
    r: &Reconciler,
    page: &'p [ListedEvent],
    summary: &mut PassSummary,
) -> Result<Vec<(StripeEvent, &'p str)>, Error> {
    let ids: Vec<&str> = page.iter().map(|e| e.head.id.as_str()).collect();
    let known = ledger::known_event_ids(&r.pool.get().await?, &ids).await?;
    let mut missing = Vec::new();
    for listed in page.iter().filter(|e| !known.contains(&e.head.id)) {
        let raw = listed.raw.get();
        match StripeEvent::parse_str(raw) {
            Ok(event) => missing.push((event, raw)),
            Err(e) => {
                tracing::error!(eventId = %listed.head.id, error = %e, "event not backfilled");
                summary
                    .failed_events
                    .push(format!("{} ({e})", listed.head.id));
            }
        }
    }
    missing.sort_by_key(|(e, _)| e.created);
    Ok(missing)
}

/// Records the events of one page that the ledger lacks, oldest first, in one set-based write as
/// the edge's group commit does (the ledger retries the events of a page that failed on a
/// statement on their own). Each is stored as the exact JSON Stripe sent.
async fn backfill(
    r: &Reconciler,
    page: &[ListedEvent],
    request_id: &str,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    let missing = missing(r, page, summary).await?;
    if missing.is_empty() {
        return Ok(());
    }
    summary.events_missing += missing.len() as u64;
    r.metrics.events_missing.increment(missing.len() as u64);
    let meta = BatchMeta {
        source: Source::Reconciler,
        expect_livemode: r.config.expect_livemode,
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
    let recorded = ledger::record(&r.pool, &entries, meta).await;
    if let Some(e) = recorded.failure.filter(|e| !e.is_statement_failure()) {
        return Err(e.into());
    }
    let (mut backfilled, mut updated) = (0u64, 0u64);
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
        r.metrics.money(applied.money);
        let age = (now - event.created).num_milliseconds().max(0) as f64 / 1000.0;
        r.metrics.missing_event_age.record_value(age);
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
    r.metrics.events_backfilled.increment(backfilled);
    Ok(())
}
