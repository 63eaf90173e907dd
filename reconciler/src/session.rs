//! Reconciling one Checkout Session (support's "I paid and my order still says pending"): fetch the
//! session, list the checkout events of its lifetime only (a session lives at most 24 h), record the
//! ones the ledger lacks (source `manual`), and answer a verdict.

use chrono::Utc;
use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::{StripeEvent, storable_payload};
use serde::Serialize;
use serde_json::Value;

use crate::Reconciler;
use crate::pass::{PassError, Trigger};
use serde_json::value::RawValue;

use crate::stripe_api::{EventHead, EventQuery, StripeError};

/// Events may be created a little after `expires_at` (the expiry itself, late async results).
const AFTER_EXPIRY_MARGIN_SECS: i64 = 3600;

/// An order as the verdict shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrderState {
    pub id: String,
    pub status: String,
    pub paid_at: Option<String>,
    pub anomaly: Option<String>,
}

/// The answer of a session reconcile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub session_id: String,
    pub found_on_stripe: bool,
    pub stripe_status: Option<String>,
    pub stripe_payment_status: Option<String>,
    pub order_before: Option<OrderState>,
    pub order_after: Option<OrderState>,
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
    ) -> Result<Verdict, PassError> {
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
        let before = self.order_state(session_id, &session).await?;

        let mut found = Vec::new();
        let mut query = EventQuery {
            type_pattern: Some("checkout.session.*".into()),
            created_gte: Some(created - 60),
            created_lte: Some(window_to),
            limit: 100,
            ..EventQuery::default()
        };
        loop {
            let page = self.stripe.list_events(&query).await?;
            let mut last = None;
            for raw in page.data {
                let head = EventHead::read(&raw)?;
                if head.object_id.as_deref() == Some(session_id) {
                    found.push(raw);
                }
                last = Some(head.id);
            }
            match (page.has_more, last) {
                (true, Some(last)) => query.starting_after = Some(last),
                _ => break,
            }
        }
        let applied = self.apply_found(&found, session_id).await?;
        let after = self.order_state(session_id, &session).await?;
        let stripe_status = session["status"].as_str().map(str::to_owned);
        let payment_status = session["payment_status"].as_str().map(str::to_owned);
        let verdict = verdict_text(
            session_id,
            payment_status.as_deref(),
            stripe_status.as_deref(),
            after.as_ref(),
        );
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO reconcile_runs (trigger, scope, finished_at, window_from, window_to,
                   stripe_requests, events_seen, events_missing, events_backfilled, orders_updated, status)
                 VALUES ($1, 'session', now(), to_timestamp($2), to_timestamp($3), 0, $4, $5, $5,
                   $6, 'ok')",
                &[
                    &trigger.as_str(),
                    &(created as f64),
                    &(window_to as f64),
                    &(found.len() as i32),
                    &(applied as i32),
                    &i32::from(before != after),
                ],
            )
            .await?;
        Ok(Verdict {
            session_id: session_id.to_owned(),
            found_on_stripe: true,
            stripe_status,
            stripe_payment_status: payment_status,
            order_before: before,
            order_after: after,
            events_found: found.len() as u64,
            events_applied: applied,
            verdict,
        })
    }

    async fn apply_found(
        &self,
        found: &[Box<RawValue>],
        session_id: &str,
    ) -> Result<u64, PassError> {
        let mut events = Vec::new();
        for raw in found {
            let e = StripeEvent::parse(raw.get().as_bytes())
                .map_err(|e| PassError::BadEvent(e.to_string()))?;
            events.push((e, raw.get()));
        }
        events.sort_by_key(|(e, _)| e.created);
        let ids: Vec<&str> = events.iter().map(|(e, _)| e.id.as_str()).collect();
        let mut client = self.pool.get().await?;
        let known = ledger::known_event_ids(&client, &ids).await?;
        let request_id = format!("session-reconcile-{session_id}");
        let meta = BatchMeta {
            source: Source::Manual,
            expect_livemode: self.config.expect_livemode,
        };
        let payloads: Vec<_> = events.iter().map(|(_, p)| storable_payload(p)).collect();
        let entries: Vec<BatchEntry<'_>> = events
            .iter()
            .zip(&payloads)
            .filter(|((e, _), _)| !known.contains(&e.id))
            .map(|((event, _), payload)| BatchEntry {
                event,
                payload,
                request_id: Some(&request_id),
            })
            .collect();
        let tx = client.transaction().await?;
        let applied = ledger::apply_batch(&tx, &entries, meta)
            .await?
            .iter()
            .filter(|a| !a.duplicate)
            .count() as u64;
        tx.commit().await?;
        Ok(applied)
    }

    /// The order of a session: by session id, else `client_reference_id`, else `metadata.order_id`.
    async fn order_state(
        &self,
        session_id: &str,
        session: &Value,
    ) -> Result<Option<OrderState>, PassError> {
        let as_uuid = |v: &Value| v.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok());
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id::text, status, paid_at::text, anomaly FROM orders
                 WHERE id = COALESCE(
                   (SELECT id FROM orders WHERE stripe_session_id = $1),
                   (SELECT id FROM orders WHERE id = $2),
                   (SELECT id FROM orders WHERE id = $3))",
                &[
                    &session_id,
                    &as_uuid(&session["client_reference_id"]),
                    &as_uuid(&session["metadata"]["order_id"]),
                ],
            )
            .await?;
        Ok(row.map(|r| OrderState {
            id: r.get(0),
            status: r.get(1),
            paid_at: r.get(2),
            anomaly: r.get(3),
        }))
    }
}

fn verdict_text(
    session_id: &str,
    payment_status: Option<&str>,
    status: Option<&str>,
    order: Option<&OrderState>,
) -> String {
    let paid_on_stripe = matches!(payment_status, Some("paid" | "no_payment_required"));
    match (paid_on_stripe, order) {
        (true, Some(o)) if o.status == "paid" || o.status == "refunded" => {
            format!("paid on Stripe, {} here: nothing to do", o.status)
        }
        (true, Some(o)) => match &o.anomaly {
            Some(a) => format!(
                "paid on Stripe, {} here because of an anomaly: {a}",
                o.status
            ),
            None => format!(
                "paid on Stripe, {} here: no paying event in the ledger; resend it from Stripe",
                o.status
            ),
        },
        (true, None) => format!(
            "paid on Stripe, but no order here has session {session_id}: the app never created it"
        ),
        (false, Some(o)) => format!(
            "not paid on Stripe (status {}, payment_status {}); {} here",
            status.unwrap_or("?"),
            payment_status.unwrap_or("?"),
            o.status
        ),
        (false, None) => format!(
            "not paid on Stripe (status {}, payment_status {}); no order here",
            status.unwrap_or("?"),
            payment_status.unwrap_or("?")
        ),
    }
}
