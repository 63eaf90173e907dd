//! `reconciler inspect`: support's timeline for an event, a session, an order or a request id. What
//! the database knows comes first and always: the order (every order a reconcile run touched, for
//! a run's request id), its ledger rows in order (with source, requestId and times), the runs that
//! touched it. Then Stripe's current view when a key is set (or why Stripe could not be asked),
//! and for an event the ledger lacks, what Stripe says it is. Last, a one-line verdict naming the
//! command to run. Times are RFC 3339, UTC.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use common::ledger::decide::{Keys, keys};
use common::stripe::event::StripeEvent;
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::error::Error;
use crate::orders::{self, OrderView};
use crate::runs;
use crate::stripe_api::{StripeClient, StripeError};
use crate::verdict::{Facts, OrderFacts, StripeView as Seen, verdict};

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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StripeView {
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
    pub runs: Vec<RunView>,
    /// Stripe was asked (a key is set and there was something to ask about).
    pub stripe_asked: bool,
    /// Stripe's view of the session; None when not asked, unknown to Stripe, or unreachable.
    pub stripe: Option<StripeView>,
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
    let client = &client;
    // Resolve the target to an order and/or a session id.
    let (order, mut session_id) = match target {
        Target::Order(id) => (orders::view(client, *id).await?, None),
        Target::Session(cs) => (find_by_session(client, cs).await?, Some(cs.clone())),
        Target::Event(evt) => {
            let row = client
                .query_opt(
                    "SELECT order_id, stripe_session_id FROM payment_events
                     WHERE stripe_event_id = $1",
                    &[evt],
                )
                .await?;
            ledger_row_order(client, row).await?
        }
        Target::RequestId(rid) => {
            let row = client
                .query_opt(
                    "SELECT order_id, stripe_session_id FROM payment_events WHERE request_id = $1
                     ORDER BY (order_id IS NULL), id LIMIT 1",
                    &[rid],
                )
                .await?;
            ledger_row_order(client, row).await?
        }
    };
    // A reconcile run touches many orders: list them all.
    let run_of_target = match target {
        Target::RequestId(rid) => runs::run_of(rid),
        _ => None,
    };
    let mut orders = Vec::new();
    if let Target::RequestId(rid) = target
        && run_of_target.is_some()
    {
        let ids: Vec<uuid::Uuid> = client
            .query(
                "SELECT DISTINCT order_id FROM payment_events
                 WHERE request_id = $1 AND order_id IS NOT NULL",
                &[rid],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in ids {
            orders.extend(orders::view(client, id).await?);
        }
        orders.sort_by_key(|o| o.created_at);
    }
    if let Some(o) = &order
        && session_id.is_none()
    {
        session_id = o.stripe_session_id.clone();
    }
    let order_id = order
        .as_ref()
        .and_then(|o| uuid::Uuid::parse_str(&o.id).ok());
    let events: Vec<EventView> = client
        .query(
            "SELECT stripe_event_id, event_type, source, request_id, stripe_created_at,
                    received_at, order_id IS NOT NULL
             FROM payment_events
             WHERE ($1::uuid IS NOT NULL AND order_id = $1) OR ($2::text IS NOT NULL AND stripe_session_id = $2)
                OR ($3::text IS NOT NULL AND stripe_event_id = $3)
                OR ($4::text IS NOT NULL AND request_id = $4)
             ORDER BY stripe_created_at, id",
            &[&order_id, &session_id, &match target {
                Target::Event(e) => Some(e.clone()),
                _ => None,
            }, &match target {
                Target::RequestId(rid) if run_of_target.is_some() => Some(rid.clone()),
                _ => None,
            }],
        )
        .await?
        .iter()
        .map(|r| EventView {
            stripe_event_id: r.get(0),
            event_type: r.get(1),
            source: r.get(2),
            request_id: r.get(3),
            stripe_created_at: r.get(4),
            received_at: r.get(5),
            linked_to_order: r.get(6),
        })
        .collect();
    let run_ids: Vec<i64> = events
        .iter()
        .filter_map(|e| runs::run_of(e.request_id.as_deref()?))
        .chain(run_of_target)
        .collect();
    let runs = client
        .query(
            "SELECT id, trigger, status, started_at, events_backfilled
             FROM reconcile_runs WHERE id = ANY($1) ORDER BY id",
            &[&run_ids],
        )
        .await?
        .iter()
        .map(|r| RunView {
            id: r.get(0),
            trigger: r.get(1),
            status: r.get(2),
            started_at: r.get(3),
            events_backfilled: r.get(4),
        })
        .collect();
    Ok(Timeline {
        target: target.describe(),
        session_id,
        order,
        orders,
        events,
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
            Ok(v) => {
                t.stripe = Some(StripeView {
                    status: v["status"].as_str().map(str::to_owned),
                    payment_status: v["payment_status"].as_str().map(str::to_owned),
                })
            }
            Err(StripeError::NotFound(_)) => {}
            Err(e) => t.stripe_unreachable = Some(e.to_string()),
        }
    }
    let seen = match (&t.stripe, &t.stripe_unreachable) {
        (Some(v), _) => Seen::Known {
            status: v.status.as_deref(),
            payment_status: v.payment_status.as_deref(),
        },
        (None, Some(cause)) => Seen::Unreachable(cause),
        (None, None) if stripe.is_some() => Seen::Unknown,
        (None, None) => Seen::NotAsked,
    };
    t.verdict = match &t.missing_event {
        Some(m) => missing_verdict(m),
        None => verdict(&Facts {
            subject: &target.describe(),
            session_id: t.session_id.as_deref(),
            order: t.order.as_ref().map(|o| OrderFacts {
                status: &o.status,
                anomaly: o.anomaly.as_deref(),
            }),
            ledger_events: t.events.len(),
            stripe: seen,
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
        order_id: order.map(|o| o.id),
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
        time(&m.created)
    )
}

/// The order of a session, found as the ledger finds it.
async fn find_by_session(
    client: &deadpool_postgres::Client,
    session_id: &str,
) -> Result<Option<OrderView>, Error> {
    let keys = Keys {
        session_id: Some(session_id),
        client_ref: None,
        metadata_ref: None,
        payment_intent: None,
    };
    Ok(orders::find(client, &keys).await?)
}

/// The order and session of a ledger row.
async fn ledger_row_order(
    client: &deadpool_postgres::Client,
    row: Option<tokio_postgres::Row>,
) -> Result<(Option<OrderView>, Option<String>), Error> {
    let Some(row) = row else {
        return Ok((None, None));
    };
    let (order_id, session_id): (Option<uuid::Uuid>, Option<String>) = (row.get(0), row.get(1));
    let order = match (order_id, &session_id) {
        (Some(id), _) => orders::view(client, id).await?,
        (None, Some(cs)) => find_by_session(client, cs).await?,
        (None, None) => None,
    };
    Ok((order, session_id))
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The timeline as text for a terminal.
pub fn render_text(t: &Timeline) -> String {
    render_local(t) + &render_stripe(t)
}

/// What the database knows, as text.
pub fn render_local(t: &Timeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", t.target);
    for o in &t.orders {
        let _ = writeln!(
            out,
            "order    {}  {}  session {}  paid_at {}",
            o.id,
            o.status,
            o.stripe_session_id.as_deref().unwrap_or("-"),
            o.paid_at.as_ref().map_or("-".into(), time),
        );
    }
    match &t.order {
        _ if !t.orders.is_empty() => {}
        Some(o) => {
            let _ = writeln!(
                out,
                "order    {}  {}  amount {} {}  session {}  created {}  paid_at {}",
                o.id,
                o.status,
                o.amount_total.map_or("-".into(), |a| a.to_string()),
                o.currency.as_deref().unwrap_or("-"),
                o.stripe_session_id.as_deref().unwrap_or("-"),
                time(&o.created_at),
                o.paid_at.as_ref().map_or("-".into(), time),
            );
            if let Some(a) = &o.anomaly {
                let _ = writeln!(out, "anomaly  {a}");
            }
        }
        None => {
            let _ = writeln!(out, "order    none");
        }
    }
    let _ = writeln!(out, "ledger   {} event(s)", t.events.len());
    for e in &t.events {
        let _ = writeln!(
            out,
            "  {}  {:<42} {}  source {:<10} requestId {}  received {}{}",
            time(&e.stripe_created_at),
            e.event_type,
            e.stripe_event_id,
            e.source,
            e.request_id.as_deref().unwrap_or("-"),
            time(&e.received_at),
            if e.linked_to_order { "" } else { "  (orphan)" }
        );
    }
    for r in &t.runs {
        let _ = writeln!(
            out,
            "run      #{} {} {} started {} backfilled {}",
            r.id,
            r.trigger,
            r.status,
            time(&r.started_at),
            r.events_backfilled
        );
    }
    out
}

/// Stripe's view and the verdict, as text.
pub fn render_stripe(t: &Timeline) -> String {
    let mut out = String::new();
    if let Some(m) = &t.missing_event {
        let _ = writeln!(
            out,
            "missing  {}  {}  created {}  session {}  (on Stripe, not in the ledger)",
            m.id,
            m.event_type,
            time(&m.created),
            m.session_id.as_deref().unwrap_or("-")
        );
    }
    match (&t.stripe, &t.stripe_unreachable, t.stripe_asked) {
        (Some(s), _, _) => {
            let _ = writeln!(
                out,
                "stripe   status {}  payment_status {}",
                s.status.as_deref().unwrap_or("-"),
                s.payment_status.as_deref().unwrap_or("-")
            );
        }
        (None, Some(cause), _) => {
            let _ = writeln!(out, "stripe   Stripe unreachable: {cause}");
        }
        (None, None, true) => {
            let _ = writeln!(out, "stripe   no such session or event on Stripe");
        }
        (None, None, false) => {
            let _ = writeln!(
                out,
                "stripe   not consulted (no STRIPE_API_KEY, or nothing to ask)"
            );
        }
    }
    let _ = writeln!(out, "verdict  {}", t.verdict);
    out
}
