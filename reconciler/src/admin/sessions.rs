//! The app's success page asks about its Checkout Session: `GET /sessions/{cs_id}` answers from
//! the database only; `POST /reconcile/sessions/{cs_id}` (also support's "reconcile this
//! session") answers from the database when the order is already final, and otherwise reconciles
//! the session with Stripe once for every caller asking at the same time (single flight: one
//! Stripe fetch, one verdict, shared). The reconcile runs in a task of its own, so that a caller
//! who hangs up does not cancel it for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::watch;

use crate::Reconciler;
use crate::error::{Error, HttpError};
use crate::orders::{self, OrderView};
use crate::runs::Trigger;
use crate::session::Verdict;

/// What the success page gets back from a confirm: the verdict, and what it means for the page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmed {
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The order is paid (or moved on from paid: refunded).
    pub paid: bool,
    /// The order's status will not change by itself any more.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Whether Stripe was asked (false: the database already knew).
    pub stripe_called: bool,
}

/// `GET /sessions/{cs_id}`'s answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    pub session_id: String,
    pub order: OrderView,
    pub paid: bool,
    #[serde(rename = "final")]
    pub is_final: bool,
}

type Outcome = Arc<Result<Confirmed, HttpError>>;

/// Session reconciles in flight, by session id.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

/// The order whose Checkout Session is `session_id` (database only).
pub async fn status(
    reconciler: &Reconciler,
    session_id: &str,
) -> Result<Option<SessionStatus>, Error> {
    let client = reconciler.pool.get().await?;
    let Some(order) = orders::by_session(&client, session_id).await? else {
        return Ok(None);
    };
    Ok(Some(SessionStatus {
        session_id: session_id.to_owned(),
        paid: order.status.is_paid(),
        is_final: order.status.is_final(),
        order,
    }))
}

impl Flights {
    /// Confirms a session: from the database when its order is final, else one reconcile with
    /// Stripe shared by every concurrent caller.
    pub async fn confirm(
        self: &Arc<Self>,
        reconciler: &Arc<Reconciler>,
        session_id: &str,
    ) -> Outcome {
        match status(reconciler, session_id).await {
            Ok(Some(known)) if known.is_final => return Arc::new(Ok(from_database(known))),
            Ok(_) => {}
            Err(e) => return Arc::new(Err(e.http())),
        }
        let mut outcome = self.join(reconciler, session_id);
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(|| Arc::new(Err(lost()))),
            Err(_) => Arc::new(Err(lost())),
        }
    }

    /// The reconcile of `session_id` in flight, or a new one started.
    fn join(
        self: &Arc<Self>,
        reconciler: &Arc<Reconciler>,
        session_id: &str,
    ) -> watch::Receiver<Option<Outcome>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(outcome) = running.get(session_id) {
            return outcome.clone();
        }
        let (done, outcome) = watch::channel(None);
        running.insert(session_id.to_owned(), outcome.clone());
        let (flights, reconciler, id) = (self.clone(), reconciler.clone(), session_id.to_owned());
        tokio::spawn(async move {
            let result = reconciler
                .reconcile_session(&id, Trigger::Manual)
                .await
                .map(confirmed)
                .map_err(|e| {
                    tracing::error!(error = %e, session_id = %id, "session reconcile failed");
                    e.http()
                });
            flights
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let _ = done.send(Some(Arc::new(result)));
        });
        outcome
    }
}

fn confirmed(verdict: Verdict) -> Confirmed {
    let status = verdict.order_after.as_ref().map(|o| o.status);
    Confirmed {
        paid: status.is_some_and(|s| s.is_paid()),
        is_final: status.is_some_and(|s| s.is_final()),
        stripe_called: true,
        verdict,
    }
}

fn from_database(known: SessionStatus) -> Confirmed {
    Confirmed {
        verdict: Verdict {
            session_id: known.session_id,
            found_on_stripe: true,
            stripe_status: None,
            stripe_payment_status: None,
            order_before: Some(known.order.clone()),
            verdict: format!(
                "the order is already {}: nothing to ask Stripe",
                known.order.status
            ),
            order_after: Some(known.order),
            events_found: 0,
            events_applied: 0,
        },
        paid: known.paid,
        is_final: known.is_final,
        stripe_called: false,
    }
}

/// The reconcile task ended without an answer (it panicked).
fn lost() -> HttpError {
    HttpError {
        status: http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "reconcile_lost",
        message: "the session reconcile ended without an answer; try again".into(),
    }
}
