//! Reconciling one Checkout Session (support's "I paid and my order still says pending"): fetch the
//! session, list the checkout events of its lifetime (a session lives at most 24 h) and, for a
//! completed session whose delayed payment (ACH, SEPA, Bacs) has not settled within it, the
//! settlement events since (days later, within the 30 days Stripe keeps events); record the ones
//! the ledger lacks (source `manual`), and answer a verdict.

use chrono::{DateTime, Timelike, Utc};
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use common::stripe::session::CheckoutSession;
use serde::Serialize;

use crate::Reconciler;
use crate::config::MAX_LOOKBACK;
use crate::error::Error;
use crate::orders::{self, OrderView};
use crate::runs::{self, Counts, RunStatus, Scope, Trigger};
use crate::stripe_api::{EventQuery, ListedEvent, StripeError};
use crate::verdict::{Facts, OrderFacts, StripeSays, verdict};

/// Events may be created a little after `expires_at` (the expiry itself, late async results).
const AFTER_EXPIRY_MARGIN_SECS: i64 = 3600;

/// The answer of a session reconcile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub session_id: String,
    pub found_on_stripe: bool,
    pub stripe_status: Option<String>,
    pub stripe_payment_status: Option<String>,
    pub order_before: Option<OrderView>,
    pub order_after: Option<OrderView>,
    pub events_found: u64,
    pub events_applied: u64,
    pub verdict: String,
}

impl Verdict {
    fn not_on_stripe(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_owned(),
            found_on_stripe: false,
            stripe_status: None,
            stripe_payment_status: None,
            order_before: None,
            order_after: None,
            events_found: 0,
            events_applied: 0,
            verdict: format!(
                "Stripe has no Checkout Session {session_id}: check the id (and the mode: test vs live)"
            ),
        }
    }
}

/// What recording a session's events did.
struct Applied {
    stored: u64,
    adopted: u64,
}

/// Reconciles one session. A session Stripe does not know gives a verdict with
/// `foundOnStripe: false`, not an error.
pub async fn reconcile(
    r: &Reconciler,
    session_id: &str,
    trigger: Trigger,
) -> Result<Verdict, Error> {
    let session = match r.stripe.session(session_id).await {
        Ok(s) => s,
        Err(StripeError::NotFound(_)) => return Ok(Verdict::not_on_stripe(session_id)),
        Err(e) => return Err(e.into()),
    };
    let (from, to) = lifetime(&session);
    let keys = orders::session_keys(&session);
    let before = orders::find(&r.pool.get().await?, &keys).await?;
    let mut found = events_of(r, &session, from, to, None).await?;
    let to = match settles_later(&session, &found) {
        true => {
            let now = Utc::now().with_nanosecond(0).unwrap_or_default();
            let types = [types::SESSION_ASYNC_SUCCEEDED, types::SESSION_ASYNC_FAILED];
            found.extend(events_of(r, &session, to, now, Some(&types)).await?);
            now
        }
        false => to,
    };
    let run = runs::start(
        &r.pool.get().await?,
        trigger,
        Scope::Session,
        from,
        to,
        None,
    )
    .await?;
    let applied = match apply_found(r, &found, before.as_ref(), &runs::request_id(run)).await {
        Ok(applied) => applied,
        Err(e) => {
            let counts = Counts {
                seen: found.len() as u64,
                ..Counts::default()
            };
            let text = e.run_text();
            let client = r.pool.get().await?;
            runs::finish(&client, run, RunStatus::Failed, &counts, Some(&text)).await?;
            return Err(e);
        }
    };
    let client = r.pool.get().await?;
    let after = orders::find(&client, &keys).await?;
    let counts = Counts {
        stripe_requests: 0,
        seen: found.len() as u64,
        missing: applied.stored,
        backfilled: applied.stored + applied.adopted,
        orders_updated: u64::from(before != after),
    };
    runs::finish(&client, run, RunStatus::Ok, &counts, None).await?;
    let verdict = say(&session, after.as_ref(), &found);
    Ok(Verdict {
        session_id: session.id,
        found_on_stripe: true,
        stripe_status: session.status,
        stripe_payment_status: session.payment_status,
        order_before: before,
        order_after: after,
        events_found: found.len() as u64,
        events_applied: applied.stored + applied.adopted,
        verdict,
    })
}

/// Where a session's events lie: from its creation to its expiry (plus a margin), never past now.
fn lifetime(session: &CheckoutSession) -> (DateTime<Utc>, DateTime<Utc>) {
    let created = session.created.timestamp();
    let expires = session
        .expires_at
        .map_or(created + 24 * 3600, |e| e.timestamp());
    let to = (expires + AFTER_EXPIRY_MARGIN_SECS).min(Utc::now().timestamp());
    let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
    (at(created), at(to))
}

