//! The reconciler against the Stripe simulator and a real edge: lost deliveries are backfilled in
//! one pass, a second pass finds nothing, 429 storms and a database cut are survived, two
//! reconcilers never run at once, one session can be reconciled on demand, and bad answers from
//! Stripe fail the pass cleanly.

use std::time::Duration;

use reconciler::pass::Trigger;
use sim::scenario::{Deliveries, Driver, Ending, Rates};
use sim::server::{Faults, StripeSim};
use tests::edge::TestEdge;
use tests::http::eventually;
use tests::ledger::{event_count, order, pending_order};
use tokio::sync::watch;

const KEY: &str = "sk_test_reconciler_suite";

fn never() -> watch::Receiver<bool> {
    watch::channel(false).1
}

/// The Stripe simulator, a real edge and its database, and a driver delivering to that edge.
struct Scenario {
    sim: StripeSim,
    edge: TestEdge,
    db: tokio_postgres::Client,
    driver: Driver,
}

impl Scenario {
    async fn new(rates: Rates, seed: u64) -> Self {
        let sim = StripeSim::start(KEY).await;
        let edge = TestEdge::spawn().await;
        let db = edge.db.client().await;
        let driver = edge.driver(rates, seed);
        Self {
            sim,
            edge,
            db,
            driver,
        }
    }

    /// `n` paid checkouts from `ago` seconds back, with `drop` of their webhooks lost.
    async fn paid(&mut self, n: usize, ago: i64) {
        self.driver
            .play(
                &self.db,
                &self.sim,
                Ending::Paid,
                n,
                chrono::Utc::now().timestamp() - ago,
            )
            .await;
    }
}

/// `n` paid checkouts of the last 15 minutes whose webhooks were all lost.
async fn scenario(n: usize, seed: u64) -> Scenario {
    let mut s = Scenario::new(Rates::dropping(1.0), seed).await;
    s.paid(n, 900).await;
    s
}

#[tokio::test]
async fn lost_webhooks_of_a_thousand_sessions_are_backfilled_in_one_pass() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let rates = Rates {
        drop: 0.05,
        duplicate: 0.02,
        reorder: 0.3,
        delay: 0.03,
    };
    let mut driver = Driver::new(edge.public, &edge.secrets[0], rates, 20261127);
    let endings = [
        Ending::Paid,
        Ending::Paid,
        Ending::Paid,
        Ending::Expired,
        Ending::AsyncPaid,
        Ending::AsyncFailed,
    ];
    let start = chrono::Utc::now().timestamp() - 3600;
    let mut checkouts = Vec::new();
    for i in 0..1000 {
        let c = driver
            .checkout(&db, &sim, endings[i % endings.len()], start + i as i64)
            .await;
        checkouts.push(c);
    }
    let mut total = Deliveries::default();
    for c in &checkouts {
        total += driver.deliver(c).await;
    }
    total.retries += driver.deliver_delayed().await;
    assert!(total.dropped > 20, "the run drops deliveries: {total:?}");
    assert!(
        total.duplicated > 5 && total.reordered > 50 && total.delayed > 10,
        "{total:?}"
    );
    assert_eq!(event_count(&db).await as u64, total.events - total.dropped);

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let first = reconciler.pass(Trigger::Cli, &never()).await;
    assert_eq!(first.status, "ok", "{first:?}");
    assert_eq!(first.events_seen, sim.event_count() as u64);
    assert_eq!(first.events_missing, total.dropped);
    assert_eq!(first.events_backfilled, total.dropped);
    let pages = (sim.event_count() as u64).div_ceil(100);
    assert_eq!(first.stripe_requests, pages, "one request per page of 100");
    for c in &checkouts {
        assert_eq!(
            order(&db, c.order_id).await.status,
            c.ending.expected_status(),
            "{c:?}"
        );
    }
    assert_eq!(
        event_count(&db).await as usize,
        sim.event_count(),
        "exactly one row per event"
    );
    let reconciled: i64 = db
        .query_one(
            "SELECT count(*) FROM payment_events WHERE source = 'reconciler'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(reconciled as u64, total.dropped);

    let logs = tests::logs::capture().text();
    assert!(!logs.contains(KEY), "the Stripe API key reached the logs");

    let second = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(second.status, "ok");
    assert_eq!(second.events_missing, 0, "{second:?}");
    assert!(
        second.window_from < first.window_to,
        "each pass re-reads the overlap"
    );
    let runs: Vec<(String, String)> = db
        .query(
            "SELECT trigger, status FROM reconcile_runs ORDER BY id",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("cli".into(), "ok".into()),
            ("schedule".into(), "ok".into())
        ]
    );
}

