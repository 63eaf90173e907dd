//! Checkouts that do not end in one go. Retried: the app gives an order a new Checkout Session
//! after the first one failed or was abandoned; the order keeps the payment intent of the session
//! that paid it (so that its refund finds it), and the older session expiring or failing later is
//! no anomaly. Settled late: a delayed payment (SEPA, ACH, Bacs) settles days after the session
//! expired, and `reconciler session` still finds the settlement.

use reconciler::inspect::{Target, inspect};
use sim::objects::{Session, charge_refunded, session_event};
use sim::server::StripeSim;
use tests::edge::TestEdge;
use tests::ledger::{event_rows, order};
use uuid::Uuid;

const KEY: &str = "sk_test_retried_suite";

async fn deliver(edge: &TestEdge, event_type: &str, session: &Session) {
    let event = session_event(event_type, session);
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{event_type}: {}", reply.text());
}

/// An order created for `first`, with `client_reference_id` set on both sessions as the docs ask.
async fn order_with_sessions(
    db: &tokio_postgres::Client,
    first: &str,
    second: &str,
) -> (Uuid, Session, Session) {
    let id = tests::ledger::insert_order(
        db,
        tests::ledger::NewOrder {
            session_id: Some(first.to_owned()),
            ..Default::default()
        },
    )
    .await;
    let mut s1 = Session::new(first);
    s1.client_reference_id = Some(id.to_string());
    let mut s2 = Session::new(second);
    s2.client_reference_id = Some(id.to_string());
    (id, s1, s2)
}

/// The app moves the order to its new session.
async fn retry_with(db: &tokio_postgres::Client, id: Uuid, session: &Session) {
    db.execute(
        "UPDATE orders SET stripe_session_id = $2 WHERE id = $1",
        &[&id, &session.id],
    )
    .await
    .expect("new session");
}

#[tokio::test]
async fn the_refund_of_the_paying_session_finds_the_order() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, mut s1, mut s2) =
        order_with_sessions(&db, "cs_test_retry_pi_1", "cs_test_retry_pi_2").await;
    s1.payment_status = "unpaid";
    s1.payment_intent = Some("pi_retry_first".into());
    deliver(&edge, "checkout.session.completed", &s1).await;
    assert_eq!(
        order(&db, id).await.payment_intent.as_deref(),
        Some("pi_retry_first")
    );
    deliver(&edge, "checkout.session.async_payment_failed", &s1).await;
    assert_eq!(order(&db, id).await.status, "failed");

    retry_with(&db, id, &s2).await;
    s2.payment_intent = Some("pi_retry_second".into());
    deliver(&edge, "checkout.session.completed", &s2).await;
    let paid = order(&db, id).await;
    assert_eq!(paid.status, "paid");
    assert_eq!(
        paid.payment_intent.as_deref(),
        Some("pi_retry_second"),
        "the order keeps the paying session's payment intent"
    );

    let refund = charge_refunded("pi_retry_second", 2000, 2000);
    assert_eq!(edge.webhook_json(&refund).await.status, 200);
    assert_eq!(order(&db, id).await.status, "refunded");
    let rows = event_rows(&db, refund["id"].as_str().expect("id")).await;
    assert_eq!(
        rows[0].order_id,
        Some(id),
        "the refund is the order's, not an orphan"
    );
}

#[tokio::test]
async fn an_older_session_expiring_after_the_retry_is_no_anomaly() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, s1, s2) = order_with_sessions(&db, "cs_test_retry_exp_1", "cs_test_retry_exp_2").await;
    retry_with(&db, id, &s2).await;
    deliver(&edge, "checkout.session.completed", &s2).await;
    assert_eq!(order(&db, id).await.status, "paid");

    // A day later, the abandoned first session expires.
    deliver(&edge, "checkout.session.expired", &s1).await;
    let after = order(&db, id).await;
    assert_eq!(after.status, "paid");
    assert_eq!(after.anomaly, None, "a retried checkout is no anomaly");
    let timeline = inspect(&edge.state.pool, None, &Target::Order(id))
        .await
        .expect("timeline");
    assert_eq!(
        timeline.events.len(),
        2,
        "both sessions on the order's timeline"
    );
}

#[tokio::test]
async fn a_pending_order_whose_first_session_failed_is_sent_to_its_new_session() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, mut s1, mut s2) =
        order_with_sessions(&db, "cs_test_retry_pend_1", "cs_test_retry_pend_2").await;
    retry_with(&db, id, &s2).await;
    // The first session's delayed payment fails after the app moved on; the second is paid on
    // Stripe, but its webhook never came.
    s1.payment_status = "unpaid";
    deliver(&edge, "checkout.session.async_payment_failed", &s1).await;
    let pending = order(&db, id).await;
    assert_eq!(pending.status, "pending");
    assert_eq!(pending.anomaly, None);

    let sim = StripeSim::start(KEY).await;
    s2.payment_status = "paid";
    sim.put_session(s2.object());
    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let timeline = inspect(
        &reconciler.pool,
        Some(&reconciler.stripe),
        &Target::Order(id),
    )
    .await
    .expect("timeline");
    assert_eq!(
        timeline.verdict,
        format!(
            "paid on Stripe, pending here: run `reconciler session {}`",
            s2.id
        )
    );
}

#[tokio::test]
async fn a_delayed_payment_that_settled_days_later_is_found_by_the_session_reconcile() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let sim = StripeSim::start(KEY).await;
    let now = chrono::Utc::now().timestamp();
    let mut session = Session::new("cs_test_sepa_settled_late");
    session.created = now - 3 * 86_400;
    let id = tests::ledger::pending_order(&db, &session.id).await;
    // Completed three days ago with a delayed method (unpaid): delivered.
    session.payment_status = "unpaid";
    let mut completed = session_event("checkout.session.completed", &session);
    completed["data"]["object"]["expires_at"] = serde_json::json!(session.created + 86_400);
    sim.add_event(completed.clone());
    assert_eq!(edge.webhook_json(&completed).await.status, 200);
    // Settled two hours ago: never delivered.
    session.payment_status = "paid";
    let mut object = session.object();
    object["expires_at"] = serde_json::json!(session.created + 86_400);
    let settled = sim::objects::envelope(
        &sim::objects::event_id(),
        "checkout.session.async_payment_succeeded",
        now - 7_200,
        false,
        object.clone(),
    );
    sim.add_event(settled);
    sim.put_session(object);
    assert_eq!(order(&db, id).await.status, "pending");

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let verdict = reconciler
        .reconcile_session(&session.id, reconciler::runs::Trigger::Cli)
        .await
        .expect("verdict");
    assert_eq!(verdict.events_found, 2, "{verdict:?}");
    assert_eq!(verdict.events_applied, 1, "{verdict:?}");
    assert_eq!(order(&db, id).await.status, "paid");
    assert_eq!(verdict.verdict, "paid on Stripe, paid here: nothing to do");
}
