//! The work of a pass over its window: Stripe's order events listed page by page, the ones the
//! ledger lacks found with one query per page and recorded through the ledger's one write (source
//! `reconciler`), then the orphans whose order now exists adopted.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use tokio::sync::watch;

use super::PassSummary;
use crate::Reconciler;
use crate::error::Error;
use crate::runs;
use crate::stripe_api::{EventQuery, ListedEvent};

/// Orphans adopted per pass at most (the next pass takes the rest).
const ORPHANS_PER_PASS: i64 = 10_000;

/// Lists the window's events and records the missing ones, then adopts orphans.
pub(super) async fn scan(
    r: &Reconciler,
    run_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    stop: &watch::Receiver<bool>,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    let request_id = runs::request_id(run_id);
    let mut pages = r.stripe.events(EventQuery {
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
        r.metrics.events_seen.increment(page.len() as u64);
        backfill(r, &page, &request_id, summary).await?;
    }
    adopt(r, from, summary).await?;
    match summary.failed_events.len() {
        0 => Ok(()),
        n => Err(Error::EventsNotWritten(n)),
    }
}

/// Adopts the orphans that the orders changed since the last ok pass (less the overlap) claim.
async fn adopt(
    r: &Reconciler,
    from: DateTime<Utc>,
    summary: &mut PassSummary,
) -> Result<(), Error> {
    let mut client = r.pool.get().await?;
    let overlap = ChronoDuration::from_std(r.config.overlap).unwrap_or_default();
    let changed_since = runs::last_ok_start(&client).await?.unwrap_or(from) - overlap;
    let claimants = ledger::Claimants {
        changed_since,
        orders: Vec::new(),
    };
    let tx = client.transaction().await?;
    let adopted =
        ledger::adopt_orphans(&tx, &claimants, r.config.expect_livemode, ORPHANS_PER_PASS).await?;
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
