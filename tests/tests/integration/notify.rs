//! Order notifications end to end: an edge records payments, a reconciler's deliverers post them
//! to the example shop, which verifies each signature, deduplicates and fulfils. Exactly one
//! notification per transition, delivered in order per order, retried on failures, dead after the
//! maximum age and redelivered on demand; other livemode never sent; two replicas share the work
//! without delivering a row twice; a hostile app costs one bounded attempt.

use std::time::Duration;

use reconciler::Reconciler;
use reconciler::notify::Notifier;
use reconciler::notify::store::{self, Redeliver};
use serde_json::Value;
use sim::objects::{Session, charge_refunded, session_event};
use sim::server::StripeSim;
use sim::shop::{Behaviour, Shop};
use tests::edge::TestEdge;
use tests::http::eventually;
use tests::ledger::pending_order;
use tokio::sync::watch;
use uuid::Uuid;

const SECRET: &str = "notify_secret_for_tests_0123456789abcdef";

/// A reconciler on the edge's database, delivering to `url`.
async fn reconciler(
    edge: &TestEdge,
    sim: &StripeSim,
    url: &str,
    extra: &[(&str, &str)],
) -> Reconciler {
    let mut env = vec![
        ("APP_NOTIFY_URL", url),
        ("APP_NOTIFY_SECRET", SECRET),
        ("APP_NOTIFY_TIMEOUT_SECS", "2"),
    ];
    env.extend_from_slice(extra);
    tests::reconciler::build(&edge.db, sim, &env).await
}

/// Deliverers running until the returned sender says stop.
fn deliver(r: &Reconciler) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let notifier = Notifier::new(r)
        .expect("notifier")
        .expect("APP_NOTIFY_URL is set");
    let (stop, stopped) = watch::channel(false);
    (stop, tokio::spawn(notifier.run(stopped)))
}

/// A pending order paid by a signed webhook; returns the order id and the session.
async fn paid_order(edge: &TestEdge, name: &str) -> (Uuid, Session) {
    let db = edge.db.client().await;
    let session = Session::new(format!("cs_test_notify_{name}_{}", Uuid::new_v4().simple()));
    let order = pending_order(&db, &session.id).await;
    let reply = edge
        .webhook_json(&session_event("checkout.session.completed", &session))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    (order, session)
}

async fn outbox(edge: &TestEdge, order: Uuid) -> Vec<(String, i32, Option<String>, bool, bool)> {
    edge.db
        .client()
        .await
        .query(
            "SELECT kind, attempts, last_error, delivered_at IS NOT NULL, dead_at IS NOT NULL
             FROM order_transitions WHERE order_id = $1 ORDER BY id",
            &[&order],
        )
        .await
        .expect("outbox")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn a_paid_order_reaches_the_shop_signed_once_and_is_fulfilled_once() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    let r = reconciler(&edge, &sim, &shop.url(), &[]).await;
    let (stop, running) = deliver(&r);
    let (order, session) = paid_order(&edge, "once").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !shop.received().is_empty()
        })
        .await,
        "delivered"
    );
    let received = shop.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].kind, "order.paid");
    assert_eq!(received[0].order_id, order.to_string());
    assert_eq!(shop.fulfilled().get(&order.to_string()), Some(&1));
    assert_eq!(shop.bad_signatures(), 0);
    let rows = outbox(&edge, order).await;
    assert_eq!(rows, vec![("order.paid".into(), 1, None, true, false)]);
    // The same event again (Stripe retries): a duplicate, no second notification.
    let db = edge.db.client().await;
    let payload: String = db
        .query_one(
            "SELECT payload::text FROM payment_events WHERE stripe_session_id = $1",
            &[&session.id],
        )
        .await
        .expect("event")
        .get(0);
    assert_eq!(
        edge.webhook(payload.as_bytes()).await.json()["duplicate"],
        true
    );
    assert_eq!(outbox(&edge, order).await.len(), 1);
    let _ = stop.send(true);
    running.await.expect("deliverers stop");
}

