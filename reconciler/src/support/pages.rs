//! The support pages' bodies: login, a timeline with its actions, the result of an action, a
//! message (the overview is in `overview`). Every value goes through [`esc`]; times are RFC 3339, UTC, as in every CLI output.

use super::html::{csrf_field, esc, opt, opt_time, page, table, time, timeline_link};
use crate::inspect::Timeline;
use crate::orders::OrderView;
use crate::session::Verdict;

/// The most ledger rows a timeline page shows (the newest are named by count past it).
pub const MAX_TIMELINE_ROWS: usize = 200;

pub fn disabled() -> String {
    page(
        "Support is disabled",
        None,
        "<p>The support pages need <code>ADMIN_TOKEN</code> to be set on the reconciler.</p>",
    )
}

pub fn login(problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |p| {
        format!("<p class=\"verdict warn\" role=\"alert\">{}</p>", esc(p))
    });
    page(
        "Log in",
        None,
        &format!(
            "{problem}<form method=\"post\" action=\"/support/login\">\
             <label class=\"field\" for=\"token\">Admin token (<code>ADMIN_TOKEN</code>)</label>\
             <input id=\"token\" name=\"token\" type=\"password\" required autocomplete=\"current-password\" autofocus>\
             <button type=\"submit\">Log in</button></form>"
        ),
    )
}

pub fn message(title: &str, csrf: &str, text: &str) -> String {
    page(
        title,
        Some(csrf),
        &format!("<p class=\"verdict\">{}</p>", esc(text)),
    )
}

fn order_rows(order: &OrderView) -> Vec<Vec<String>> {
    vec![vec![
        timeline_link(&order.id.to_string()),
        esc(order.status.as_str()),
        format!(
            "{} {}",
            order.amount_total.map_or("–".into(), |a| a.to_string()),
            opt(order.currency.as_deref())
        ),
        order.amount_refunded.to_string(),
        opt(order.dispute_status.as_deref()),
        order
            .stripe_session_id
            .as_deref()
            .map_or("–".into(), timeline_link),
        opt_time(order.paid_at.as_ref()),
        opt(order.anomaly.as_deref()),
    ]]
}

const ORDER_HEAD: [&str; 8] = [
    "order", "status", "amount", "refunded", "dispute", "session", "paid at", "anomaly",
];

