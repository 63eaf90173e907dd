//! `reconciler inspect`: the support timeline from any of an event, a session, an order or a
//! request id, with Stripe's view and a verdict that says what to run.

use common::db;
use reconciler::inspect::{Target, inspect, render_text};
use reconciler::pass::Trigger;
use sim::scenario::{Checkout, Driver, Ending, Rates};
use sim::server::StripeSim;
use tests::edge::TestEdge;

const KEY: &str = "sk_test_inspect_suite";

/// What every timeline starts from: the simulator, an edge, its database and a checkout driver.
async fn shop(rates: Rates, seed: u64) -> (StripeSim, TestEdge, tokio_postgres::Client, Driver) {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let driver = Driver::new(edge.public, &edge.secrets[0], rates, seed);
    (sim, edge, db, driver)
}

/// A checkout created `ago` seconds ago that ends as `ending`; its events are not delivered.
async fn checkout_ago(
    driver: &mut Driver,
    db: &tokio_postgres::Client,
    sim: &StripeSim,
    ending: Ending,
    ago: i64,
) -> Checkout {
    let created = chrono::Utc::now().timestamp() - ago;
    driver.checkout(db, sim, ending, created).await
}

#[tokio::test]
async fn the_timeline_tells_support_what_to_run() {
    let (sim, edge, db, mut driver) = shop(Rates::default(), 1).await;
    let lost = checkout_ago(&mut driver, &db, &sim, Ending::AsyncPaid, 300).await;
    // Only the first event (completed, unpaid) arrives: paid on Stripe, pending here.
    driver.post(&lost.events[0]).await;
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let pool = db::pool(&edge.db.db_config()).expect("pool");

    let by_session = inspect(
        &pool,
        Some(&reconciler.stripe),
        &Target::Session(lost.session_id.clone()),
    )
    .await
    .expect("timeline");
    assert_eq!(
        by_session.order.as_ref().map(|o| o.status.as_str()),
        Some("pending")
    );
    assert_eq!(by_session.events.len(), 1);
    assert_eq!(by_session.events[0].source, "webhook");
    assert_eq!(
        by_session
            .stripe
            .as_ref()
            .and_then(|s| s.payment_status.as_deref()),
        Some("paid")
    );
    assert_eq!(
        by_session.verdict,
        format!(
            "paid on Stripe, pending here: run `reconciler session {}`",
            lost.session_id
        )
    );
    let text = render_text(&by_session);
    assert!(
        text.contains("verdict  paid on Stripe, pending here"),
        "{text}"
    );

    // Every entry point leads to the same order.
    let event_id = lost.events[0]["id"].as_str().expect("id").to_owned();
    let request_id: String = db
        .query_one(
            "SELECT request_id FROM payment_events WHERE stripe_event_id = $1",
            &[&event_id],
        )
        .await
        .expect("row")
        .get(0);
    for target in [
        Target::Event(event_id),
        Target::Order(lost.order_id),
        Target::RequestId(request_id),
    ] {
        let t = inspect(&pool, None, &target).await.expect("timeline");
        assert_eq!(
            t.order.as_ref().map(|o| o.id.to_string()),
            Some(lost.order_id.to_string()),
            "{target:?}"
        );
        assert!(t.verdict.contains("set STRIPE_API_KEY"), "{}", t.verdict);
    }

    reconciler
        .reconcile_session(&lost.session_id, Trigger::Cli)
        .await
        .expect("verdict");
    reconciler
        .pass(Trigger::Cli, &tokio::sync::watch::channel(false).1)
        .await;
    let after = inspect(
        &pool,
        Some(&reconciler.stripe),
        &Target::Order(lost.order_id),
    )
    .await
    .expect("timeline");
    assert_eq!(
        after.order.as_ref().map(|o| o.status.as_str()),
        Some("paid")
    );
    assert_eq!(
        after
            .events
            .iter()
            .map(|e| e.source.as_str())
            .collect::<Vec<_>>(),
        vec!["webhook", "manual"]
    );
    assert_eq!(after.verdict, "paid on Stripe, paid here: nothing to do");
    let json = serde_json::to_value(&after).expect("json");
    assert_eq!(json["events"][1]["source"], "manual");

    let nothing = inspect(&pool, None, &Target::Event("evt_unknown".into()))
        .await
        .expect("timeline");
    assert!(nothing.order.is_none() && nothing.events.is_empty());
    assert!(
        nothing.verdict.starts_with("nothing here"),
        "{}",
        nothing.verdict
    );
}