#[tokio::test]
async fn failures_retry_with_backoff_and_one_orders_notifications_arrive_in_order() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    shop.set_behaviour(Behaviour::Failing { percent: 100 });
    let r = reconciler(&edge, &sim, &shop.url(), &[]).await;
    let (stop, running) = deliver(&r);
    let (order, session) = paid_order(&edge, "order").await;
    let pi = session.payment_intent.clone().expect("payment intent");
    assert_eq!(
        edge.webhook_json(&charge_refunded(&pi, 2000, 2000))
            .await
            .status,
        200
    );
    // Both are queued; the refund waits behind the failing payment.
    assert!(
        eventually(Duration::from_secs(10), || async {
            outbox(&edge, order).await.first().is_some_and(|r| r.1 >= 2)
        })
        .await,
        "retried"
    );
    let rows = outbox(&edge, order).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]
            .2
            .as_deref()
            .is_some_and(|e| e.starts_with("HTTP 500")),
        "{rows:?}"
    );
    assert_eq!(rows[1].1, 0, "the second waits for the first: {rows:?}");
    shop.set_behaviour(Behaviour::Healthy);
    assert!(
        eventually(Duration::from_secs(10), || async {
            shop.received().len() >= 2
        })
        .await,
        "delivered after recovery"
    );
    let kinds: Vec<String> = shop.received().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["order.paid", "order.refunded"]);
    let _ = stop.send(true);
    running.await.expect("stop");
}

#[tokio::test]
async fn past_the_maximum_age_a_notification_is_dead_until_redelivered() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    shop.set_behaviour(Behaviour::Failing { percent: 100 });
    let r = reconciler(&edge, &sim, &shop.url(), &[("APP_NOTIFY_MAX_AGE", "1h")]).await;
    let (order, _) = paid_order(&edge, "dead").await;
    let db = edge.db.client().await;
    // Queued two hours ago: its next failure is its last.
    db.execute(
        "UPDATE order_transitions SET queued_at = now() - interval '2 hours' WHERE order_id = $1",
        &[&order],
    )
    .await
    .expect("age");
    let (stop, running) = deliver(&r);
    assert!(
        eventually(Duration::from_secs(10), || async {
            outbox(&edge, order).await.first().is_some_and(|r| r.4)
        })
        .await,
        "dead"
    );
    let backlog = store::backlog(&db, None).await.expect("backlog");
    assert_eq!((backlog.pending, backlog.dead), (0, 1));

    shop.set_behaviour(Behaviour::Healthy);
    assert_eq!(
        store::redeliver(&db, &Redeliver::Dead)
            .await
            .expect("redeliver"),
        1
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            outbox(&edge, order).await.first().is_some_and(|r| r.3)
        })
        .await,
        "delivered once redelivered"
    );
    assert_eq!(shop.fulfilled().get(&order.to_string()), Some(&1));
    // Redelivering a delivered order sends it again, with the same id: the shop's dedup holds.
    assert_eq!(
        store::redeliver(&db, &Redeliver::Order(order))
            .await
            .expect("again"),
        1
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            shop.received().len() == 2
        })
        .await
    );
    let received = shop.received();
    assert_eq!(received[0].id, received[1].id);
    assert_eq!(
        shop.fulfilled().get(&order.to_string()),
        Some(&1),
        "fulfilled once"
    );
    let _ = stop.send(true);
    running.await.expect("stop");
}

#[tokio::test]
async fn two_replicas_share_the_work_and_never_deliver_a_row_twice() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    let db = edge.db.client().await;
    let mut orders = Vec::new();
    for i in 0..150 {
        let session = Session::new(format!("cs_test_notify_replicas_{i}"));
        orders.push(pending_order(&db, &session.id).await);
        let reply = edge
            .webhook_json(&session_event("checkout.session.completed", &session))
            .await;
        assert_eq!(reply.status, 200);
    }
    let (a, b) = (
        reconciler(&edge, &sim, &shop.url(), &[("APP_NOTIFY_CONCURRENCY", "4")]).await,
        reconciler(&edge, &sim, &shop.url(), &[("APP_NOTIFY_CONCURRENCY", "4")]).await,
    );
    let ((stop_a, run_a), (stop_b, run_b)) = (deliver(&a), deliver(&b));
    assert!(
        eventually(Duration::from_secs(20), || async {
            shop.received().len() >= 150
        })
        .await,
        "all delivered: {}",
        shop.received().len()
    );
    let received = shop.received();
    let ids: std::collections::HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((received.len(), ids.len()), (150, 150), "each exactly once");
    let _ = (stop_a.send(true), stop_b.send(true));
    run_a.await.expect("stop");
    run_b.await.expect("stop");
}