/// A timeline (as `reconciler inspect` builds it) with its actions.
/// `page` (from 1) of the ledger rows, [`MAX_TIMELINE_ROWS`] a page.
pub fn timeline(t: &Timeline, csrf: &str, query: &str, page_no: usize) -> String {
    let mut body = String::new();
    let class = match (&t.stripe_unreachable, t.order.as_ref().map(|o| o.status)) {
        (Some(_), _) => "verdict warn",
        (None, Some(s)) if s.is_paid() => "verdict ok",
        _ => "verdict",
    };
    body.push_str(&format!(
        "<p class=\"{class}\"><strong>Verdict:</strong> {}</p>",
        esc(&t.verdict)
    ));
    if let Some(why) = &t.stripe_unreachable {
        body.push_str(&format!(
            "<p class=\"verdict warn\" role=\"alert\">Stripe unreachable: {}. What the database knows is below.</p>",
            esc(why)
        ));
    }
    if let Some(s) = &t.stripe {
        body.push_str(&format!(
            "<p>Stripe says the session is <strong>{}</strong>, payment <strong>{}</strong>.</p>",
            opt(s.status.as_deref()),
            opt(s.payment_status.as_deref())
        ));
    }
    if let Some(order) = &t.order {
        body.push_str(&table("Order", &ORDER_HEAD, &order_rows(order)));
    }
    if !t.orders.is_empty() {
        let rows: Vec<Vec<String>> = t.orders.iter().flat_map(order_rows).collect();
        body.push_str(&table("Orders this run touched", &ORDER_HEAD, &rows));
    }
    if let Some(session) = &t.session_id {
        body.push_str(&format!(
            "<form class=\"action\" method=\"post\" action=\"/support/reconcile\">{}\
             <input type=\"hidden\" name=\"session\" value=\"{}\">\
             <button type=\"submit\">Reconcile this session</button></form>",
            csrf_field(csrf),
            esc(session)
        ));
    }
    let pages = t.events.len().div_ceil(MAX_TIMELINE_ROWS).max(1);
    let page_no = page_no.clamp(1, pages);
    let first = (page_no - 1) * MAX_TIMELINE_ROWS;
    let last = (first + MAX_TIMELINE_ROWS).min(t.events.len());
    let events: Vec<Vec<String>> = t.events[first..last]
        .iter()
        .map(|e| {
            vec![
                time(&e.stripe_created_at),
                esc(&e.event_type),
                timeline_link(&e.stripe_event_id),
                esc(&e.source),
                e.request_id.as_deref().map_or("–".into(), timeline_link),
                time(&e.received_at),
                if e.linked_to_order { "" } else { "orphan" }.to_owned(),
            ]
        })
        .collect();
    let caption = match pages > 1 {
        true => format!(
            "Ledger: events {} to {last} of {} (page {page_no} of {pages})",
            first + 1,
            t.events.len()
        ),
        false => format!("Ledger: {} events", t.events.len()),
    };
    body.push_str(&table(
        &caption,
        &[
            "created",
            "type",
            "event",
            "source",
            "requestId",
            "received",
            "",
        ],
        &events,
    ));
    if pages > 1 {
        let link = |n: usize, label: &str| {
            format!(
                "<a href=\"/support/search?q={}&amp;page={n}\">{label}</a>",
                super::html::query_value(query)
            )
        };
        let mut nav = String::from("<p class=\"pages\">");
        if page_no > 1 {
            nav.push_str(&link(page_no - 1, "← earlier events"));
            nav.push(' ');
        }
        if page_no < pages {
            nav.push_str(&link(page_no + 1, "later events →"));
        }
        nav.push_str("</p>");
        body.push_str(&nav);
    }
    let money: Vec<Vec<String>> = t
        .money
        .iter()
        .map(|m| {
            vec![
                esc(&m.kind),
                timeline_link(&m.id),
                esc(&m.status),
                format!(
                    "{} {}",
                    m.amount.map_or("–".into(), |a| a.to_string()),
                    opt(m.currency.as_deref())
                ),
                opt(m.reason.as_deref()),
                opt_time(m.evidence_due_by.as_ref()),
                time(&m.as_of),
            ]
        })
        .collect();
    if t.order.is_some() {
        body.push_str(&table(
            "Refunds and disputes",
            &[
                "kind",
                "id",
                "status",
                "amount",
                "reason",
                "evidence due",
                "as of",
            ],
            &money,
        ));
    }
    let notifications: Vec<Vec<String>> = t
        .notifications
        .iter()
        .map(|n| {
            vec![
                esc(&n.id),
                esc(&n.kind),
                format!("{} → {}", opt(n.from.as_deref()), esc(&n.to)),
                esc(n.state),
                n.attempts.to_string(),
                opt_time(n.delivered_at.as_ref().or(n.dead_at.as_ref())),
                opt(n.last_error.as_deref()),
                format!(
                    "<form class=\"action\" method=\"post\" action=\"/support/redeliver\">{}\
                     <input type=\"hidden\" name=\"transition\" value=\"{}\">\
                     <button type=\"submit\" aria-label=\"Redeliver notification {}\">Redeliver notification</button></form>",
                    csrf_field(csrf),
                    esc(&n.id),
                    esc(&n.id)
                ),
            ]
        })
        .collect();
    if t.order.is_some() {
        body.push_str(&table(
            "Notifications to the app",
            &[
                "id",
                "type",
                "move",
                "state",
                "attempts",
                "delivered / dead",
                "last error",
                "",
            ],
            &notifications,
        ));
    }
    let runs: Vec<Vec<String>> = t
        .runs
        .iter()
        .map(|r| {
            vec![
                timeline_link(&crate::runs::request_id(r.id)),
                esc(&r.trigger),
                esc(&r.status),
                time(&r.started_at),
                r.events_backfilled.to_string(),
            ]
        })
        .collect();
    body.push_str(&table(
        "Reconcile runs that touched it",
        &["run", "trigger", "status", "started", "backfilled"],
        &runs,
    ));
    page(&t.target, Some(csrf), &body)
}

/// The result of "Reconcile this session": the verdict, the order before and after.
pub fn reconciled(v: &Verdict, csrf: &str) -> String {
    let mut body = format!(
        "<p class=\"verdict {}\"><strong>Verdict:</strong> {}</p>\
         <p>Stripe: session {}, payment {}; {} event(s) found, {} applied.</p>",
        if v.found_on_stripe { "ok" } else { "warn" },
        esc(&v.verdict),
        opt(v.stripe_status.as_deref()),
        opt(v.stripe_payment_status.as_deref()),
        v.events_found,
        v.events_applied
    );
    let mut rows = Vec::new();
    for (label, order) in [("before", &v.order_before), ("after", &v.order_after)] {
        if let Some(o) = order {
            let mut row = order_rows(o).remove(0);
            row.insert(0, label.to_owned());
            rows.push(row);
        }
    }
    let mut head = vec![""];
    head.extend(ORDER_HEAD);
    body.push_str(&table("The order before and after", &head, &rows));
    body.push_str(&format!("<p>{}</p>", timeline_link(&v.session_id)));
    page(&format!("Reconciled {}", v.session_id), Some(csrf), &body)
}
