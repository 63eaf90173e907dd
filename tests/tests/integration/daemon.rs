//! `reconciler run`: a pass at start-up, the admin listener with its token-protected POSTs, and a
//! drain that reports itself on `/ready`.

use std::time::Duration;

use http::Method;
use reconciler::schedule::Daemon;
use sim::scenario::{Ending, Rates};
use sim::server::StripeSim;
use tests::edge::TestEdge;
use tests::http::{eventually, get};
use tests::ledger::order;
use tokio::sync::oneshot;

const KEY: &str = "sk_test_daemon_suite";
const TOKEN: &str = "admin-token-for-tests-0123456789";

async fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> tests::http::Reply {
    tests::http::bearer(addr, Method::POST, path, token).await
}

#[tokio::test]
async fn the_daemon_passes_at_start_and_serves_support() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let mut driver = edge.driver(Rates::dropping(1.0), 9);
    let lost = driver
        .checkout(
            &db,
            &sim,
            Ending::Paid,
            chrono::Utc::now().timestamp() - 300,
        )
        .await;
    driver.deliver(&lost).await;

    // A schedule that never fires during the test: only the start-up pass and the POSTs run.
    let extra = [
        ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"),
        ("ADMIN_TOKEN", TOKEN),
    ];
    let reconciler = tests::reconciler::build(&edge.db, &sim, &extra).await;
    let daemon = Daemon::bind(reconciler).await.expect("bind");
    let admin = daemon.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));

    assert!(
        eventually(Duration::from_secs(10), || async {
            order(&db, lost.order_id).await.status == "paid"
        })
        .await,
        "the start-up pass backfilled the lost event"
    );
    // The pass goes on after the order is paid (orphans, its run row): wait for its end.
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.query_one(
                "SELECT count(*) FROM reconcile_runs WHERE status = 'ok'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
        })
        .await,
        "the start-up pass ended"
    );
    assert_eq!(get(admin, "/live").await.status, 200);
    assert_eq!(get(admin, "/ready").await.status, 200);
    let metrics = get(admin, "/metrics").await.text();
    for series in [
        r#"reconciler_runs_total{trigger="schedule",outcome="ok"}"#,
        "reconciler_last_success_timestamp_seconds",
        "reconciler_events_backfilled_total",
        r#"reconciler_stripe_requests_total{endpoint="events.list",status_class="2xx"}"#,
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }

    assert_eq!(post(admin, "/reconcile/run", None).await.status, 401);
    assert_eq!(
        post(
            admin,
            "/reconcile/run",
            Some("wrong-token-of-enough-length")
        )
        .await
        .status,
        401
    );
    // The start-up pass may still be finishing (its run row is written before it lets go).
    let last = std::sync::Mutex::new(None);
    eventually(Duration::from_secs(5), || {
        let last = &last;
        async move {
            let reply = post(admin, "/reconcile/run", Some(TOKEN)).await;
            let busy = reply.status == 409;
            *last.lock().expect("last reply") = Some(reply);
            !busy
        }
    })
    .await;
    let run = last
        .into_inner()
        .expect("last reply")
        .expect("at least one reply");
    assert_eq!(run.status, 200, "{}", run.text());
    assert_eq!(run.json()["status"], "ok");
    assert_eq!(run.json()["trigger"], "manual");

    let path = format!("/reconcile/sessions/{}", lost.session_id);
    assert_eq!(post(admin, &path, None).await.status, 401);
    let verdict = post(admin, &path, Some(TOKEN)).await;
    assert_eq!(verdict.status, 200, "{}", verdict.text());
    assert_eq!(verdict.json()["foundOnStripe"], true);
    assert_eq!(
        post(admin, "/reconcile/sessions/cs_test_unknown", Some(TOKEN))
            .await
            .status,
        404
    );
    assert_eq!(
        post(admin, "/reconcile/sessions/not%20an%20id", Some(TOKEN))
            .await
            .status,
        400
    );
    assert_eq!(get(admin, "/reconcile/run").await.status, 405);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "stopped"
    );
}

#[tokio::test]
async fn admin_posts_are_disabled_without_a_token() {
    let sim = StripeSim::start(KEY).await;
    let db = tests::pg::TestDb::new().await;
    let reconciler =
        tests::reconciler::build(&db, &sim, &[("RECONCILE_SCHEDULE", "0 0 0 1 1 *")]).await;
    let daemon = Daemon::bind(reconciler).await.expect("bind");
    let admin = daemon.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let refused = post(admin, "/reconcile/run", Some("anything-at-all-0123456789")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["code"], "admin_disabled");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