#[tokio::test]
async fn a_storm_of_429s_is_ridden_out_within_budget() {
    let Scenario { sim, edge, .. } = scenario(150, 7).await;
    sim.set_faults(Faults {
        rate_limited: 5,
        ..Faults::default()
    });
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let summary = reconciler.pass(Trigger::Cli, &never()).await;
    assert_eq!(summary.status, "ok", "{summary:?}");
    assert_eq!(summary.events_backfilled, 150);
    assert_eq!(
        summary.stripe_requests,
        2 + 5,
        "two pages plus one retry per 429"
    );
}

#[tokio::test]
async fn two_reconcilers_started_at_once_run_one_pass() {
    let Scenario { sim, edge, db, .. } = scenario(250, 11).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    });
    let a = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let b = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let (stop_a, stop_b) = (never(), never());
    let (ra, rb) = tokio::join!(
        a.pass(Trigger::Schedule, &stop_a),
        b.pass(Trigger::Schedule, &stop_b)
    );
    let mut statuses = vec![ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, vec!["ok", "skipped"], "{ra:?} {rb:?}");
    assert_eq!(ra.events_backfilled + rb.events_backfilled, 250);
    assert_eq!(event_count(&db).await, 250);
}

#[tokio::test]
async fn one_session_is_reconciled_on_demand() {
    let Scenario {
        sim,
        edge,
        db,
        mut driver,
    } = Scenario::new(Rates::dropping(1.0), 3).await;
    let lost = driver
        .checkout(
            &db,
            &sim,
            Ending::AsyncPaid,
            chrono::Utc::now().timestamp() - 120,
        )
        .await;
    driver.deliver(&lost).await;
    let other = driver
        .checkout(&db, &sim, Ending::Paid, chrono::Utc::now().timestamp() - 60)
        .await;
    assert_eq!(order(&db, lost.order_id).await.status, "pending");

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let verdict = reconciler
        .reconcile_session(&lost.session_id, Trigger::Cli)
        .await
        .expect("verdict");
    assert!(verdict.found_on_stripe);
    assert_eq!(verdict.stripe_payment_status.as_deref(), Some("paid"));
    assert_eq!(verdict.events_found, 2);
    assert_eq!(verdict.events_applied, 2);
    assert_eq!(
        verdict.order_before.as_ref().map(|o| o.status.as_str()),
        Some("pending")
    );
    assert_eq!(
        verdict.order_after.as_ref().map(|o| o.status.as_str()),
        Some("paid")
    );
    assert!(
        verdict.verdict.contains("paid on Stripe, paid here"),
        "{}",
        verdict.verdict
    );
    assert_eq!(
        order(&db, other.order_id).await.status,
        "pending",
        "only that session"
    );
    let sources: Vec<String> = db
        .query(
            "SELECT source FROM payment_events WHERE stripe_session_id = $1",
            &[&lost.session_id],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sources, vec!["manual", "manual"]);

    let again = reconciler
        .reconcile_session(&lost.session_id, Trigger::Manual)
        .await
        .expect("verdict");
    assert_eq!(again.events_applied, 0);

    let unknown = reconciler
        .reconcile_session("cs_test_does_not_exist", Trigger::Cli)
        .await
        .expect("verdict");
    assert!(!unknown.found_on_stripe);
    assert!(
        unknown.verdict.contains("no Checkout Session"),
        "{}",
        unknown.verdict
    );
    let invalid = reconciler
        .reconcile_session("cs_test_'; DROP TABLE orders", Trigger::Cli)
        .await;
    assert!(invalid.is_err());
}

#[tokio::test]
async fn a_database_cut_mid_pass_fails_it_and_the_next_pass_completes() {
    let mut scene = Scenario::new(Rates::dropping(0.5), 5).await;
    scene.paid(600, 900).await;
    let Scenario { sim, edge, db, .. } = scene;
    let before = event_count(&db).await;
    let fault = tests::fault_proxy::FaultProxy::start(tests::fault_proxy::Target::postgres(
        edge.db.server(),
    ))
    .await;
    let url = tests::pg::conninfo(&tests::pg::via(&edge.db.config, fault.addr()));
    let reconciler = tests::reconciler::build_with_url(&url, &sim, &[]).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(60),
        ..Faults::default()
    });
    let stop = never();
    let pass = reconciler.pass(Trigger::Schedule, &stop);
    let cut = async {
        assert!(eventually(Duration::from_secs(10), || async { sim.requests() >= 3 }).await);
        fault.cut();
    };
    let (failed, ()) = tokio::join!(pass, cut);
    assert_eq!(failed.status, "failed", "{failed:?}");
    fault.restore();
    sim.set_faults(Faults::default());

    let next = reconciler.pass(Trigger::Schedule, &stop).await;
    assert_eq!(next.status, "ok", "{next:?}");
    assert_eq!(
        event_count(&db).await as usize,
        sim.event_count(),
        "nothing lost"
    );
    assert!(event_count(&db).await > before);
    let duplicates: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT stripe_event_id FROM payment_events GROUP BY 1 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(duplicates, 0, "nothing doubled");
    let interrupted: i64 = db
        .query_one(
            "SELECT count(*) FROM reconcile_runs WHERE status = 'failed'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(interrupted, 1, "the cut pass is recorded as failed");
}

