//! `reconciler inspect`: support's timeline for an event, a session, an order or a request id. What
//! the database knows comes first and always: the order (every order a reconcile run touched, for
//! a run's request id), its ledger rows in order (with source, requestId and times), the runs that
//! touched it. Then Stripe's current view when a key is set (or why Stripe could not be asked),
//! and for an event the ledger lacks, what Stripe says it is. Last, a one-line verdict naming the
//! command to run. Times are RFC 3339, UTC.

mod query;
pub(crate) mod render;

pub use render::{render_local, render_stripe, render_text};

use chrono::{DateTime, Utc};
use common::ledger::decide::keys;
use common::stripe::event::StripeEvent;
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::error::Error;
use crate::notify::store::Delivery;
use crate::orders::{self, OrderView};
use crate::runs;
use crate::stripe_api::{StripeClient, StripeError};
use crate::verdict::{Facts, OrderFacts, StripeSays, verdict};

/// What support asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Event(String),
    Session(String),
    Order(uuid::Uuid),
    RequestId(String),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Self::Event(e) => format!("event {e}"),
            Self::Session(s) => format!("session {s}"),
            Self::Order(o) => format!("order {o}"),
            Self::RequestId(r) => format!("request {r}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub stripe_event_id: String,
    pub event_type: String,
    pub source: String,
    pub request_id: Option<String>,
    pub stripe_created_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub linked_to_order: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: i64,
    pub trigger: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub events_backfilled: i32,
}

/// A Checkout Session's state on Stripe.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub status: Option<String>,
    pub payment_status: Option<String>,
}

/// An event the ledger lacks, as Stripe describes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MissingEvent {
    pub id: String,
    pub event_type: String,
    pub created: DateTime<Utc>,
    pub session_id: Option<String>,
    /// The order it concerns, found as the ledger would find it.
    pub order_id: Option<String>,
}

/// A refund or dispute of the order, at its newest snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MoneyView {
    /// `refund` or `dispute`.
    pub kind: String,
    pub id: String,
    pub status: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// Disputes: why the customer disputed.
    pub reason: Option<String>,
    /// Disputes: when the evidence is due.
    pub evidence_due_by: Option<DateTime<Utc>>,
    /// The `created` of the event that last changed it.
    pub as_of: DateTime<Utc>,
}

/// The whole timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub target: String,
    pub session_id: Option<String>,
    pub order: Option<OrderView>,
    /// Every order the target touched, when it is a reconcile run's request id.
    pub orders: Vec<OrderView>,
    pub events: Vec<EventView>,
    /// The order's notifications to the app, with their delivery state.
    pub notifications: Vec<Delivery>,
    /// The order's refunds and disputes, each at its newest snapshot.
    pub money: Vec<MoneyView>,
    pub runs: Vec<RunView>,
    /// Stripe was asked (a key is set and there was something to ask about).
    pub stripe_asked: bool,
    /// Stripe's view of the session; None when not asked, unknown to Stripe, or unreachable.
    pub stripe: Option<SessionState>,
    /// Why Stripe could not be asked, when it could not.
    pub stripe_unreachable: Option<String>,
    /// An event the ledger lacks (`--event`), as Stripe describes it.
    pub missing_event: Option<MissingEvent>,
    pub verdict: String,
}

/// Builds the timeline of `target`: what the database knows, then what Stripe says.
pub async fn inspect(
    pool: &Pool,
    stripe: Option<&StripeClient>,
    target: &Target,
) -> Result<Timeline, Error> {
    let mut timeline = local(pool, target).await?;
    ask_stripe(&mut timeline, pool, stripe, target).await?;
    Ok(timeline)
}

