//! `inspect` as text for a terminal: what the database knows first (printed before Stripe is
//! asked, since it may not answer), then Stripe's view and the verdict.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::Timeline;

/// A time as every CLI and support output shows it: RFC 3339, UTC, milliseconds.
pub(crate) fn time(t: &DateTime<Utc>) -> String {
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
            if o.amount_refunded > 0 || o.dispute_status.is_some() {
                let _ = writeln!(
                    out,
                    "money    refunded {} {}  dispute {}",
                    o.amount_refunded,
                    o.currency.as_deref().unwrap_or("-"),
                    o.dispute_status.as_deref().unwrap_or("none"),
                );
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
    if t.order.is_some() && t.orders.is_empty() {
        let _ = writeln!(out, "notified {} notification(s)", t.notifications.len());
    }
    for n in &t.notifications {
        let _ = writeln!(
            out,
            "  {}  {:<26} {}  {:<9} attempts {}{}",
            n.id,
            n.kind,
            time(&n.created_at),
            n.state,
            n.attempts,
            notification_detail(n),
        );
    }
    for m in &t.money {
        let _ = writeln!(
            out,
            "  {:<7}  {}  {:<22} {} {}{}{}  as of {}",
            m.kind,
            m.id,
            m.status,
            m.amount.map_or("-".into(), |a| a.to_string()),
            m.currency.as_deref().unwrap_or("-"),
            m.reason
                .as_deref()
                .map_or(String::new(), |r| format!("  reason {r}")),
            m.evidence_due_by
                .as_ref()
                .map_or(String::new(), |d| format!("  evidence due {}", time(d))),
            time(&m.as_of),
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

/// When it was delivered or died, when it is tried next, and the last error.
fn notification_detail(n: &crate::notify::store::Delivery) -> String {
    let when = match (&n.delivered_at, &n.dead_at, &n.next_attempt_at) {
        (Some(at), _, _) => format!("  delivered {}", time(at)),
        (_, Some(at), _) => format!(
            "  dead {} (reconciler redeliver --transition {})",
            time(at),
            n.id
        ),
        (_, _, Some(at)) => format!("  next {}", time(at)),
        _ => String::new(),
    };
    match &n.last_error {
        Some(e) => format!("{when}  last error: {e}"),
        None => when,
    }
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
