//! The app's success page: `GET /sessions/{cs_id}` answers from the database only, and
//! `POST /reconcile/sessions/{cs_id}` reconciles once for every concurrent caller (one Stripe
//! fetch, one shared verdict), or not at all when the order is already final. The daemon also
//! delivers the order notification that the confirm's payment made.

use std::time::Duration;

use http::Method;
use reconciler::schedule::Daemon;
use sim::scenario::{Ending, Rates};
use sim::server::StripeSim;
use sim::shop::Shop;
use tests::edge::TestEdge;
use tests::http::{Reply, eventually};
use tokio::sync::oneshot;

const KEY: &str = "sk_test_success_page";
const TOKEN: &str = "admin-token-for-tests-0123456789";
const SECRET: &str = "notify_secret_for_tests_0123456789abcdef";

async fn call(addr: std::net::SocketAddr, method: Method, path: &str, token: bool) -> Reply {
    tests::http::bearer(addr, method, path, token.then_some(TOKEN)).await
}

#[tokio::test]
async fn fifty_confirms_make_one_stripe_fetch_and_all_answer_paid() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let shop = Shop::start(SECRET).await;
    let url = shop.url();
    let extra = [
        ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"),
        ("ADMIN_TOKEN", TOKEN),
        ("APP_NOTIFY_URL", url.as_str()),
        ("APP_NOTIFY_SECRET", SECRET),
    ];
    let reconciler = tests::reconciler::build(&edge.db, &sim, &extra).await;
    let daemon = Daemon::bind(reconciler).await.expect("bind");
    let admin = daemon.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // The start-up pass ends (on an empty Stripe) before the checkout happens.
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.query_one(
                "SELECT count(*) FROM reconcile_runs WHERE status = 'ok'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
        })
        .await
    );

    // Paid on Stripe; its webhook never came.
    let mut driver = edge.driver(Rates::dropping(1.0), 3);
    let created = chrono::Utc::now().timestamp() - 120;
    let lost = driver.checkout(&db, &sim, Ending::Paid, created).await;
    driver.deliver(&lost).await;
    let path = format!("/sessions/{}", lost.session_id);

    // The page's first look: the database only, pending, no Stripe call.
    let fetches = sim.session_fetches();
    let status = call(admin, Method::GET, &path, true).await;
    assert_eq!(status.status, 200, "{}", status.text());
    assert_eq!(status.json()["order"]["status"], "pending");
    assert_eq!(status.json()["final"], false);
    assert_eq!(call(admin, Method::GET, &path, false).await.status, 401);
    assert_eq!(
        call(admin, Method::GET, "/sessions/cs_test_nobody", true)
            .await
            .status,
        404
    );
    assert_eq!(sim.session_fetches(), fetches, "GET never asks Stripe");

    // Fifty confirms at once.
    let confirm = format!("/reconcile/sessions/{}", lost.session_id);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let confirm = confirm.clone();
            tokio::spawn(async move { call(admin, Method::POST, &confirm, true).await })
        })
        .collect();
    for c in calls {
        let reply = c.await.expect("task");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let v = reply.json();
        assert_eq!(v["paid"], true, "{v}");
        assert_eq!(v["orderAfter"]["status"], "paid", "{v}");
    }
    assert_eq!(
        sim.session_fetches(),
        fetches + 1,
        "one Stripe fetch for fifty"
    );

    // Now final: answered from the database.
    let again = call(admin, Method::POST, &confirm, true).await;
    assert_eq!(again.json()["stripeCalled"], false);
    assert_eq!(again.json()["final"], true);
    assert_eq!(sim.session_fetches(), fetches + 1);

    // The confirm's payment reached the shop.
    assert!(
        eventually(Duration::from_secs(10), || async {
            shop.fulfilled().get(&lost.order_id.to_string()) == Some(&1)
        })
        .await,
        "the daemon delivered the notification"
    );
    // Support redelivers it from the admin listener: the shop gets it again, fulfils nothing.
    let redeliver = format!("/notifications/redeliver?order={}", lost.order_id);
    let queued = call(admin, Method::POST, &redeliver, true).await;
    assert_eq!(queued.status, 200, "{}", queued.text());
    assert_eq!(queued.json()["queued"], 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            shop.received().len() == 2
        })
        .await,
        "delivered again"
    );
    assert_eq!(shop.fulfilled().get(&lost.order_id.to_string()), Some(&1));
    let bad = call(
        admin,
        Method::POST,
        "/notifications/redeliver?everything",
        true,
    )
    .await;
    assert_eq!(bad.status, 400);
    let _ = stop.send(());
    task.await.expect("task").expect("daemon");
}
