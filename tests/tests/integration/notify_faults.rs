//! Order notifications under faults: paid orders (a fifth of them refunded afterwards) while the
//! shop answers 500 at random, hangs at random and goes down for a while, the edge and the
//! reconciler are killed with `kill -9` and replaced, and Postgres restarts. Afterwards every
//! transition reached the shop at least once, each order was fulfilled exactly once (the shop's
//! dedup by id), each order's notifications first arrived in order, the lag is back to 0 and
//! nothing is dead. Sizes: `NOTIFY_DRILL_ORDERS` (default 1,000), `NOTIFY_DRILL_DOWN_SECS`
//! (default 8); docs/performance.md shows a run at 5,000 orders and 30 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::stripe::signature;
use http::Method;
use http_body_util::Full;
use sim::objects::{Session, charge_refunded, envelope};
use sim::shop::{Behaviour, Shop};
use tests::fault_proxy::{FaultProxy, Target};
use tests::http::{eventually, get, request, send};
use tests::process::{Daemon, free_port};

const WEBHOOK_SECRET: &str = "whsec_notify_drill_0123456789";
const NOTIFY_SECRET: &str = "notify_drill_secret_0123456789abcdef0123";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An edge process on `url`; returns it and its public address.
async fn edge(url: &str) -> (Daemon, SocketAddr) {
    let public = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (p, a) = (public.to_string(), admin.to_string());
    let env = [
        ("DATABASE_URL", url),
        ("EDGE_LISTEN", p.as_str()),
        ("EDGE_ADMIN_LISTEN", a.as_str()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_EXPECT_LIVEMODE", "false"),
    ];
    (Daemon::start("edge", &["serve"], &env, admin).await, public)
}

/// A `reconciler run` process delivering to `shop`; returns it and its admin address.
async fn reconciler(url: &str, shop: &Shop) -> (Daemon, SocketAddr) {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (a, notify_url) = (admin.to_string(), shop.url());
    let env = [
        ("DATABASE_URL", url),
        ("RECONCILER_ADMIN_LISTEN", a.as_str()),
        ("STRIPE_EXPECT_LIVEMODE", "false"),
        ("STRIPE_API_KEY", "sk_test_notify_drill"),
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"),
        ("APP_NOTIFY_URL", notify_url.as_str()),
        ("APP_NOTIFY_SECRET", NOTIFY_SECRET),
        ("APP_NOTIFY_TIMEOUT_SECS", "2"),
    ];
    (
        Daemon::start("reconciler", &["run"], &env, admin).await,
        admin,
    )
}

/// Sends `events` in turn from 16 workers, each retrying until a 2xx, as Stripe does.
async fn send_all(balancer: SocketAddr, events: Arc<Vec<Bytes>>, sent: Arc<AtomicU64>) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (events, next, sent) = (events.clone(), next.clone(), sent.clone());
            tokio::spawn(async move {
                while let Some(body) = events.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let deadline = Instant::now() + Duration::from_secs(90);
                    loop {
                        let t = chrono::Utc::now().timestamp();
                        let req = request(Method::POST, balancer, "/stripe/webhook")
                            .header("stripe-signature", signature::sign(WEBHOOK_SECRET, t, body))
                            .body(Full::new(body.clone()))
                            .expect("request");
                        if send(balancer, req)
                            .await
                            .is_ok_and(|r| r.status.is_success())
                        {
                            break;
                        }
                        assert!(Instant::now() < deadline, "a webhook never succeeded");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_shop_through_crashes_restarts_and_an_app_outage() {
    let orders = setting("NOTIFY_DRILL_ORDERS", 1000);
    let down = Duration::from_secs(setting("NOTIFY_DRILL_DOWN_SECS", 8) as u64);
    let started = Instant::now();
    let cluster = tests::pg::DedicatedCluster::start().expect("cluster");
    let config = cluster.migrated_db("notify_drill").await;
    let url = tests::pg::conninfo(&config);
    let db = tests::pg::connect(&config).await.expect("db");

    // The orders, their payments, and a refund for every fifth one.
    let now = chrono::Utc::now().timestamp();
    let (mut paid, mut refunds) = (Vec::new(), Vec::new());
    for i in 0..orders {
        let mut s = Session::new(format!("cs_test_drill_{i}"));
        s.created = now - 120;
        tests::ledger::pending_order(&db, &s.id).await;
        let id = format!("evt_drill_paid_{i}");
        let event = envelope(
            &id,
            "checkout.session.completed",
            now - 60,
            false,
            s.object(),
        );
        paid.push(Bytes::from(event.to_string()));
        if i % 5 == 0 {
            let pi = s.payment_intent.clone().expect("payment intent");
            refunds.push(Bytes::from(charge_refunded(&pi, 2000, 2000).to_string()));
        }
    }
    let expected = (orders + refunds.len()) as i64;

    let shop = Shop::start(NOTIFY_SECRET).await;
    shop.set_behaviour(Behaviour::Failing { percent: 20 });
    let (first_edge, public) = edge(&url).await;
    let balancer = FaultProxy::start(Target::Tcp(public)).await;
    let (first_reconciler, _) = reconciler(&url, &shop).await;
    let sent = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(send_all(balancer.addr(), Arc::new(paid), sent.clone()));

    // An edge crash: a new one takes over behind the balancer.
    let at = |share: usize| {
        let sent = sent.clone();
        async move {
            eventually(Duration::from_secs(60), || async {
                sent.load(Ordering::Relaxed) as usize >= orders * share / 100
            })
            .await
        }
    };
    assert!(at(25).await);
    first_edge.kill9().await;
    let (_second_edge, public) = edge(&url).await;
    balancer.retarget(Target::Tcp(public));
    // Postgres restarts.
    assert!(at(50).await);
    tokio::task::block_in_place(|| cluster.restart()).expect("restart");
    // The reconciler crashes mid-delivery; another takes over. The shop starts hanging on some.
    assert!(at(70).await);
    first_reconciler.kill9().await;
    shop.set_behaviour(Behaviour::Hanging { percent: 5 });
    let (_second_reconciler, admin) = reconciler(&url, &shop).await;
    load.await.expect("payments sent");
    // The shop goes down; the refunds arrive meanwhile.
    shop.go_down();
    send_all(
        balancer.addr(),
        Arc::new(refunds),
        Arc::new(AtomicU64::new(0)),
    )
    .await;
    tokio::time::sleep(down).await;
    shop.come_back().await.expect("the shop is back");
    shop.set_behaviour(Behaviour::Healthy);

    let db = tests::pg::connect(&config).await.expect("db after restart");
    let done = eventually(Duration::from_secs(180), || async {
        db.query_one(
            "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL), count(*) FROM order_transitions",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, i64>(0) == expected && r.get::<_, i64>(1) == expected)
    })
    .await;
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NOT NULL),
                    count(*) FILTER (WHERE dead_at IS NOT NULL), coalesce(sum(attempts), 0)
             FROM order_transitions",
            &[],
        )
        .await
        .expect("outbox");
    let (rows, delivered, dead, attempts): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        done,
        "delivered {delivered} of {rows} (expected {expected}), dead {dead}"
    );
    assert_eq!(dead, 0, "nothing dead");

    // At least once, each id; once fulfilled per order; each order's first arrivals in order.
    let received = shop.received();
    let ids: HashMap<&str, usize> = received.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.id.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        ids.len() as i64,
        expected,
        "every transition reached the shop"
    );
    let fulfilled = shop.fulfilled();
    assert_eq!(fulfilled.len(), orders, "every order fulfilled");
    assert!(fulfilled.values().all(|n| *n == 1), "each exactly once");
    let mut first_kinds: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in &received {
        if seen.insert(r.id.as_str()) {
            first_kinds
                .entry(r.order_id.as_str())
                .or_default()
                .push(r.kind.as_str());
        }
    }
    assert!(
        first_kinds
            .values()
            .all(|k| k == &["order.paid"] || k == &["order.paid", "order.refunded"]),
        "per-order order"
    );
    // The lag gauge comes back to 0 (it is refreshed every few seconds).
    assert!(
        eventually(Duration::from_secs(20), || async {
            get(admin, "/metrics")
                .await
                .text()
                .lines()
                .any(|l| l == "reconciler_app_notify_lag_seconds 0")
        })
        .await,
        "lag back to 0"
    );
    let redelivered = received.len() - ids.len();
    println!(
        "notify-drill orders={orders} transitions={expected} attempts={attempts} \
         shop_requests={} received={} redelivered={redelivered} down_s={} elapsed_s={:.1}",
        shop.requests(),
        received.len(),
        down.as_secs(),
        started.elapsed().as_secs_f64()
    );
}
