//! Nothing lost, nothing doubled: a steady load of unique signed events, sent by a client that
//! behaves like Stripe (it retries every non-2xx and connection error until it gets a 2xx), while
//! a fault hits the database path. Afterwards every event is in the ledger exactly once, every
//! order is paid, and the edge recovered by itself. Each run prints one line of figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::stripe::signature;
use http::Method;
use http_body_util::Full;
use reconciler::pass::Trigger;
use sim::objects::{Session, envelope};
use sim::server::StripeSim;
use tests::edge::TestEdge;
use tests::http::{eventually, get, request, send};
use tokio::sync::watch;

/// Figures of one run.
#[derive(Debug, Default)]
struct Figures {
    sent: AtomicU64,
    ok: AtomicU64,
    server_errors: AtomicU64,
    retries: AtomicU64,
}

/// Events of the run, all for pre-created orders.
async fn prepare(edge: &TestEdge, n: usize, sim: Option<&StripeSim>) -> Vec<(String, Bytes)> {
    prepare_in(&edge.db.client().await, n, sim).await
}

async fn prepare_in(
    db: &tokio_postgres::Client,
    n: usize,
    sim: Option<&StripeSim>,
) -> Vec<(String, Bytes)> {
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let now = chrono::Utc::now().timestamp();
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        let mut session = Session::new(format!("cs_test_fault_{prefix}_{i}"));
        session.created = now - 120;
        tests::ledger::pending_order(db, &session.id).await;
        let id = format!("evt_fault_{prefix}_{i}");
        let event = envelope(
            &id,
            "checkout.session.completed",
            now - 60,
            false,
            session.object(),
        );
        if let Some(sim) = sim {
            sim.add_event(event.clone());
        }
        events.push((id, Bytes::from(event.to_string())));
    }
    events
}

/// Sends every event to `edge` from `connections` workers, each retrying until a 2xx.
async fn load(
    edge: &TestEdge,
    events: Arc<Vec<(String, Bytes)>>,
    connections: usize,
    figures: Arc<Figures>,
) {
    load_to(edge.public, &edge.secrets[0], events, connections, figures).await;
}

