//! One page of a sweep: each listed object as the synthetic event its state implies (a paid or
//! expired session, a refund or dispute in its status), the ones the orders lack found with one
//! query, and those recorded through the ledger (source `sweep`, the object's exact bytes as
//! payload, ids `sweep:<object id>:<state>` so that a second sweep finds them there).

use chrono::Utc;
use common::ledger::money::dispute_rank;
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use common::stripe::is_paid;
use serde::Deserialize;

use super::SweepSummary;
use crate::Reconciler;
use crate::error::Error;
use crate::stripe_api::{ListedObject, ObjectList};

/// The fields of a listed object that say which event its state implies.
#[derive(Deserialize)]
struct State<'a> {
    #[serde(default, borrow)]
    status: Option<&'a str>,
    #[serde(default, borrow)]
    payment_status: Option<&'a str>,
    #[serde(default)]
    livemode: Option<bool>,
}

/// The synthetic event of a listed object, when its state is one the ledger applies.
fn synthetic(
    list: ObjectList,
    object: &ListedObject,
    key_livemode: bool,
) -> Option<Result<StripeEvent, Error>> {
    let state: State<'_> = serde_json::from_str(object.raw.get()).ok()?;
    let status = state.status?;
    let (event_type, label, created) = match list {
        ObjectList::CheckoutSessions => match (status, state.payment_status) {
            ("complete", Some(ps)) if is_paid(ps) => (
                types::SESSION_COMPLETED,
                "paid",
                object.created.unwrap_or(0),
            ),
            ("expired", _) => (
                types::SESSION_EXPIRED,
                "expired",
                object.created.unwrap_or(0),
            ),
            _ => return None,
        },
        // What Stripe lists now is the object's newest state: newer than any event about it.
        ObjectList::Refunds => (types::REFUND_UPDATED, status, Utc::now().timestamp()),
        ObjectList::Disputes => (
            if dispute_rank(status) == 3 {
                types::DISPUTE_CLOSED
            } else {
                types::DISPUTE_UPDATED
            },
            status,
            Utc::now().timestamp(),
        ),
    };
    let id = format!("sweep:{}:{label}", object.id);
    Some(
        StripeEvent::synthetic(
            &id,
            event_type,
            created,
            state.livemode.unwrap_or(key_livemode),
            object.raw.get(),
        )
        .map_err(Error::from),
    )
}

/// Applies what the orders lack from one page of `list`.
pub(super) async fn page(
    r: &Reconciler,
    run_id: i64,
    list: ObjectList,
    objects: &[ListedObject],
    summary: &mut SweepSummary,
) -> Result<(), Error> {
    summary.objects_seen += objects.len() as u64;
    r.metrics.sweep_pages.inc(list.into());
    let key_livemode = r.stripe.is_live();
    // The candidates: each synthetic event and its object's exact bytes.
    let mut events: Vec<StripeEvent> = Vec::new();
    let mut payloads: Vec<&str> = Vec::new();
    for object in objects {
        match synthetic(list, object, key_livemode) {
            Some(Ok(event)) => {
                events.push(event);
                payloads.push(object.raw.get());
            }
            Some(Err(e)) => {
                tracing::warn!(object = %object.id, error = %e, "a listed object cannot be read")
            }
            None => {}
        }
    }
    let lacking = ledger::lacking(&r.pool.get().await?, &events).await?;
    if lacking.is_empty() {
        return Ok(());
    }
    summary.objects_missing += lacking.len() as u64;
    let request_id = crate::runs::request_id(run_id);
    let entries: Vec<BatchEntry<'_>> = lacking
        .iter()
        .filter_map(|&i| Some((events.get(i)?, *payloads.get(i)?)))
        .map(|(event, payload)| BatchEntry {
            event,
            payload,
            request_id: Some(&request_id),
        })
        .collect();
    let meta = BatchMeta {
        source: Source::Sweep,
        expect_livemode: r.config.expect_livemode,
    };
    let recorded = ledger::record(&r.pool, &entries, meta).await;
    if let Some(e) = recorded.failure.filter(|e| !e.is_statement_failure()) {
        return Err(e.into());
    }
    for (entry, result) in entries.iter().zip(recorded.answers) {
        let applied = match result {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(eventId = %entry.event.id, error = %e, "swept object not applied");
                summary.failed_objects += 1;
                continue;
            }
        };
        if applied.duplicate {
            continue;
        }
        summary.objects_applied += 1;
        r.metrics.sweep_objects_applied.inc(list.into());
        r.metrics.money(applied.money);
        summary.orders_updated += u64::from(applied.transition.is_some());
        tracing::info!(
            eventId = %entry.event.id,
            eventType = %entry.event.event_type,
            orderId = applied.order_id.map(tracing::field::display),
            transition = applied.transition_text().map(tracing::field::display),
            "the sweep applied an object the ledger lacked"
        );
    }
    Ok(())
}