#[tokio::test]
async fn the_local_timeline_comes_first_even_when_stripe_is_out_of_reach() {
    let (sim, edge, db, mut driver) = shop(Rates::default(), 2).await;
    let paid = checkout_ago(&mut driver, &db, &sim, Ending::Paid, 300).await;
    driver.deliver(&paid).await;
    // A Stripe API base where nothing listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let finished = tests::process::run(
        "reconciler",
        &["inspect", "--session", &paid.session_id],
        &[
            ("DATABASE_URL", &edge.db.url()),
            ("STRIPE_API_KEY", KEY),
            ("STRIPE_API_BASE", &format!("http://{closed}")),
            ("STRIPE_EXPECT_LIVEMODE", "any"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "error"),
        ],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(finished.status.code(), Some(3), "{finished:?}");
    let text = finished.stdout;
    assert!(
        text.contains(&format!("order    {}", paid.order_id)),
        "{text}"
    );
    assert!(text.contains("checkout.session.completed"), "{text}");
    assert!(text.contains("Stripe unreachable:"), "{text}");
    assert!(
        text.contains("Connection refused") || text.contains("connection refused"),
        "the cause is named: {text}"
    );
    assert!(!text.contains("not consulted"), "{text}");
    let local = text.find("order    ").expect("order line");
    let remote = text.find("Stripe unreachable").expect("stripe line");
    assert!(local < remote, "what the database knows comes first");
}

#[tokio::test]
async fn an_event_the_ledger_lacks_is_explained_with_the_command_that_fixes_it() {
    let (sim, edge, db, mut driver) = shop(Rates::default(), 4).await;
    let lost = checkout_ago(&mut driver, &db, &sim, Ending::Paid, 300).await;
    let event_id = lost.events[0]["id"].as_str().expect("id").to_owned();
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let pool = db::pool(&edge.db.db_config()).expect("pool");
    let t = inspect(
        &pool,
        Some(&reconciler.stripe),
        &Target::Event(event_id.clone()),
    )
    .await
    .expect("timeline");
    let missing = t
        .missing_event
        .as_ref()
        .expect("Stripe's view of the event");
    assert_eq!(
        missing.session_id.as_deref(),
        Some(lost.session_id.as_str())
    );
    assert_eq!(missing.order_id, Some(lost.order_id.to_string()));
    assert!(t.stripe_asked);
    assert!(
        t.verdict
            .contains(&format!("reconciler session {}", lost.session_id)),
        "{}",
        t.verdict
    );
    let text = render_text(&t);
    assert!(text.contains("not in the ledger"), "{text}");
    assert!(!text.contains("not consulted"), "{text}");
}

#[tokio::test]
async fn a_run_request_id_lists_every_order_the_run_touched() {
    let (sim, edge, db, mut driver) = shop(Rates::dropping(1.0), 6).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = checkout_ago(&mut driver, &db, &sim, Ending::Paid, 600 - i).await;
        ids.push(c.order_id.to_string());
    }
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let summary = reconciler
        .pass(Trigger::Cli, &tokio::sync::watch::channel(false).1)
        .await;
    let run = summary.run_id.expect("run");
    let pool = db::pool(&edge.db.db_config()).expect("pool");
    let t = inspect(
        &pool,
        None,
        &Target::RequestId(format!("reconcile-run-{run}")),
    )
    .await
    .expect("timeline");
    let mut listed: Vec<String> = t.orders.iter().map(|o| o.id.to_string()).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "every order of the run");
    assert_eq!(t.runs.len(), 1);
    assert_eq!(t.runs[0].id, run);
    // A session reconcile is a run too.
    let verdict = reconciler
        .reconcile_session(&driver_session(&db, &ids[0]).await, Trigger::Cli)
        .await
        .expect("verdict");
    assert!(verdict.found_on_stripe);
    let runs: i64 = db
        .query_one(
            "SELECT count(*) FROM reconcile_runs WHERE scope = 'session' AND status = 'ok'",
            &[],
        )
        .await
        .expect("runs")
        .get(0);
    assert_eq!(runs, 1);
    // Times are RFC 3339, UTC.
    let json = serde_json::to_value(&t).expect("json");
    let received = json["events"][0]["receivedAt"].as_str().expect("time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(received).is_ok() && received.ends_with('Z'),
        "{received}"
    );
}

async fn driver_session(db: &tokio_postgres::Client, order: &str) -> String {
    db.query_one(
        "SELECT stripe_session_id FROM orders WHERE id = $1::text::uuid",
        &[&order],
    )
    .await
    .expect("order")
    .get(0)
}
