//! Every row of the order state machine, end to end through signed webhooks: lookups by session,
//! `client_reference_id` and `metadata.order_id`, orphans, `paid` never downgraded, amount and
//! livemode guards, refunds found by payment intent.

use sim::objects::{Session, charge_refunded, session_event};
use tests::edge::TestEdge;
use tests::ledger::{NewOrder, event_rows, insert_order, order};

async fn order_for(edge: &TestEdge, session: &Session, status: &'static str) -> uuid::Uuid {
    let db = edge.db.client().await;
    insert_order(
        &db,
        NewOrder {
            session_id: Some(session.id.clone()),
            status: Some(status),
            ..Default::default()
        },
    )
    .await
}

async fn deliver(edge: &TestEdge, event_type: &str, session: &Session) -> serde_json::Value {
    let event = session_event(event_type, session);
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{event_type}: {}", reply.text());
    event
}

#[tokio::test]
async fn state_machine_table() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    // (event type, payment_status, from, expected to)
    let table: &[(&str, &str, &str, &str)] = &[
        ("checkout.session.completed", "paid", "pending", "paid"),
        (
            "checkout.session.completed",
            "no_payment_required",
            "pending",
            "paid",
        ),
        ("checkout.session.completed", "paid", "failed", "paid"),
        ("checkout.session.completed", "paid", "expired", "paid"),
        ("checkout.session.completed", "unpaid", "pending", "pending"),
        ("checkout.session.completed", "paid", "refunded", "refunded"),
        (
            "checkout.session.async_payment_succeeded",
            "paid",
            "pending",
            "paid",
        ),
        (
            "checkout.session.async_payment_succeeded",
            "paid",
            "failed",
            "paid",
        ),
        (
            "checkout.session.async_payment_failed",
            "unpaid",
            "pending",
            "failed",
        ),
        (
            "checkout.session.async_payment_failed",
            "unpaid",
            "paid",
            "paid",
        ),
        ("checkout.session.expired", "unpaid", "pending", "expired"),
        ("checkout.session.expired", "unpaid", "paid", "paid"),
        ("checkout.session.expired", "unpaid", "failed", "failed"),
        (
            "checkout.session.updated_unknown_type",
            "paid",
            "pending",
            "pending",
        ),
    ];
    for (i, (event_type, payment_status, from, to)) in table.iter().enumerate() {
        let mut session = Session::new(format!("cs_test_table_{i}"));
        session.payment_status = payment_status;
        let id = order_for(&edge, &session, from).await;
        let event = deliver(&edge, event_type, &session).await;
        let o = order(&db, id).await;
        assert_eq!(&o.status, to, "{event_type} ({payment_status}) from {from}");
        if *to == "paid" && *from != "paid" {
            let created = event["created"].as_i64().expect("created");
            assert_eq!(
                o.paid_at.map(|t| t.timestamp()),
                Some(created),
                "paid_at = event created"
            );
        }
        let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
        assert_eq!(rows.len(), 1, "the event is always kept");
        assert_eq!(rows[0].order_id, Some(id));
    }
}

#[tokio::test]
async fn completed_records_the_payment_intent_and_a_full_refund_refunds() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_refund");
    let pi = session.payment_intent.clone().expect("pi");
    let id = order_for(&edge, &session, "pending").await;
    deliver(&edge, "checkout.session.completed", &session).await;
    assert_eq!(
        order(&db, id).await.payment_intent.as_deref(),
        Some(pi.as_str())
    );
    let partial = charge_refunded(&pi, 2000, 500);
    assert_eq!(edge.webhook_json(&partial).await.status, 200);
    assert_eq!(
        order(&db, id).await.status,
        "partially_refunded",
        "a partial refund leaves the order partially refunded"
    );
    let full = charge_refunded(&pi, 2000, 2000);
    assert_eq!(edge.webhook_json(&full).await.status, 200);
    assert_eq!(order(&db, id).await.status, "refunded");
    let rows = event_rows(&db, full["id"].as_str().expect("id")).await;
    assert_eq!(rows[0].order_id, Some(id));
    // A late completed event never turns a refunded order back into paid.
    deliver(&edge, "checkout.session.completed", &session).await;
    assert_eq!(order(&db, id).await.status, "refunded");
}