#[tokio::test]
async fn bad_answers_from_stripe_fail_the_pass_cleanly() {
    let sim = StripeSim::start(KEY).await;
    let db = tests::pg::TestDb::new().await;

    let wrong_key = StripeSim::start("sk_test_other_key").await;
    let reconciler =
        tests::reconciler::build(&db, &wrong_key, &[("STRIPE_API_KEY", "sk_test_wrong")]).await;
    let summary = reconciler.pass(Trigger::Cli, &never()).await;
    assert_eq!(summary.status, "failed");
    assert!(
        summary.error.as_deref().is_some_and(|e| e.contains("401")),
        "{summary:?}"
    );
    assert!(
        !summary
            .error
            .as_deref()
            .unwrap_or("")
            .contains("sk_test_wrong")
    );

    let reconciler = tests::reconciler::build(&db, &sim, &[]).await;
    for faults in [
        Faults {
            malformed: 1,
            ..Faults::default()
        },
        Faults {
            wrong_shape: 1,
            ..Faults::default()
        },
        Faults {
            server_errors: 10,
            ..Faults::default()
        },
    ] {
        sim.set_faults(faults.clone());
        let summary = reconciler.pass(Trigger::Cli, &never()).await;
        assert_eq!(summary.status, "failed", "{faults:?}: {summary:?}");
        assert!(summary.error.is_some());
    }
    sim.set_faults(Faults::default());
    assert_eq!(reconciler.pass(Trigger::Cli, &never()).await.status, "ok");
    let metrics = common::metrics::render();
    assert!(
        metrics.contains(r#"reconciler_runs_total{trigger="cli",outcome="failed"}"#),
        "{metrics}"
    );
    let client = db.client().await;
    let failed: i64 = client
        .query_one(
            "SELECT count(*) FROM reconcile_runs WHERE status = 'failed' AND error IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn an_event_that_arrived_before_its_order_is_adopted() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    // Stripe delivers the payment before the app has written the order.
    let mut session = sim::objects::Session::new("cs_test_order_written_late");
    session.created = chrono::Utc::now().timestamp() - 60;
    let event = sim::objects::session_event("checkout.session.completed", &session);
    sim.add_event(event.clone());
    assert_eq!(edge.webhook_json(&event).await.status, 200);
    let id = pending_order(&db, &session.id).await;
    assert_eq!(order(&db, id).await.status, "pending");

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let summary = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(summary.status, "ok");
    assert_eq!(summary.events_missing, 0);
    assert_eq!(summary.orphans_linked, 1);
    assert_eq!(summary.orders_updated, 1);
    assert_eq!(order(&db, id).await.status, "paid");
    let rows = tests::ledger::event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows[0].order_id, Some(id));
    assert_eq!(
        reconciler
            .pass(Trigger::Schedule, &never())
            .await
            .orphans_linked,
        0
    );
}

#[tokio::test]
async fn shutdown_stops_a_pass_between_pages_and_keeps_what_it_committed() {
    let Scenario { sim, edge, db, .. } = scenario(500, 13).await;
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(80),
        ..Faults::default()
    });
    let (stop, stopped) = watch::channel(false);
    let pass = reconciler.pass(Trigger::Schedule, &stopped);
    let signal = async {
        assert!(eventually(Duration::from_secs(10), || async { sim.requests() >= 2 }).await);
        let _ = stop.send(true);
    };
    let (summary, ()) = tokio::join!(pass, signal);
    assert_eq!(summary.status, "failed");
    assert!(
        summary
            .error
            .as_deref()
            .is_some_and(|e| e.contains("shutdown")),
        "{summary:?}"
    );
    let kept = event_count(&db).await as u64;
    assert!((100..500).contains(&kept), "whole pages were kept: {kept}");
    assert_eq!(summary.events_backfilled, kept);
    sim.set_faults(Faults::default());
    let next = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(next.status, "ok");
    assert_eq!(
        next.events_backfilled,
        500 - kept,
        "the mark did not move: the window is re-read"
    );
    assert_eq!(event_count(&db).await, 500);
}

