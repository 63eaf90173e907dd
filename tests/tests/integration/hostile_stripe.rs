//! The reconciler against a Stripe that misbehaves: a cursor that never advances or goes
//! backwards, a 50 MB page, a body dripped a byte a second, a redirect elsewhere, a page with one
//! event that cannot be stored. Each pass ends within its deadline, in a process whose memory
//! stays small, with a run row that says why; the key goes nowhere but `STRIPE_API_BASE`; and the
//! daemon keeps ticking.

use std::time::Duration;

use reconciler::runs::Trigger;
use reconciler::schedule::Daemon;
use sim::objects::{Session, session_event};
use sim::server::{Faults, ListMode, StripeSim};
use tests::http::eventually;
use tests::ledger::order;
use tests::pg::TestDb;
use tokio::sync::oneshot;

const KEY: &str = "sk_test_hostile_stripe_suite";
/// The pass deadline of these runs (`RECONCILE_PASS_TIMEOUT`).
const DEADLINE: Duration = Duration::from_secs(6);
/// The most memory a `reconciler once` process may use here.
const MAX_RSS_MB: f64 = 64.0;

/// 250 paid sessions of the last hour on the simulator, none in the ledger.
async fn stripe_with_events(sim: &StripeSim) -> Vec<Session> {
    let now = chrono::Utc::now().timestamp();
    (0..250)
        .map(|i| {
            let mut s = Session::new(format!("cs_test_hostile_{i}"));
            s.created = now - 3600 + i;
            sim.add_event(session_event("checkout.session.completed", &s));
            s
        })
        .collect()
}

/// One `reconciler once` process against `sim`: its summary (stdout), and how it went.
async fn once(db: &TestDb, sim: &StripeSim) -> (serde_json::Value, tests::process::Finished) {
    let url = db.url();
    let base = sim.url();
    let deadline = format!("{}s", DEADLINE.as_secs());
    let finished = tests::process::run(
        "reconciler",
        &["once"],
        &[
            ("DATABASE_URL", &url),
            ("STRIPE_API_KEY", KEY),
            ("STRIPE_API_BASE", &base),
            ("STRIPE_EXPECT_LIVEMODE", "any"),
            ("STRIPE_MAX_RPS", "1000"),
            ("RECONCILE_SETTLE", "0s"),
            ("RECONCILE_PASS_TIMEOUT", &deadline),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
        ],
        DEADLINE + Duration::from_secs(20),
    )
    .await;
    let summary = serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}): {} / {}",
            finished.stdout, finished.stderr
        )
    });
    (summary, finished)
}

/// The error of the last run row.
async fn last_run_error(db: &TestDb) -> (String, Option<String>) {
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT status, error FROM reconcile_runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("run row");
    (row.get(0), row.get(1))
}

/// Runs one pass against `faults`, and checks the bounds every hostile answer must keep.
async fn bounded(faults: Faults, says: &str) -> (TestDb, StripeSim) {
    let sim = StripeSim::start(KEY).await;
    stripe_with_events(&sim).await;
    sim.set_faults(faults.clone());
    let db = TestDb::new().await;
    let (summary, finished) = once(&db, &sim).await;
    println!(
        "fault=hostile-stripe case={:?} seconds={:.1} peak_rss_mb={:.1} error={}",
        faults.list,
        finished.elapsed.as_secs_f64(),
        finished.peak_rss_mb,
        summary["error"]
    );
    assert_eq!(finished.status.code(), Some(1), "{faults:?}: {summary}");
    assert_eq!(summary["status"], "failed", "{summary}");
    assert!(
        finished.elapsed < DEADLINE + Duration::from_secs(4),
        "{faults:?}: the pass took {:?}",
        finished.elapsed
    );
    assert!(
        finished.peak_rss_mb < MAX_RSS_MB,
        "{faults:?}: peak RSS {:.1} MB",
        finished.peak_rss_mb
    );
    let (status, error) = last_run_error(&db).await;
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(error.contains(says), "{faults:?}: run row says {error:?}");
    assert!(!finished.stderr.contains(KEY) && !finished.stdout.contains(KEY));
    (db, sim)
}

#[tokio::test]
async fn a_cursor_that_never_advances_fails_the_pass() {
    let faults = Faults {
        list: ListMode::EndlessCursor,
        ..Faults::default()
    };
    let (_db, sim) = bounded(faults, "does not advance").await;
    assert_eq!(sim.requests(), 2, "the second page is refused at once");
}

