//! Reconciling one Checkout Session (support's "I paid and my order still says pending"): fetch the
//! session, list the checkout events of its lifetime only (a session lives at most 24 h), record the
//! ones the ledger lacks (source `manual`), and answer a verdict.

use chrono::Utc;
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, types};
use serde::Serialize;

use crate::Reconciler;
use crate::error::Error;
use crate::orders::{self, OrderView};
use crate::runs::{self, Counts, RunStatus, Scope, Trigger};
use crate::stripe_api::{EventQuery, ListedEvent, StripeError};
use crate::verdict::{Facts, OrderFacts, StripeView, verdict};

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

impl Reconciler {
    /// Reconciles one session. A session Stripe does not know gives a verdict with
    /// `foundOnStripe: false`, not an error.
    pub async fn reconcile_session(
        &self,
        session_id: &str,
        trigger: Trigger,
    ) -> Result<Verdict, Error> {
        let session = match self.stripe.session(session_id).await {
            Ok(s) => s,
            Err(StripeError::NotFound(_)) => {
                return Ok(Verdict {
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
                });
            }
            Err(e) => return Err(e.into()),
        };
        let created = session["created"].as_i64().unwrap_or(0);
        let expires = session["expires_at"]
            .as_i64()
            .unwrap_or(created + 24 * 3600);
        let window_to = (expires + AFTER_EXPIRY_MARGIN_SECS).min(Utc::now().timestamp());
        let keys = orders::session_keys(session_id, &session);
        let before = orders::find(&self.pool.get().await?, &keys).await?;

        let mut found = Vec::new();
        let mut pages = self.stripe.events(EventQuery {
            type_pattern: Some("checkout.session.*".into()),
            created_gte: Some(created - 60),
            created_lte: Some(window_to),
            limit: 100,
            ..EventQuery::default()
        });
        while let Some(page) = pages.next_page().await? {
            found.extend(
                page.into_iter()
                    .filter(|e| e.head.object_id.as_deref() == Some(session_id)),
            );
        }
        let client = self.pool.get().await?;
        let from = chrono::DateTime::from_timestamp(created, 0).unwrap_or_default();
        let to = chrono::DateTime::from_timestamp(window_to, 0).unwrap_or_default();
        let run = runs::start(&client, trigger, Scope::Session, from, to, None).await?;
        drop(client);
        let result = self
            .apply_found(&found, before.as_ref(), &runs::request_id(run))
            .await;
        let client = self.pool.get().await?;
        let (stored, adopted) = match result {
            Ok(applied) => applied,
            Err(e) => {
                let counts = Counts {
                    seen: found.len() as u64,
                    ..Counts::default()
                };
                let text = e.run_text();
                runs::finish(&client, run, RunStatus::Failed, &counts, Some(&text)).await?;
                return Err(e);
            }
        };
        let after = orders::find(&client, &keys).await?;
        let stripe_status = session["status"].as_str().map(str::to_owned);
        let payment_status = session["payment_status"].as_str().map(str::to_owned);
        let paying = found.iter().find(|e| {
            StripeEvent::parse_str(e.raw.get()).is_ok_and(|e| {
                e.event_type == types::SESSION_ASYNC_SUCCEEDED
                    || (e.event_type == types::SESSION_COMPLETED
                        && matches!(
                            e.object.payment_status.as_deref(),
                            Some("paid" | "no_payment_required")
                        ))
            })
        });
        let verdict = verdict(&Facts {
            subject: &format!("session {session_id}"),
            session_id: Some(session_id),
            order: after.as_ref().map(|o| OrderFacts {
                status: &o.status,
                anomaly: o.anomaly.as_deref(),
            }),
            ledger_events: found.len(),
            stripe: StripeView::Known {
                status: stripe_status.as_deref(),
                payment_status: payment_status.as_deref(),
            },
            reconciled: true,
            stored_paying_event: paying.map(|e| e.head.id.as_str()),
        });
        let counts = Counts {
            stripe_requests: 0,
            seen: found.len() as u64,
            missing: stored,
            backfilled: stored + adopted,
            orders_updated: u64::from(before != after),
        };
        runs::finish(&client, run, RunStatus::Ok, &counts, None).await?;
        Ok(Verdict {
            session_id: session_id.to_owned(),
            found_on_stripe: true,
            stripe_status,
            stripe_payment_status: payment_status,
            order_before: before,
            order_after: after,
            events_found: found.len() as u64,
            events_applied: stored + adopted,
            verdict,
        })
    }

    /// Records the found events that the ledger lacks, oldest first, then applies the session's
    /// events already in the ledger that never reached its order (orphans stored before the order
    /// existed). Returns how many were stored and how many adopted.
    async fn apply_found(
        &self,
        found: &[ListedEvent],
        order: Option<&OrderView>,
        request_id: &str,
    ) -> Result<(u64, u64), Error> {
        let mut events = Vec::new();
        for listed in found {
            let raw = listed.raw.get();
            events.push((StripeEvent::parse_str(raw)?, raw));
        }
        events.sort_by_key(|(e, _)| e.created);
        let ids: Vec<&str> = events.iter().map(|(e, _)| e.id.as_str()).collect();
        let known = ledger::known_event_ids(&self.pool.get().await?, &ids).await?;
        let meta = BatchMeta {
            source: Source::Manual,
            expect_livemode: self.config.expect_livemode,
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
        let stored = ledger::record(&self.pool, &entries, meta)
            .await
            .applied()?
            .iter()
            .filter(|a| !a.duplicate)
            .count() as u64;
        let claimants = ledger::Claimants {
            changed_since: chrono::DateTime::<Utc>::MAX_UTC,
            orders: order
                .and_then(|o| uuid::Uuid::parse_str(&o.id).ok())
                .into_iter()
                .collect(),
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let adopted = ledger::adopt_orphans(&tx, &claimants, self.config.expect_livemode, 1000)
            .await?
            .linked;
        tx.commit().await?;
        Ok((stored, adopted))
    }
}
