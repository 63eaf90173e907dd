//! `reconciler inspect`: the support timeline from any of an event, a session, an order or a
//! request id, with Stripe's view and a verdict that says what to run.

use common::db;
use reconciler::inspect::{Target, inspect, render_text};
use reconciler::pass::Trigger;
use tests::driver::{Driver, Ending, Rates};
use tests::edge::TestEdge;
use tests::stripe_sim::StripeSim;

const KEY: &str = "sk_test_inspect_suite";

#[tokio::test]
async fn the_timeline_tells_support_what_to_run() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let mut driver = Driver::new(edge.public, &edge.secrets[0], Rates::default(), 1);
    let lost = driver
        .checkout(
            &db,
            &sim,
            Ending::AsyncPaid,
            chrono::Utc::now().timestamp() - 300,
        )
        .await;
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
            t.order.as_ref().map(|o| o.id.clone()),
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