/// Sends every event to `addr` from `connections` workers, each retrying every non-2xx and
/// connection error until a 2xx (bounded by a deadline).
async fn load_to(
    addr: std::net::SocketAddr,
    secret: &str,
    events: Arc<Vec<(String, Bytes)>>,
    connections: usize,
    figures: Arc<Figures>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (events, next, figures) = (events.clone(), next.clone(), figures.clone());
            let secret = secret.to_owned();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while let Some((_, body)) = events.get(next.fetch_add(1, Ordering::Relaxed)) {
                    figures.sent.fetch_add(1, Ordering::Relaxed);
                    let mut attempt = 0u32;
                    loop {
                        let header = signature::sign(&secret, chrono::Utc::now().timestamp(), body);
                        let req = request(Method::POST, addr, "/stripe/webhook")
                            .header("stripe-signature", header)
                            .body(Full::new(body.clone()))
                            .expect("request");
                        match send(addr, req).await {
                            Ok(r) if r.status.is_success() => {
                                figures.ok.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status.is_server_error() => {
                                figures.server_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "retries never succeeded"
                        );
                        figures.retries.fetch_add(1, Ordering::Relaxed);
                        attempt += 1;
                        // Stripe-like backoff between retries.
                        let backoff = Duration::from_millis(10 * u64::from(attempt.min(20)));
                        tokio::time::sleep(backoff).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
}

/// Exactly once per event, every order paid; prints the run's line.
async fn verify(name: &str, edge: &TestEdge, events: &[(String, Bytes)], figures: &Figures) {
    verify_in(name, &edge.db.client().await, events, figures).await;
}

async fn verify_in(
    name: &str,
    db: &tokio_postgres::Client,
    events: &[(String, Bytes)],
    figures: &Figures,
) {
    let ids: Vec<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
    let rows: Vec<(String, i64)> = db
        .query(
            "SELECT stripe_event_id, count(*) FROM payment_events WHERE stripe_event_id = ANY($1) GROUP BY 1",
            &[&ids],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let lost = events.len() - rows.len();
    let doubled = rows.iter().filter(|(_, n)| *n > 1).count();
    let unpaid: i64 = db
        .query_one(
            "SELECT count(*) FROM orders WHERE stripe_session_id LIKE 'cs_test_fault_%' AND status <> 'paid'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    println!(
        "fault={name} sent={} 2xx={} 5xx={} retries={} lost={lost} doubled={doubled}",
        figures.sent.load(Ordering::Relaxed),
        figures.ok.load(Ordering::Relaxed),
        figures.server_errors.load(Ordering::Relaxed),
        figures.retries.load(Ordering::Relaxed),
    );
    assert_eq!(lost, 0, "{name}: events lost");
    assert_eq!(doubled, 0, "{name}: events doubled");
    assert_eq!(
        unpaid, 0,
        "{name}: orders not in the state their events imply"
    );
    assert_eq!(
        figures.ok.load(Ordering::Relaxed),
        figures.sent.load(Ordering::Relaxed)
    );
    let (once, other) = tests::ledger::paid_notifications(db, "cs_test_fault_%").await;
    assert_eq!(
        (once, other),
        (rows.len() as i64, 0),
        "{name}: one order.paid notification per order"
    );
}

/// Watches `/ready` until `stop`, and says whether it ever answered 503.
fn watch_ready(
    admin: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        let mut saw_503 = false;
        while !*stop.borrow() {
            saw_503 |= get(admin, "/ready").await.status == 503;
            // Next probe in 50 ms, or at once when told to stop.
            let _ = tokio::time::timeout(Duration::from_millis(50), stop.changed()).await;
        }
        saw_503
    })
}

#[tokio::test]
async fn backends_killed_mid_load() {
    let edge = TestEdge::spawn().await;
    let events = Arc::new(prepare(&edge, 1500, None).await);
    let figures = Arc::new(Figures::default());
    let admin = edge.db.client().await;
    let fault = async {
        assert!(
            eventually(Duration::from_secs(20), || async {
                figures.ok.load(Ordering::Relaxed) >= 300
            })
            .await
        );
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("terminate")
            .get(0);
        assert!(killed > 0, "the edge's backends were terminated");
    };
    let ((), ()) = tokio::join!(load(&edge, events.clone(), 24, figures.clone()), fault);
    verify("pg_terminate_backend", &edge, &events, &figures).await;
}

#[tokio::test]
async fn database_link_cut_for_five_seconds_mid_load() {
    let edge = TestEdge::builder().through_fault_proxy().spawn().await;
    let events = Arc::new(prepare(&edge, 1500, None).await);
    let figures = Arc::new(Figures::default());
    let (stop_watch, stopped) = watch::channel(false);
    let ready = watch_ready(edge.admin, stopped);
    let cut = async {
        assert!(
            eventually(Duration::from_secs(20), || async {
                figures.ok.load(Ordering::Relaxed) >= 300
            })
            .await
        );
        let proxy = edge.fault.as_ref().expect("fault proxy");
        proxy.cut();
        // The outage lasts five seconds of wall time while the load keeps retrying.
        let outage_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        tokio::time::sleep_until(outage_deadline).await;
        proxy.restore();
    };
    let ((), ()) = tokio::join!(load(&edge, events.clone(), 24, figures.clone()), cut);
    let _ = stop_watch.send(true);
    assert!(ready.await.expect("watcher"), "/ready showed the outage");
    assert!(
        figures.server_errors.load(Ordering::Relaxed) > 0,
        "the outage was seen as 5xx"
    );
    verify("tcp_cut_5s", &edge, &events, &figures).await;
    assert_eq!(
        get(edge.admin, "/ready").await.status,
        200,
        "recovered without a restart"
    );
}

#[tokio::test]
async fn a_pool_of_two_under_sixty_four_connections() {
    let edge = TestEdge::builder()
        .env("DATABASE_POOL_SIZE", "2")
        .spawn()
        .await;
    let events = Arc::new(prepare(&edge, 1000, None).await);
    let figures = Arc::new(Figures::default());
    load(&edge, events.clone(), 64, figures.clone()).await;
    verify("pool_2_conns_64", &edge, &events, &figures).await;
}

#[tokio::test]
async fn the_reconciler_races_the_webhooks_for_the_same_events() {
    let sim = StripeSim::start("sk_test_fault_suite").await;
    let edge = TestEdge::spawn().await;
    let events = Arc::new(prepare(&edge, 1000, Some(&sim)).await);
    let figures = Arc::new(Figures::default());
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let racing = AtomicBool::new(true);
    let passes = async {
        let (_stop, stopped) = watch::channel(false);
        let mut backfilled = 0;
        while racing.load(Ordering::Relaxed) {
            let summary = reconciler.pass(Trigger::Manual, &stopped).await;
            assert_ne!(summary.status, "failed", "{summary:?}");
            backfilled += summary.events_backfilled;
        }
        backfilled
    };
    let send = async {
        load(&edge, events.clone(), 24, figures.clone()).await;
        racing.store(false, Ordering::Relaxed);
    };
    let (backfilled, ()) = tokio::join!(passes, send);
    println!("reconciler backfilled {backfilled} of the events while the webhooks arrived");
    verify("reconciler_race", &edge, &events, &figures).await;
}

#[tokio::test]
async fn an_edge_drained_by_sigterm_and_replaced_by_a_new_one() {
    let old = TestEdge::spawn().await;
    let secret = old.secrets[0].clone();
    let url = old.db.url();
    let events = Arc::new(prepare(&old, 1500, None).await);
    let figures = Arc::new(Figures::default());
    // A load balancer in front: the client keeps one address while the edges change behind it.
    let balancer =
        tests::fault_proxy::FaultProxy::start(tests::fault_proxy::Target::Tcp(old.public)).await;
    let mut old = old;
    let replace = async {
        assert!(
            eventually(Duration::from_secs(20), || async {
                figures.ok.load(Ordering::Relaxed) >= 300
            })
            .await
        );
        old.trigger_stop();
        let admin = old.admin;
        assert!(
            eventually(Duration::from_secs(5), || async {
                get(admin, "/ready").await.status == 503
            })
            .await
        );
        let new = TestEdge::builder()
            .env("DATABASE_URL", &url)
            .env("STRIPE_WEBHOOK_SECRET", &secret)
            .spawn()
            .await;
        balancer.retarget(tests::fault_proxy::Target::Tcp(new.public));
        old.stopped().await;
        new
    };
    let ((), new) = tokio::join!(
        load_to(
            balancer.addr(),
            &secret,
            events.clone(),
            24,
            figures.clone()
        ),
        replace
    );
    let db = tests::pg::connect(&url.parse().expect("url"))
        .await
        .expect("db");
    verify_in("sigterm_new_edge", &db, &events, &figures).await;
    assert_eq!(get(new.admin, "/ready").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load() {
    let cluster = tests::pg::DedicatedCluster::start().expect("dedicated cluster");
    let config = cluster.migrated_db("restart_under_load").await;
    let url = tests::pg::conninfo(&config);
    let edge = TestEdge::builder().env("DATABASE_URL", &url).spawn().await;
    let db = tests::pg::connect(&config).await.expect("db");
    let events = Arc::new(prepare_in(&db, 1500, None).await);
    drop(db);
    let figures = Arc::new(Figures::default());
    let (stop_watch, stopped) = watch::channel(false);
    let ready = watch_ready(edge.admin, stopped);
    let restart = async {
        assert!(
            eventually(Duration::from_secs(20), || async {
                figures.ok.load(Ordering::Relaxed) >= 300
            })
            .await
        );
        let cluster = &cluster;
        tokio::task::block_in_place(|| cluster.restart()).expect("restart");
    };
    let ((), ()) = tokio::join!(load(&edge, events.clone(), 24, figures.clone()), restart);
    let _ = stop_watch.send(true);
    let saw_503 = ready.await.expect("watcher");
    let db = tests::pg::connect(&config).await.expect("db after restart");
    verify_in("postgres_restart", &db, &events, &figures).await;
    assert!(
        saw_503 || figures.server_errors.load(Ordering::Relaxed) > 0,
        "the restart was seen"
    );
    assert_eq!(
        get(edge.admin, "/ready").await.status,
        200,
        "recovered without restarting the edge"
    );
}
