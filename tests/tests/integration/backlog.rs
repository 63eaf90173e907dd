//! A backlog larger than one pass drains across passes: each pass scans as much as its time-out
//! allows, newest first, and the next resumes where it stopped; no event is backfilled twice, and
//! orphan adoption runs every pass whatever Stripe answers.

use std::time::Duration;

use reconciler::pass::Trigger;
use reconciler::runs::RunStatus;
use sim::server::{Faults, StripeSim};
use tests::ledger::{event_count, pending_order};
use tests::pg::TestDb;
use tokio::sync::watch;

const KEY: &str = "sk_test_backlog_suite";

/// `n` `checkout.session.completed` events of the last hour, none delivered; their sessions have
/// no order (the ledger keeps them as orphans).
fn missing_events(sim: &StripeSim, n: usize) {
    let now = chrono::Utc::now().timestamp();
    let session = sim::objects::Session::new("cs_template");
    let mut object = session.object();
    for i in 0..n {
        let created = now - 3600 + (i as i64 * 3000) / n as i64;
        object["id"] = serde_json::json!(format!("cs_test_backlog_{i}"));
        object["created"] = serde_json::json!(created - 30);
        let event = sim::objects::envelope(
            &format!("evt_backlog_{i}"),
            "checkout.session.completed",
            created,
            false,
            object.clone(),
        );
        sim.add_event_text(
            &format!("evt_backlog_{i}"),
            "checkout.session.completed",
            created,
            event.to_string(),
        );
    }
}

#[tokio::test]
async fn a_backlog_larger_than_one_pass_drains_across_passes_and_none_is_backfilled_twice() {
    const EVENTS: usize = 50_000;
    let sim = StripeSim::start(KEY).await;
    missing_events(&sim, EVENTS);
    // Every page takes 40 ms: a 2 s pass lists at most 50 pages, 5,000 events.
    sim.set_faults(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    });
    let db = TestDb::new().await;
    let client = db.client().await;
    // The recheck of the overlap must fit in a pass too, at this density (16 events a second).
    let reconciler = tests::reconciler::build(
        &db,
        &sim,
        &[
            ("RECONCILE_PASS_TIMEOUT", "2s"),
            ("RECONCILE_OVERLAP", "1m"),
        ],
    )
    .await;
    let (_stop, never) = watch::channel(false);

    let mut passes = Vec::new();
    for _ in 0..60 {
        let summary = reconciler.pass(Trigger::Cli, &never).await;
        let done = summary.status == RunStatus::Ok;
        passes.push(summary);
        if done {
            break;
        }
    }
    let last = passes.last().expect("a pass");
    assert_eq!(last.status, RunStatus::Ok, "{last:?}");
    assert_eq!(last.windows_open, 0);
    assert_eq!(last.backlog_seconds, 0.0);
    assert!(
        passes.len() >= 10,
        "a pass lists at most 5,000 events: {} passes",
        passes.len()
    );
    for p in &passes[..passes.len() - 1] {
        assert_eq!(p.status, RunStatus::Failed, "{p:?}");
        assert!(p.events_backfilled <= 5_000, "{p:?}");
        assert!(p.windows_open >= 1 && p.backlog_seconds > 0.0, "{p:?}");
    }
    let backfilled: u64 = passes.iter().map(|p| p.events_backfilled).sum();
    assert_eq!(backfilled, EVENTS as u64, "every event once, none twice");
    assert_eq!(event_count(&client).await, EVENTS as i64);
    // The backlog shrank with every pass.
    for pair in passes.windows(2) {
        assert!(
            pair[1].backlog_seconds < pair[0].backlog_seconds,
            "{} then {}",
            pair[0].backlog_seconds,
            pair[1].backlog_seconds
        );
    }
    let adopted: i64 = client
        .query_one(
            "SELECT count(*) FROM reconcile_runs WHERE scope = 'window' AND orphans_adopted",
            &[],
        )
        .await
        .expect("runs")
        .get(0);
    assert_eq!(adopted, passes.len() as i64, "orphans adopted every pass");
}

#[tokio::test]
async fn orphans_are_adopted_even_when_stripe_cannot_be_listed() {
    let sim = StripeSim::start(KEY).await;
    let session = sim::objects::Session::new("cs_test_adopted_while_stripe_fails");
    let event = sim::objects::session_event("checkout.session.completed", &session);
    sim.add_event(event.clone());
    let db = TestDb::new().await;
    let client = db.client().await;
    let reconciler = tests::reconciler::build(&db, &sim, &[]).await;
    let (_stop, never) = watch::channel(false);
    // The event is recorded while its order does not exist yet: an orphan.
    assert_eq!(
        reconciler.pass(Trigger::Cli, &never).await.status,
        RunStatus::Ok
    );
    let order = pending_order(&client, &session.id).await;
    // Now Stripe fails every request: the pass fails, and still links the orphan to its order.
    sim.set_faults(Faults {
        server_errors: 1_000,
        ..Faults::default()
    });
    let failed = reconciler.pass(Trigger::Cli, &never).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    assert_eq!(failed.orphans_linked, 1, "{failed:?}");
    assert_eq!(tests::ledger::order(&client, order).await.status, "paid");
}
