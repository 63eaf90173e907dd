//! The support overview: open disputes, recent passes and sweeps, open orphans, orders with an
//! anomaly and notifications not delivered, each row linking to its timeline.

use chrono::{DateTime, Utc};

use super::html::{esc, opt, opt_time, page, table, time, timeline_link};
use super::query::RunRow;

/// What the overview shows.
pub struct Overview {
    pub runs: Vec<RunRow>,
    pub orphan_count: i64,
    pub orphans: Vec<(String, String, Option<String>, DateTime<Utc>)>,
    pub anomalies: Vec<(uuid::Uuid, String, String, DateTime<Utc>)>,
    pub undelivered: Vec<(i64, uuid::Uuid, String, i32, bool, Option<String>)>,
    #[allow(clippy::type_complexity)]
    pub disputes: Vec<(
        String,
        uuid::Uuid,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<DateTime<Utc>>,
    )>,
}

pub fn overview(o: &Overview, csrf: &str) -> String {
    let runs: Vec<Vec<String>> = o
        .runs
        .iter()
        .map(|r| {
            vec![
                timeline_link(&crate::runs::request_id(r.id)),
                esc(&r.scope),
                esc(&r.trigger),
                esc(&r.status),
                time(&r.started_at),
                format!(
                    "{} → {}",
                    opt_time(r.window_from.as_ref()),
                    opt_time(r.window_to.as_ref())
                ),
                format!("{} / {}", r.missing, r.backfilled),
                opt(r.error.as_deref()),
            ]
        })
        .collect();
    let orphans: Vec<Vec<String>> = o
        .orphans
        .iter()
        .map(|(id, kind, session, received)| {
            vec![
                timeline_link(id),
                esc(kind),
                session.as_deref().map_or("–".into(), timeline_link),
                time(received),
            ]
        })
        .collect();
    let anomalies: Vec<Vec<String>> = o
        .anomalies
        .iter()
        .map(|(id, status, anomaly, at)| {
            vec![
                timeline_link(&id.to_string()),
                esc(status),
                esc(anomaly),
                time(at),
            ]
        })
        .collect();
    let undelivered: Vec<Vec<String>> = o
        .undelivered
        .iter()
        .map(|(id, order, kind, attempts, dead, error)| {
            vec![
                esc(&crate::notify::payload::public_id(*id)),
                timeline_link(&order.to_string()),
                esc(kind),
                attempts.to_string(),
                if *dead { "dead" } else { "waiting" }.to_owned(),
                opt(error.as_deref()),
            ]
        })
        .collect();
    let disputes: Vec<Vec<String>> = o
        .disputes
        .iter()
        .map(|(id, order, status, reason, amount, currency, due)| {
            vec![
                timeline_link(id),
                timeline_link(&order.to_string()),
                esc(status),
                opt(reason.as_deref()),
                format!(
                    "{} {}",
                    amount.map_or("–".into(), |a| a.to_string()),
                    opt(currency.as_deref())
                ),
                opt_time(due.as_ref()),
            ]
        })
        .collect();
    let body = [
        table(
            "Open disputes (nearest evidence deadline first)",
            &[
                "dispute",
                "order",
                "status",
                "reason",
                "amount",
                "evidence due",
            ],
            &disputes,
        ),
        table(
            "Recent passes and sweeps (each links to the orders it touched)",
            &[
                "run",
                "scope",
                "trigger",
                "status",
                "started",
                "window",
                "missing / backfilled",
                "error",
            ],
            &runs,
        ),
        table(
            &format!("Open orphans ({} events with no order yet)", o.orphan_count),
            &["event", "type", "session", "received"],
            &orphans,
        ),
        table(
            "Orders with an anomaly",
            &["order", "status", "anomaly", "updated"],
            &anomalies,
        ),
        table(
            "Notifications not delivered",
            &[
                "notification",
                "order",
                "type",
                "attempts",
                "state",
                "last error",
            ],
            &undelivered,
        ),
    ]
    .concat();
    page("Overview", Some(csrf), &body)
}