#[tokio::test]
async fn a_cursor_that_goes_backwards_fails_the_pass() {
    let faults = Faults {
        list: ListMode::BackwardsCursor,
        ..Faults::default()
    };
    bounded(faults, "went backwards").await;
}

#[tokio::test]
async fn a_50_mb_page_is_cut_at_the_response_limit() {
    let faults = Faults {
        list: ListMode::HugePage(50 * 1024 * 1024),
        ..Faults::default()
    };
    bounded(faults, "STRIPE_MAX_RESPONSE_BYTES").await;
}

#[tokio::test]
async fn a_page_dripped_a_byte_a_second_ends_at_the_pass_deadline() {
    let faults = Faults {
        list: ListMode::Drip,
        ..Faults::default()
    };
    bounded(faults, "RECONCILE_PASS_TIMEOUT").await;
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_the_key_goes_nowhere_else() {
    // Two hops: the API base redirects to a second server, which would redirect to a third.
    let third = StripeSim::start("sk_test_never_sent").await;
    let second = StripeSim::start("sk_test_never_sent").await;
    second.set_faults(Faults {
        redirect_to: Some(format!("{}/v1/events", third.url())),
        ..Faults::default()
    });
    let faults = Faults {
        redirect_to: Some(format!("{}/v1/events", second.url())),
        ..Faults::default()
    };
    bounded(faults, "127.0.0.1").await;
    assert_eq!(second.requests(), 0, "the second hop was never asked");
    assert_eq!(third.requests(), 0, "nor the third");
}

#[tokio::test]
async fn one_unstorable_event_never_blocks_its_page() {
    let sim = StripeSim::start(KEY).await;
    let sessions = stripe_with_events(&sim).await;
    // An event of the list that is not an event the ledger can hold (a control byte in its type).
    let now = chrono::Utc::now().timestamp();
    sim.add_event_text(
        "evt_unstorable",
        "checkout.session.completed",
        now - 1800,
        format!(
            r#"{{"id":"evt_unstorable","object":"event","type":"checkout.session.completed\u0007","created":{},"livemode":false,"data":{{"object":{{}}}}}}"#,
            now - 1800
        ),
    );
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut ids = Vec::new();
    for s in &sessions {
        ids.push(tests::ledger::pending_order(&client, &s.id).await);
    }
    let reconciler = tests::reconciler::build(&db, &sim, &[]).await;
    let summary = reconciler
        .pass(Trigger::Cli, &tokio::sync::watch::channel(false).1)
        .await;
    assert_eq!(summary.status, "failed", "{summary:?}");
    assert_eq!(
        summary.events_backfilled, 250,
        "every other event is backfilled"
    );
    assert_eq!(summary.failed_events.len(), 1);
    assert!(summary.failed_events[0].starts_with("evt_unstorable"));
    for id in ids {
        assert_eq!(order(&client, id).await.status, "paid");
    }
    let (status, error) = last_run_error(&db).await;
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("evt_unstorable"));
    // The failed pass did not move the high-water mark: the next one reads the window again, and
    // names the event again.
    let next = reconciler
        .pass(Trigger::Cli, &tokio::sync::watch::channel(false).1)
        .await;
    assert_eq!(next.status, "failed");
    assert_eq!(next.failed_events.len(), 1);
    let high_water: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT max(window_to) FROM reconcile_runs WHERE status = 'ok'",
            &[],
        )
        .await
        .expect("high water")
        .get(0);
    assert_eq!(high_water, None, "no ok pass passed the event");
}

#[tokio::test]
async fn the_daemon_keeps_ticking_through_a_hostile_stripe() {
    let sim = StripeSim::start(KEY).await;
    let sessions = stripe_with_events(&sim).await;
    sim.set_faults(Faults {
        list: ListMode::EndlessCursor,
        ..Faults::default()
    });
    let db = TestDb::new().await;
    let client = db.client().await;
    let id = tests::ledger::pending_order(&client, &sessions[0].id).await;
    let extra = [("RECONCILE_SCHEDULE", "* * * * * *")];
    let reconciler = tests::reconciler::build(&db, &sim, &extra).await;
    let daemon = Daemon::bind(reconciler).await.expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let failing = eventually(Duration::from_secs(10), || async {
        client
            .query_one(
                "SELECT count(*) FROM reconcile_runs WHERE status = 'failed'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) >= 2)
    })
    .await;
    assert!(failing, "each tick runs a pass, and each fails cleanly");
    sim.set_faults(Faults::default());
    let recovered = eventually(Duration::from_secs(10), || async {
        order(&client, id).await.status == "paid"
    })
    .await;
    assert!(recovered, "the next tick after Stripe recovers backfills");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