#[tokio::test]
async fn async_payment_reordered_before_completed() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let mut session = Session::new("cs_test_async_first");
    let id = order_for(&edge, &session, "pending").await;
    deliver(&edge, "checkout.session.async_payment_succeeded", &session).await;
    assert_eq!(order(&db, id).await.status, "paid");
    session.payment_status = "unpaid";
    deliver(&edge, "checkout.session.completed", &session).await;
    deliver(&edge, "checkout.session.expired", &session).await;
    assert_eq!(
        order(&db, id).await.status,
        "paid",
        "paid is never downgraded"
    );
}

#[tokio::test]
async fn orders_are_found_by_client_reference_id_then_metadata() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let by_ref = insert_order(&db, NewOrder::default()).await;
    let mut session = Session::new("cs_test_by_ref");
    session.client_reference_id = Some(by_ref.to_string());
    deliver(&edge, "checkout.session.completed", &session).await;
    assert_eq!(order(&db, by_ref).await.status, "paid");

    let by_meta = insert_order(&db, NewOrder::default()).await;
    let mut session = Session::new("cs_test_by_meta");
    session.client_reference_id = Some("not-a-uuid".into());
    session.metadata_order_id = Some(by_meta.to_string());
    deliver(&edge, "checkout.session.completed", &session).await;
    assert_eq!(order(&db, by_meta).await.status, "paid");

    // The session id wins over the other keys.
    let by_session = Session::new("cs_test_session_wins");
    let winner = order_for(&edge, &by_session, "pending").await;
    let other = insert_order(&db, NewOrder::default()).await;
    let mut s = by_session.clone();
    s.client_reference_id = Some(other.to_string());
    deliver(&edge, "checkout.session.completed", &s).await;
    assert_eq!(order(&db, winner).await.status, "paid");
    assert_eq!(order(&db, other).await.status, "pending");
}

#[tokio::test]
async fn orphan_events_are_kept() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let event = deliver(
        &edge,
        "checkout.session.completed",
        &Session::new("cs_test_orphan"),
    )
    .await;
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].order_id, None);
    assert_eq!(rows[0].session_id.as_deref(), Some("cs_test_orphan"));
}

#[tokio::test]
async fn amount_or_currency_mismatch_keeps_the_order_unpaid() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_mismatch");
    let id = insert_order(
        &db,
        NewOrder {
            session_id: Some(session.id.clone()),
            amount_total: Some(1999),
            currency: Some("eur".into()),
            ..Default::default()
        },
    )
    .await;
    let event = deliver(&edge, "checkout.session.completed", &session).await;
    let o = order(&db, id).await;
    assert_eq!(o.status, "pending");
    let anomaly = o.anomaly.expect("anomaly recorded");
    assert!(anomaly.starts_with("amount_mismatch"), "{anomaly}");
    assert!(
        anomaly.contains("1999 eur") && anomaly.contains("2000 eur"),
        "{anomaly}"
    );
    assert_eq!(
        event_rows(&db, event["id"].as_str().expect("id"))
            .await
            .len(),
        1
    );

    let mut usd = Session::new("cs_test_currency");
    usd.currency = Some("usd");
    let id = insert_order(
        &db,
        NewOrder {
            session_id: Some(usd.id.clone()),
            amount_total: Some(2000),
            currency: Some("EUR".into()),
            ..Default::default()
        },
    )
    .await;
    deliver(&edge, "checkout.session.completed", &usd).await;
    assert_eq!(order(&db, id).await.status, "pending");

    let ok = Session::new("cs_test_match");
    let id = insert_order(
        &db,
        NewOrder {
            session_id: Some(ok.id.clone()),
            amount_total: Some(2000),
            currency: Some("EUR".into()),
            ..Default::default()
        },
    )
    .await;
    deliver(&edge, "checkout.session.completed", &ok).await;
    assert_eq!(order(&db, id).await.status, "paid");
}

#[tokio::test]
async fn events_of_the_other_mode_are_stored_but_change_nothing() {
    let edge = TestEdge::builder()
        .env("STRIPE_EXPECT_LIVEMODE", "true")
        .spawn()
        .await;
    let db = edge.db.client().await;
    let test_mode = Session::new("cs_test_wrong_mode");
    let id = order_for(&edge, &test_mode, "pending").await;
    let event = deliver(&edge, "checkout.session.completed", &test_mode).await;
    assert_eq!(order(&db, id).await.status, "pending");
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].livemode);

    let mut live = Session::new("cs_live_right_mode");
    live.livemode = true;
    let id = order_for(&edge, &live, "pending").await;
    deliver(&edge, "checkout.session.completed", &live).await;
    assert_eq!(order(&db, id).await.status, "paid");
}
