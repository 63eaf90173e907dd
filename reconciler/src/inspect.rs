//! `reconciler inspect`: support's timeline for an event, a session, an order or a request id. The
//! order, its ledger rows in order (with source, requestId and times), the reconcile runs that
//! touched it, Stripe's current view of the session when a key is set, and a one-line verdict.

use std::fmt::Write as _;

use common::ledger::OrderStatus;
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::pass::PassError;
use crate::stripe_api::{StripeClient, StripeError};

/// What support asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Event(String),
    Session(String),
    Order(uuid::Uuid),
    RequestId(String),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: String,
    pub status: String,
    pub stripe_session_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub paid_at: Option<String>,
    pub anomaly: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub stripe_event_id: String,
    pub event_type: String,
    pub source: String,
    pub request_id: Option<String>,
    pub stripe_created_at: String,
    pub received_at: String,
    pub linked_to_order: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: i64,
    pub trigger: String,
    pub status: String,
    pub started_at: String,
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

const ORDER_COLUMNS: &str = "id::text, status, stripe_session_id, amount_total, currency, \
    to_char(paid_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), anomaly, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

/// Builds the timeline of `target`.
pub async fn inspect(
    pool: &Pool,
    stripe: Option<&StripeClient>,
    target: &Target,
) -> Result<Timeline, PassError> {
    let client = pool.get().await?;
    // Resolve the target to an order id and/or a session id.
    let (mut order_id, mut session_id): (Option<uuid::Uuid>, Option<String>) = match target {
        Target::Order(id) => (Some(*id), None),
        Target::Session(cs) => (None, Some(cs.clone())),
        Target::Event(evt) => match client
            .query_opt(
                "SELECT order_id, stripe_session_id FROM payment_events WHERE stripe_event_id = $1",
                &[evt],
            )
            .await?
        {
            Some(r) => (r.get(0), r.get(1)),
            None => (None, None),
        },
        Target::RequestId(rid) => match client
            .query_opt(
                "SELECT order_id, stripe_session_id FROM payment_events WHERE request_id = $1
                 ORDER BY (order_id IS NULL), id LIMIT 1",
                &[rid],
            )
            .await?
        {
            Some(r) => (r.get(0), r.get(1)),
            None => (None, None),
        },
    };
    let order_row = client
        .query_opt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE id = COALESCE($1, (SELECT id FROM orders WHERE stripe_session_id = $2))"
            ),
            &[&order_id, &session_id],
        )
        .await?;
    let order = order_row.map(|r| OrderView {
        id: r.get(0),
        status: r.get(1),
        stripe_session_id: r.get(2),
        amount_total: r.get(3),
        currency: r.get(4),
        paid_at: r.get(5),
        anomaly: r.get(6),
        created_at: r.get(7),
    });
    if let Some(o) = &order {
        order_id = uuid::Uuid::parse_str(&o.id).ok();
        if session_id.is_none() {
            session_id = o.stripe_session_id.clone();
        }
    }
    let rows = client
        .query(
            "SELECT stripe_event_id, event_type, source, request_id,
                    to_char(stripe_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    order_id IS NOT NULL
             FROM payment_events
             WHERE ($1::uuid IS NOT NULL AND order_id = $1) OR ($2::text IS NOT NULL AND stripe_session_id = $2)
                OR ($3::text IS NOT NULL AND stripe_event_id = $3)
             ORDER BY stripe_created_at, id",
            &[&order_id, &session_id, &match target {
                Target::Event(e) => Some(e.clone()),
                _ => None,
            }],
        )
        .await?;
    let events: Vec<EventView> = rows
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
        .filter_map(|e| {
            e.request_id
                .as_deref()?
                .strip_prefix("reconcile-run-")?
                .parse()
                .ok()
        })
        .collect();
    let runs = client
        .query(
            "SELECT id, trigger, status,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), events_backfilled
             FROM reconcile_runs WHERE id = ANY($1) ORDER BY id",
            &[&run_ids],
        )
        .await?
        .iter()
        .map(|r| RunView { id: r.get(0), trigger: r.get(1), status: r.get(2), started_at: r.get(3), events_backfilled: r.get(4) })
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
    let verdict = verdict(
        target,
        session_id.as_deref(),
        order.as_ref(),
        &events,
        stripe.is_some(),
        stripe_view.as_ref(),
    );
    Ok(Timeline {
        target: describe(target),
        session_id,
        order,
        events,
        runs,
        stripe: stripe_view,
        verdict,
    })
}

fn describe(target: &Target) -> String {
    match target {
        Target::Event(e) => format!("event {e}"),
        Target::Session(s) => format!("session {s}"),
        Target::Order(o) => format!("order {o}"),
        Target::RequestId(r) => format!("request {r}"),
    }
}

fn verdict(
    target: &Target,
    session: Option<&str>,
    order: Option<&OrderView>,
    events: &[EventView],
    has_key: bool,
    stripe: Option<&StripeView>,
) -> String {
    let fix = session.map_or_else(
        || "resend the event from the Stripe Dashboard".to_owned(),
        |cs| format!("run `reconciler session {cs}`"),
    );
    let paid_on_stripe = stripe.is_some_and(|s| {
        matches!(
            s.payment_status.as_deref(),
            Some("paid" | "no_payment_required")
        )
    });
    match order {
        None if events.is_empty() => format!(
            "nothing here for {}: no order and no ledger row",
            describe(target)
        ),
        None => format!(
            "{} event(s) in the ledger but no order: an orphan (the app created no order with this session); it is linked when the order appears",
            events.len()
        ),
        Some(o) if o.anomaly.is_some() => {
            format!(
                "{} here because of an anomaly: {}",
                o.status,
                o.anomaly.as_deref().unwrap_or("")
            )
        }
        Some(o)
            if paid_on_stripe
                && OrderStatus::parse(&o.status)
                    .is_some_and(|s| s != OrderStatus::Paid && s != OrderStatus::Refunded) =>
        {
            format!("paid on Stripe, {} here: {fix}", o.status)
        }
        Some(o) if paid_on_stripe => format!("paid on Stripe, {} here: nothing to do", o.status),
        Some(o) if stripe.is_some() => format!(
            "not paid on Stripe (status {}, payment_status {}); {} here",
            stripe.and_then(|s| s.status.as_deref()).unwrap_or("?"),
            stripe
                .and_then(|s| s.payment_status.as_deref())
                .unwrap_or("?"),
            o.status
        ),
        Some(o) if !has_key => format!(
            "{} here with {} ledger event(s); set STRIPE_API_KEY to compare with Stripe",
            o.status,
            events.len()
        ),
        Some(o) => format!("{} here; Stripe does not know this session", o.status),
    }
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
                o.created_at,
                o.paid_at.as_deref().unwrap_or("-"),
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
            e.stripe_created_at,
            e.event_type,
            e.stripe_event_id,
            e.source,
            e.request_id.as_deref().unwrap_or("-"),
            e.received_at,
            if e.linked_to_order { "" } else { "  (orphan)" }
        );
    }
    for r in &t.runs {
        let _ = writeln!(
            out,
            "run      #{} {} {} started {} backfilled {}",
            r.id, r.trigger, r.status, r.started_at, r.events_backfilled
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
