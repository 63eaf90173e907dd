//! `reconciler inspect`: support's timeline for an event, a session, an order or a request id. The
//! order, its ledger rows in order (with source, requestId and times), the reconcile runs that
//! touched it, Stripe's current view of the session when a key is set, and a one-line verdict.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use common::ledger::decide::Keys;
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

/// The whole timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub target: String,
    pub session_id: Option<String>,
    pub order: Option<OrderView>,
    pub events: Vec<EventView>,
    pub runs: Vec<RunView>,
    /// None when no key is set or the session is unknown to Stripe.
    pub stripe: Option<StripeView>,
    pub verdict: String,
}

/// Builds the timeline of `target`.
pub async fn inspect(
    pool: &Pool,
    stripe: Option<&StripeClient>,
    target: &Target,
) -> Result<Timeline, Error> {
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
             ORDER BY stripe_created_at, id",
            &[&order_id, &session_id, &match target {
                Target::Event(e) => Some(e.clone()),
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
    let stripe_view = match (stripe, &session_id) {
        (Some(s), Some(cs)) => match s.session(cs).await {
            Ok(v) => Some(StripeView {
                status: v["status"].as_str().map(str::to_owned),
                payment_status: v["payment_status"].as_str().map(str::to_owned),
            }),
            Err(StripeError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    let seen = match (&stripe_view, stripe.is_some()) {
        (Some(v), _) => Seen::Known {
            status: v.status.as_deref(),
            payment_status: v.payment_status.as_deref(),
        },
        (None, true) => Seen::Unknown,
        (None, false) => Seen::NotAsked,
    };
    let verdict = verdict(&Facts {
        subject: &target.describe(),
        session_id: session_id.as_deref(),
        order: order.as_ref().map(|o| OrderFacts {
            status: &o.status,
            anomaly: o.anomaly.as_deref(),
        }),
        ledger_events: events.len(),
        stripe: seen,
        reconciled: false,
        stored_paying_event: None,
    });
    Ok(Timeline {
        target: target.describe(),
        session_id,
        order,
        events,
        runs,
        stripe: stripe_view,
        verdict,
    })
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
    let mut out = String::new();
    let _ = writeln!(out, "{}", t.target);
    match &t.order {
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
    match &t.stripe {
        Some(s) => {
            let _ = writeln!(
                out,
                "stripe   status {}  payment_status {}",
                s.status.as_deref().unwrap_or("-"),
                s.payment_status.as_deref().unwrap_or("-")
            );
        }
        None => {
            let _ = writeln!(out, "stripe   not consulted");
        }
    }
    let _ = writeln!(out, "verdict  {}", t.verdict);
    out
}