#[tokio::test]
async fn notifications_of_the_other_livemode_are_never_sent() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    let r = reconciler(
        &edge,
        &sim,
        &shop.url(),
        &[("STRIPE_EXPECT_LIVEMODE", "false")],
    )
    .await;
    let db = edge.db.client().await;
    let mut live = Session::new("cs_live_notify_other_mode");
    live.livemode = true;
    let live_order = pending_order(&db, &live.id).await;
    // The edge accepts both modes (STRIPE_EXPECT_LIVEMODE=any): the live order moves.
    assert_eq!(
        edge.webhook_json(&session_event("checkout.session.completed", &live))
            .await
            .status,
        200
    );
    let (test_order, _) = paid_order(&edge, "test_mode").await;
    let (stop, running) = deliver(&r);
    assert!(
        eventually(Duration::from_secs(10), || async {
            !shop.received().is_empty()
        })
        .await
    );
    // A second look after the test-mode one: the live one is still not sent.
    tokio::time::timeout(Duration::from_secs(3), async {
        while outbox(&edge, test_order).await.first().is_none_or(|r| !r.3) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("test-mode delivered");
    let received: Vec<String> = shop.received().into_iter().map(|r| r.order_id).collect();
    assert_eq!(received, [test_order.to_string()]);
    assert_eq!(outbox(&edge, live_order).await[0].1, 0, "never attempted");
    let backlog = store::backlog(&db, Some(false)).await.expect("backlog");
    assert_eq!(
        backlog.pending, 0,
        "the other mode is not this deliverer's backlog"
    );
    let _ = stop.send(true);
    running.await.expect("stop");
}

/// An app that answers in every bad way: a huge body, a redirect, a connection never answered.
async fn hostile_app(mode: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut buf).await;
                match mode {
                    "huge" => {
                        let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1073741824\r\n\r\n";
                        let _ = stream.write_all(head.as_bytes()).await;
                        let chunk = vec![b'x'; 64 * 1024];
                        while stream.write_all(&chunk).await.is_ok() {}
                    }
                    "redirect" => {
                        let head = "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\n\r\n";
                        let _ = stream.write_all(head.as_bytes()).await;
                    }
                    _ => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_hostile_app_costs_one_bounded_attempt_each_time() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    for (mode, error) in [
        ("huge", "HTTP 500: xxxx"),
        ("redirect", "HTTP 302 (a redirect, not followed"),
        ("silent", "no answer within 2s"),
    ] {
        let addr = hostile_app(mode).await;
        let r = reconciler(&edge, &sim, &format!("http://{addr}/hook"), &[]).await;
        let (order, _) = paid_order(&edge, mode).await;
        let notifier = Notifier::new(&r).expect("notifier").expect("configured");
        let started = std::time::Instant::now();
        assert!(notifier.deliver_next().await.expect("one attempt"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode}: bounded"
        );
        let rows = outbox(&edge, order).await;
        let last = rows[0].2.clone().unwrap_or_default();
        assert!(last.starts_with(error), "{mode}: {last}");
        assert!(last.len() < 400, "{mode}: the error is an excerpt");
        assert!(!rows[0].3 && !rows[0].4, "{mode}: to be retried: {rows:?}");
        // Retried later, not now.
        assert!(
            !notifier.deliver_next().await.expect("nothing due"),
            "{mode}"
        );
        let db = edge.db.client().await;
        db.execute(
            "UPDATE order_transitions SET delivered_at = now() WHERE order_id = $1",
            &[&order],
        )
        .await
        .expect("done with it");
    }
    let peak = tests::process::peak_rss_kb(std::process::id()).unwrap_or(0);
    assert!(peak < 1024 * 1024, "a 1 GB answer was not read: {peak} kB");
}

#[tokio::test]
async fn the_payload_is_the_documented_contract() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    use http_body_util::BodyExt;
                    let sig = req.headers()["edge-signature"]
                        .to_str()
                        .unwrap_or("")
                        .to_owned();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().to_vec())
                        .unwrap_or_default();
                    let _ = tx.send((sig, body));
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::new()),
                    ))
                }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let r = reconciler(&edge, &sim, &format!("http://{addr}/n"), &[]).await;
    let (order, session) = paid_order(&edge, "contract").await;
    let notifier = Notifier::new(&r).expect("notifier").expect("configured");
    assert!(notifier.deliver_next().await.expect("delivered"));
    let (sig, body) = rx.recv().await.expect("received");
    let secret = common::config::Secret::new(SECRET.to_owned());
    let now = chrono::Utc::now().timestamp();
    common::stripe::signature::verify(&sig, &body, &[secret], 300, now).expect("Stripe's scheme");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amount_refunded",
            "amount_total",
            "currency",
            "dispute_status",
            "from",
            "id",
            "livemode",
            "occurred_at",
            "order_id",
            "stripe_event_id",
            "stripe_session_id",
            "to",
            "type"
        ]
    );
    assert!(
        body.starts_with(b"{\"id\":\"otr_"),
        "id first, as documented"
    );
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("otr_")));
    assert_eq!(v["order_id"], order.to_string());
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("pending"), Some("paid"))
    );
    assert_eq!(v["stripe_session_id"], session.id);
    assert_eq!(
        (v["amount_total"].as_i64(), v["currency"].as_str()),
        (session.amount_total, Some("eur")),
        "the order expected none: the paying session's amount is recorded"
    );
    assert_eq!(v["livemode"], false);
    assert!(chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str().unwrap_or("")).is_ok());
}