/// What the database knows of `target` (the verdict comes with [`ask_stripe`]).
pub async fn local(pool: &Pool, target: &Target) -> Result<Timeline, Error> {
    let client = pool.get().await?;
    let (order, mut session_id) = query::resolve(&client, target).await?;
    // A reconcile run touches many orders: list them all.
    let run_request_id = match target {
        Target::RequestId(rid) if runs::run_of(rid).is_some() => Some(rid.as_str()),
        _ => None,
    };
    let orders = match run_request_id {
        Some(rid) => query::orders_of_run(&client, rid).await?,
        None => Vec::new(),
    };
    if session_id.is_none() {
        session_id = order.as_ref().and_then(|o| o.stripe_session_id.clone());
    }
    let filter = query::EventFilter {
        order_id: order.as_ref().map(|o| o.id),
        session_id: session_id.as_deref(),
        event_id: match target {
            Target::Event(e) => Some(e),
            _ => None,
        },
        run_request_id,
    };
    let events = query::events(&client, &filter).await?;
    let runs = query::runs(&client, &events, run_request_id.and_then(runs::run_of)).await?;
    let notifications = match &order {
        Some(o) => crate::notify::store::of_order(&**client, o.id).await?,
        None => Vec::new(),
    };
    let money = match &order {
        Some(o) => query::money(&client, o.id).await?,
        None => Vec::new(),
    };
    Ok(Timeline {
        target: target.describe(),
        session_id,
        order,
        orders,
        events,
        notifications,
        money,
        runs,
        stripe_asked: false,
        stripe: None,
        stripe_unreachable: None,
        missing_event: None,
        verdict: String::new(),
    })
}

/// Completes a local timeline with Stripe's view (when a client is given) and the verdict.
/// Stripe out of reach is part of the answer (`stripe_unreachable`), never an error.
pub async fn ask_stripe(
    t: &mut Timeline,
    pool: &Pool,
    stripe: Option<&StripeClient>,
    target: &Target,
) -> Result<(), Error> {
    if let (Some(s), Target::Event(evt), true) = (stripe, target, t.events.is_empty()) {
        t.stripe_asked = true;
        match s.event(evt).await {
            Ok(raw) => {
                let event = missing(&pool.get().await?, &raw).await?;
                if t.session_id.is_none() {
                    t.session_id = event.as_ref().and_then(|e| e.session_id.clone());
                }
                t.missing_event = event;
            }
            Err(StripeError::NotFound(_)) => {}
            Err(e) => t.stripe_unreachable = Some(e.to_string()),
        }
    }
    if let (Some(s), Some(cs), None) = (stripe, &t.session_id, &t.stripe_unreachable) {
        t.stripe_asked = true;
        match s.session(cs).await {
            Ok(session) => {
                t.stripe = Some(SessionState {
                    status: session.status,
                    payment_status: session.payment_status,
                })
            }
            Err(StripeError::NotFound(_)) => {}
            Err(e) => t.stripe_unreachable = Some(e.to_string()),
        }
    }
    let says = match (&t.stripe, &t.stripe_unreachable) {
        (Some(v), _) => StripeSays::Known {
            status: v.status.as_deref(),
            payment_status: v.payment_status.as_deref(),
        },
        (None, Some(cause)) => StripeSays::Unreachable(cause),
        (None, None) if stripe.is_some() => StripeSays::Unknown,
        (None, None) => StripeSays::NotAsked,
    };
    t.verdict = match &t.missing_event {
        Some(m) => missing_verdict(m),
        None => verdict(&Facts {
            subject: &target.describe(),
            session_id: t.session_id.as_deref(),
            order: t.order.as_ref().map(|o| OrderFacts {
                status: o.status,
                anomaly: o.anomaly.as_deref(),
            }),
            ledger_events: t.events.len(),
            stripe: says,
            reconciled: false,
            stored_paying_event: None,
        }),
    };
    Ok(())
}

/// An event Stripe has and the ledger lacks: what it is and which order it concerns.
async fn missing(
    client: &deadpool_postgres::Client,
    raw: &serde_json::value::RawValue,
) -> Result<Option<MissingEvent>, Error> {
    let Ok(event) = StripeEvent::parse_str(raw.get()) else {
        return Ok(None);
    };
    let order = orders::find(client, &keys(&event)).await?;
    Ok(Some(MissingEvent {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        created: event.created,
        session_id: event.session_id().map(str::to_owned),
        order_id: order.map(|o| o.id.to_string()),
    }))
}

/// The verdict for an event the ledger lacks: the command that records it.
fn missing_verdict(m: &MissingEvent) -> String {
    let order = m
        .order_id
        .as_deref()
        .map_or_else(|| "no order here yet".to_owned(), |o| format!("order {o}"));
    let fix = match &m.session_id {
        Some(cs) => format!("run `reconciler session {cs}` to record it now"),
        None => "the next reconcile pass records it (or `reconciler once` now)".to_owned(),
    };
    format!(
        "the ledger lacks {} ({}, created {}), which concerns {order}: {fix}",
        m.id,
        m.event_type,
        render::time(&m.created)
    )
}