/// Whether the session's payment may have settled after its lifetime: it completed, and no
/// delayed payment result was found within it (a delayed method settles days later).
fn settles_later(session: &CheckoutSession, found: &[ListedEvent]) -> bool {
    let async_result = |e: &ListedEvent| {
        matches!(
            e.head.event_type.as_deref(),
            Some(types::SESSION_ASYNC_SUCCEEDED | types::SESSION_ASYNC_FAILED)
        )
    };
    let completed_unpaid = found.iter().any(|e| {
        e.head.event_type.as_deref() == Some(types::SESSION_COMPLETED)
            && StripeEvent::parse_str(e.raw.get()).is_ok_and(|event| !event.pays())
    });
    session.status.as_deref() == Some("complete")
        && (completed_unpaid || found.is_empty())
        && !found.iter().any(async_result)
}

/// The events of `session` created between `from` (less a minute) and `to`: its checkout events,
/// or those of `types`. Never older than Stripe keeps events.
async fn events_of(
    r: &Reconciler,
    session: &CheckoutSession,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    types: Option<&[&str]>,
) -> Result<Vec<ListedEvent>, Error> {
    let oldest =
        (Utc::now() - chrono::Duration::seconds(MAX_LOOKBACK.as_secs() as i64)).timestamp();
    let mut found = Vec::new();
    let mut pages = r.stripe.events(EventQuery {
        type_pattern: types.is_none().then(|| "checkout.session.*".into()),
        types: types
            .unwrap_or_default()
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
        created_gte: Some((from.timestamp() - 60).max(oldest)),
        created_lte: Some(to.timestamp()),
        limit: 100,
        ..EventQuery::default()
    });
    while let Some(page) = pages.next_page().await? {
        found.extend(
            page.into_iter()
                .filter(|e| e.head.object_id.as_deref() == Some(session.id.as_str())),
        );
    }
    Ok(found)
}

/// The verdict for the session after its events were recorded.
fn say(session: &CheckoutSession, after: Option<&OrderView>, found: &[ListedEvent]) -> String {
    let paying = found
        .iter()
        .find(|e| StripeEvent::parse_str(e.raw.get()).is_ok_and(|event| event.pays()));
    verdict(&Facts {
        subject: &format!("session {}", session.id),
        session_id: Some(&session.id),
        order: after.map(|o| OrderFacts {
            status: o.status,
            anomaly: o.anomaly.as_deref(),
        }),
        ledger_events: found.len(),
        stripe: StripeSays::Known {
            status: session.status.as_deref(),
            payment_status: session.payment_status.as_deref(),
        },
        reconciled: true,
        stored_paying_event: paying.map(|e| e.head.id.as_str()),
    })
}

/// Records the found events that the ledger lacks, oldest first, then applies the session's
/// events already in the ledger that never reached its order (orphans stored before the order
/// existed).
async fn apply_found(
    r: &Reconciler,
    found: &[ListedEvent],
    order: Option<&OrderView>,
    request_id: &str,
) -> Result<Applied, Error> {
    let mut events = Vec::new();
    for listed in found {
        let raw = listed.raw.get();
        events.push((StripeEvent::parse_str(raw)?, raw));
    }
    events.sort_by_key(|(e, _)| e.created);
    let ids: Vec<&str> = events.iter().map(|(e, _)| e.id.as_str()).collect();
    let known = ledger::known_event_ids(&r.pool.get().await?, &ids).await?;
    let meta = BatchMeta {
        source: Source::Manual,
        expect_livemode: r.config.expect_livemode,
    };
    let entries: Vec<BatchEntry<'_>> = events
        .iter()
        .filter(|(e, _)| !known.contains(&e.id))
        .map(|(event, payload)| BatchEntry {
            event,
            payload,
            request_id: Some(request_id),
        })
        .collect();
    let stored = ledger::record(&r.pool, &entries, meta)
        .await
        .applied()?
        .iter()
        .filter(|a| !a.duplicate)
        .count() as u64;
    let claimants = ledger::Claimants {
        changed_since: DateTime::<Utc>::MAX_UTC,
        orders: order.map(|o| o.id).into_iter().collect(),
    };
    let mut client = r.pool.get().await?;
    let tx = client.transaction().await?;
    let adopted = ledger::adopt_orphans(&tx, &claimants, r.config.expect_livemode, 1000)
        .await?
        .linked;
    tx.commit().await?;
    Ok(Applied { stored, adopted })
}