#[tokio::test]
async fn support_sees_each_notification_and_redelivers_from_the_command_line() {
    let (edge, sim) = (
        TestEdge::spawn().await,
        StripeSim::start("sk_test_notify").await,
    );
    let shop = Shop::start(SECRET).await;
    shop.set_behaviour(Behaviour::Failing { percent: 100 });
    let r = reconciler(&edge, &sim, &shop.url(), &[]).await;
    let (order, _) = paid_order(&edge, "support").await;
    let notifier = Notifier::new(&r).expect("notifier").expect("configured");
    assert!(notifier.deliver_next().await.expect("one attempt"));
    let url = edge.db.url();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("STRIPE_EXPECT_LIVEMODE", "false"),
    ];
    let order_arg = order.to_string();
    let inspect = tests::process::run(
        "reconciler",
        &["inspect", "--order", &order_arg],
        &env,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        inspect.stdout.contains("notified 1 notification(s)"),
        "{}",
        inspect.stdout
    );
    assert!(inspect.stdout.contains("order.paid"), "{}", inspect.stdout);
    assert!(inspect.stdout.contains("retrying"), "{}", inspect.stdout);
    assert!(
        inspect.stdout.contains("last error: HTTP 500"),
        "{}",
        inspect.stdout
    );

    let db = edge.db.client().await;
    let id: i64 = db
        .query_one(
            "SELECT id FROM order_transitions WHERE order_id = $1",
            &[&order],
        )
        .await
        .expect("row")
        .get(0);
    db.execute(
        "UPDATE order_transitions SET dead_at = now() WHERE id = $1",
        &[&id],
    )
    .await
    .expect("dead");
    for (args, code, queued) in [
        (vec!["redeliver", "--dead"], 0, 1),
        (vec!["redeliver", "--transition", "otr_999999"], 1, 0),
        (vec!["redeliver", "--order", order_arg.as_str()], 0, 1),
    ] {
        let run = tests::process::run("reconciler", &args, &env, Duration::from_secs(30)).await;
        assert_eq!(run.status.code(), Some(code), "{args:?}: {}", run.stderr);
        let out: Value = serde_json::from_str(&run.stdout).expect("json");
        assert_eq!(out["queued"], queued, "{args:?}");
    }
    let bad = tests::process::run(
        "reconciler",
        &["redeliver", "--transition", "nope"],
        &env,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(bad.status.code(), Some(64), "{}", bad.stderr);
    shop.set_behaviour(Behaviour::Healthy);
    assert!(notifier.deliver_next().await.expect("delivered"));
    assert_eq!(shop.fulfilled().get(&order.to_string()), Some(&1));
}
