//! `POST /stripe/webhook`: the cheap checks of `Stripe-Signature` before any byte of the body is
//! read → the raw body, size-limited and drawn from the global body budget → the signature → the
//! event → the group-commit writer → 200 after the `COMMIT` that holds the event. Every answer is
//! counted by outcome and timed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics::{EdgeMetrics, SecretIndex, Transition, WebhookOutcome};
use bytes::Bytes;
use bytes::BytesMut;
use common::ledger::Applied;
use common::ledger::money::MoneySeen;
use common::stripe::event::StripeEvent;
use common::stripe::signature::{self, SignatureError};
use common::telemetry::RequestId;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::budget::Reservation;
use crate::error::Error;
use crate::routes::{Body, json};
use crate::state::State;

const STRIPE_SIGNATURE: &str = "stripe-signature";

/// The body of a 200.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Received<'a> {
    received: bool,
    duplicate: bool,
    event_id: &'a str,
    request_id: &'a str,
}

/// Answers one webhook delivery.
pub async fn handle(req: Request<Incoming>, state: &State, rid: &RequestId) -> Response<Body> {
    let started = Instant::now();
    let in_flight = InFlight::enter(state);
    let result = receive(req, state, rid).await;
    drop(in_flight);
    let outcome = match &result {
        Ok((_, applied)) if applied.duplicate => WebhookOutcome::Duplicate,
        Ok(_) => WebhookOutcome::Processed,
        Err(e) => e
            .webhook_outcome()
            .unwrap_or(WebhookOutcome::InvalidPayload),
    };
    state
        .metrics
        .webhook(outcome, started.elapsed().as_secs_f64());
    match result {
        Ok((event, applied)) => {
            observe(&state.metrics, &applied);
            tracing::info!(
                eventId = %event.id,
                eventType = %event.event_type,
                duplicate = applied.duplicate,
                orderId = applied.order_id.map(tracing::field::display),
                transition = applied.transition_text().map(tracing::field::display),
                orphan = applied.orphan,
                anomaly = applied.anomaly.map(|a| a.as_str()),
                "webhook recorded"
            );
            json(
                StatusCode::OK,
                &Received {
                    received: true,
                    duplicate: applied.duplicate,
                    event_id: &event.id,
                    request_id: rid.as_str(),
                },
            )
        }
        Err(e) => {
            if let Error::Signature(why) = &e {
                state.metrics.signature_failures.inc(*why);
            }
            if !matches!(e, Error::Storage(_)) {
                tracing::warn!(error = %e, code = e.code(), "webhook refused");
            }
            e.into_response(rid)
        }
    }
}

/// A webhook being answered, counted in flight until dropped: answered, or its future dropped
/// by hyper because the client went away.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        state.webhooks_in_flight.fetch_add(1, Ordering::Relaxed);
        state.metrics.webhook_in_flight.increment(1.0);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.webhooks_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.webhook_in_flight.decrement(1.0);
    }
}

async fn receive(
    req: Request<Incoming>,
    state: &State,
    rid: &RequestId,
) -> Result<(Arc<StripeEvent>, Applied), Error> {
    let limit = state.max_body_bytes;
    let declared = declared_length(req.headers());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::TooLarge { limit });
    }
    let header = signature_header(req.headers())?;
    // Before the body: one well-formed header, in tolerance, with a v1 of 64 hex characters.
    let parsed = signature::check_header(&header, state.tolerance_secs, unix_now())?;
    let mut reservation = state.body_budget.open();
    let body = read_body(
        req.into_body(),
        limit,
        state.limits.body_read_timeout,
        declared,
        &mut reservation,
    )
    .await?;
    let index = signature::verify_parsed(&parsed, &body, &state.webhook_secrets())?;
    state.metrics.secret_matches.inc(SecretIndex(index));
    // Stored exactly as signed.
    let (event, payload) = StripeEvent::parse_owned(body.into())?;
    let event = Arc::new(event);
    match state
        .writer
        .record(event.clone(), payload, rid.as_str())
        .await
    {
        Ok(applied) => Ok((event, applied)),
        Err(cause) => {
            tracing::error!(
                eventId = %event.id,
                eventType = %event.event_type,
                sqlstate = cause.sqlstate(),
                error = %cause,
                "webhook not recorded: storage failed; Stripe will retry"
            );
            Err(cause.into())
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Exactly one `Stripe-Signature` header, as visible ASCII.
fn signature_header(headers: &HeaderMap) -> Result<String, SignatureError> {
    let mut values = headers.get_all(STRIPE_SIGNATURE).iter();
    let first = values.next().ok_or(SignatureError::Missing)?;
    if values.next().is_some() {
        return Err(SignatureError::Duplicated);
    }
    let text = first.to_str().map_err(|_| SignatureError::Malformed)?;
    if text.len() > signature::MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    Ok(text.to_owned())
}

/// Reads the body, at most `limit` bytes within `within`, drawing its bytes from the global
/// budget: its `Content-Length` up front when declared, else each chunk as it arrives. An older
/// body still arriving may be evicted to make room; this one is evicted if it lingers while the
/// budget is needed.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    within: Duration,
    declared: Option<u64>,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, Error> {
    if let Some(n) = declared {
        reservation
            .grow(n as usize)
            .map_err(|_| Error::Overloaded)?;
    }
    let evicted = reservation.evicted_handle();
    let read = async {
        let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(Error::BodyRead)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            if declared.is_none() {
                reservation
                    .grow(data.len())
                    .map_err(|_| Error::Overloaded)?;
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    let body = tokio::select! {
        read = tokio::time::timeout(within, read) => read.unwrap_or(Err(Error::BodyTimeout))?,
        _ = evicted.wait() => return Err(Error::Overloaded),
    };
    reservation.settle();
    Ok(body)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Counts what the ledger did to orders.
fn observe(metrics: &EdgeMetrics, applied: &Applied) {
    if let Some((from, to)) = applied.transition {
        metrics.transitions.inc(Transition(from, to));
    }
    match applied.money {
        Some(MoneySeen::Refund(status)) => metrics.refunds.inc(status),
        Some(MoneySeen::Dispute(status)) => metrics.disputes.inc(status),
        None => {}
    }
    if applied.orphan {
        metrics.orphans.increment(1);
    }
    if let Some(kind) = applied.anomaly {
        metrics.anomalies.inc(kind);
    }
}