/// The ok and skipped passes of each tick, from the run rows.
async fn passes_per_tick(db: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    db.query(
        "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'skipped')
         FROM reconcile_runs WHERE tick_at IS NOT NULL GROUP BY tick_at ORDER BY tick_at",
        &[],
    )
    .await
    .expect("runs")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn replicas_whose_clocks_differ_run_one_pass_per_tick() {
    let Scenario { sim, edge, db, .. } = scenario(50, 17).await;
    let replicas = [
        tests::reconciler::build(&edge.db, &sim, &[]).await,
        tests::reconciler::build(&edge.db, &sim, &[]).await,
        tests::reconciler::build(&edge.db, &sim, &[]).await,
    ];
    // Each replica fires at the tick by its own clock: 300 ms early, on time, 300 ms late. They
    // all name the same tick, and the ones that come after the first record `skipped`.
    let schedule = reconciler::config::Schedule::parse("0 */10 * * * *").expect("schedule");
    let now = chrono::Utc::now();
    let ticks: Vec<_> = [-300i64, 0, 300]
        .iter()
        .map(|ms| schedule.tick(now + chrono::Duration::milliseconds(*ms)))
        .collect();
    let tick = ticks[1].expect("tick");
    assert!(
        ticks.iter().all(|t| *t == Some(tick)) || (now - tick).num_milliseconds() < 1300,
        "clocks a few hundred ms apart agree on the tick: {ticks:?}"
    );
    let mut statuses = Vec::new();
    for r in &replicas {
        let summary = r
            .pass_of_tick(Trigger::Schedule, Some(tick), &never())
            .await;
        statuses.push(summary.status);
    }
    assert_eq!(statuses, vec!["ok", "skipped", "skipped"]);
    assert_eq!(passes_per_tick(&db).await, vec![(1, 2)]);
    assert_eq!(event_count(&db).await, 50);
}

#[tokio::test]
async fn daemons_started_together_share_every_tick() {
    let Scenario { sim, edge, db, .. } = scenario(50, 19).await;
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let r =
            tests::reconciler::build(&edge.db, &sim, &[("RECONCILE_SCHEDULE", "*/2 * * * * *")])
                .await;
        let daemon = reconciler::schedule::Daemon::bind(r).await.expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(daemon.run_until_stopped(async {
            let _ = stopped.await;
        })));
    }
    // Three ticks at least, each with its pass done once.
    let three_ticks = eventually(Duration::from_secs(20), || async {
        passes_per_tick(&db)
            .await
            .iter()
            .filter(|(ok, _)| *ok == 1)
            .count()
            >= 3
    })
    .await;
    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    assert!(three_ticks, "{:?}", passes_per_tick(&db).await);
    for (ok, _) in passes_per_tick(&db).await {
        assert!(
            ok <= 1,
            "one pass per tick: {:?}",
            passes_per_tick(&db).await
        );
    }
    assert_eq!(event_count(&db).await, 50);
}

#[tokio::test]
async fn webhooks_still_in_flight_are_not_counted_missing() {
    let Scenario { sim, edge, db, .. } = scenario(30, 23).await;
    // An event created seconds ago, whose webhook is still on its way.
    let mut fresh = sim::objects::Session::new("cs_test_in_flight");
    fresh.created = chrono::Utc::now().timestamp() - 10;
    let id = pending_order(&db, &fresh.id).await;
    let event = sim::objects::session_event("checkout.session.completed", &fresh);
    sim.add_event(event.clone());
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[("RECONCILE_SETTLE", "60s")]).await;
    let summary = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(summary.status, "ok", "{summary:?}");
    assert_eq!(
        summary.events_missing, 30,
        "only the settled events: {summary:?}"
    );
    let window_to = summary.window_to.expect("window");
    assert!((chrono::Utc::now() - window_to).num_seconds() >= 59);
    assert_eq!(order(&db, id).await.status, "pending");
    // The webhook arrives; the next pass's overlap covers the rest.
    assert_eq!(edge.webhook_json(&event).await.status, 200);
    let next = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(next.events_missing, 0, "{next:?}");
    let row = db
        .query_one(
            "SELECT window_from, window_to FROM reconcile_runs WHERE id = $1",
            &[&summary.run_id],
        )
        .await
        .expect("run");
    assert_eq!(
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
        Some(window_to)
    );
}
