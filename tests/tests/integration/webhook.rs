//! The response table of `POST /stripe/webhook`, the official payload end to end, request ids,
//! and concurrent deliveries of one event.

use common::stripe::signature;
use serde_json::json;
use sim::objects::{OFFICIAL_PAYLOAD, Session, session_event};
use tests::edge::TestEdge;
use tests::ledger::{event_count, event_rows, order, pending_order};

#[tokio::test]
async fn new_event_is_recorded_and_acknowledged_after_commit() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_new_event");
    let id = pending_order(&db, &session.id).await;
    let event = session_event("checkout.session.completed", &session);
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["received"], true);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["eventId"], event["id"]);
    let rid = reply.header("x-request-id").expect("request id").to_owned();
    assert_eq!(body["requestId"], rid.as_str());
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].order_id, Some(id));
    assert_eq!(rows[0].source, "webhook");
    assert_eq!(rows[0].request_id.as_deref(), Some(rid.as_str()));
    assert_eq!(rows[0].session_id.as_deref(), Some(session.id.as_str()));
    assert_eq!(rows[0].payload, event);
    assert_eq!(order(&db, id).await.status, "paid");
}

#[tokio::test]
async fn duplicate_is_200_and_changes_nothing() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_dup");
    let id = pending_order(&db, &session.id).await;
    let event = session_event("checkout.session.completed", &session);
    assert_eq!(edge.webhook_json(&event).await.status, 200);
    let before = order(&db, id).await;
    let again = edge.webhook_json(&event).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(order(&db, id).await, before);
    assert_eq!(event_count(&db).await, 1);
}

#[tokio::test]
async fn bad_signatures_are_400_and_write_nothing() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_badsig"),
    );
    let body = event.to_string();
    let now = chrono::Utc::now().timestamp();
    let good = signature::compute_v1(&edge.secrets[0], now, body.as_bytes());
    let other = signature::sign("whsec_someone_else", now, body.as_bytes());
    let too_old = signature::sign(&edge.secrets[0], now - 301, body.as_bytes());
    let v0_only = format!("t={now},v0={good}");
    let malformed = format!("t=,v1={good}");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("stripe-signature", "")],
        vec![("stripe-signature", "garbage")],
        vec![("stripe-signature", malformed.as_str())],
        vec![("stripe-signature", v0_only.as_str())],
        vec![("stripe-signature", other.as_str())],
        vec![("stripe-signature", too_old.as_str())],
    ];
    for headers in cases {
        let reply = edge.webhook_with(body.as_bytes(), &headers).await;
        assert_eq!(reply.status, 400, "{headers:?}");
        assert_eq!(
            reply.json()["error"]["code"],
            "invalid_signature",
            "{headers:?}"
        );
        assert!(reply.json()["requestId"].is_string());
    }
    // The body is hashed exactly as received: re-serialising it breaks the signature.
    let pretty = serde_json::to_string_pretty(&event).expect("json");
    let header = signature::sign(&edge.secrets[0], now, body.as_bytes());
    let reply = edge
        .webhook_with(pretty.as_bytes(), &[("stripe-signature", &header)])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(event_count(&db).await, 0);
}

#[tokio::test]
async fn signed_bodies_that_are_not_events_are_400_invalid_payload() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    for body in [
        b"not json at all".to_vec(),
        b"{}".to_vec(),
        br#"{"object":"list","data":[]}"#.to_vec(),
        br#"{"id":"evt_1","object":"event","created":1700000000,"livemode":false,"data":{"object":{}}}"#.to_vec(),
        json!({"id": "cus_1", "object": "customer"}).to_string().into_bytes(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let reply = edge.webhook(&body).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&body));
        assert_eq!(reply.json()["error"]["code"], "invalid_payload");
    }
    assert_eq!(event_count(&db).await, 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let edge = TestEdge::builder()
        .env("EDGE_MAX_BODY_BYTES", "4096")
        .spawn()
        .await;
    let db = edge.db.client().await;
    let mut session = Session::new("cs_test_big");
    session.client_reference_id = Some("x".repeat(200));
    let mut event = session_event("checkout.session.completed", &session);
    event["data"]["object"]["padding"] = json!("p".repeat(5000));
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
    assert_eq!(event_count(&db).await, 0);
}

#[tokio::test]
async fn other_methods_are_405_with_allow_post() {
    let edge = TestEdge::spawn().await;
    for method in [http::Method::GET, http::Method::PUT, http::Method::DELETE] {
        let req = tests::http::request(method.clone(), edge.public, "/stripe/webhook")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let reply = tests::http::send(edge.public, req).await.expect("reply");
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"));
        assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_json_without_upstream() {
    let edge = TestEdge::spawn().await;
    for path in ["/", "/metrics", "/ready", "/stripe/webhook/", "/stripe"] {
        let reply = tests::http::get(edge.public, path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"]["code"], "not_found");
        assert!(reply.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn the_official_484_byte_payload_end_to_end() {
    let edge = TestEdge::builder()
        .env("STRIPE_WEBHOOK_SECRET", "webhook_secret")
        .spawn()
        .await;
    let db = edge.db.client().await;
    assert_eq!(OFFICIAL_PAYLOAD.len(), 484);
    let reply = edge.webhook(OFFICIAL_PAYLOAD).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rows = event_rows(&db, "evt_123").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_type, "customer.created");
    assert_eq!(rows[0].order_id, None);
    let original: serde_json::Value = serde_json::from_slice(OFFICIAL_PAYLOAD).expect("json");
    assert_eq!(rows[0].payload, original);
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let event = session_event("checkout.session.completed", &Session::new("cs_test_rid"));
    let body = event.to_string();
    let header = edge.sign(body.as_bytes());
    let reply = edge
        .webhook_with(
            body.as_bytes(),
            &[
                ("stripe-signature", &header),
                ("x-request-id", "support-42.a:b"),
            ],
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("support-42.a:b"));
    assert_eq!(reply.json()["requestId"], "support-42.a:b");
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows[0].request_id.as_deref(), Some("support-42.a:b"));
    let long = "a".repeat(129);
    for bad in ["has space", "semi;colon", "quote\"d", long.as_str()] {
        let reply = edge.webhook_with(b"{}", &[("x-request-id", bad)]).await;
        let got = reply.header("x-request-id").expect("id");
        assert_ne!(got, bad);
        assert_eq!(got.len(), 36);
    }
}

#[tokio::test]
async fn twenty_concurrent_deliveries_of_one_event_make_one_row_and_one_transition() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_concurrent");
    let id = pending_order(&db, &session.id).await;
    count_order_updates(&db).await;
    let event = session_event("checkout.session.completed", &session);
    let tasks: Vec<_> = (0..20).map(|_| edge.spawn_webhook_json(&event)).collect();
    let mut fresh = 0;
    for t in tasks {
        let reply = t.await.expect("task");
        assert_eq!(reply.status, 200);
        if reply.json()["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery is not a duplicate");
    assert_eq!(
        event_rows(&db, event["id"].as_str().expect("id"))
            .await
            .len(),
        1
    );
    let o = order(&db, id).await;
    assert_eq!(o.status, "paid");
    let transitions: i64 = db
        .query_one(
            "SELECT count(*) FROM order_updates WHERE order_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(transitions, 1);
    assert_eq!(
        tests::ledger::paid_notifications(&db, "cs_test_concurrent").await,
        (1, 0),
        "one notification"
    );
}

#[tokio::test]
async fn rotation_accepts_either_secret() {
    let edge = TestEdge::builder()
        .env("STRIPE_WEBHOOK_SECRET", "whsec_new_one,whsec_old_one")
        .spawn()
        .await;
    let now = chrono::Utc::now().timestamp();
    for (secrets, index) in [
        (vec!["whsec_old_one"], 1),
        (vec!["whsec_new_one"], 0),
        (vec!["whsec_old_one", "whsec_new_one"], 0),
    ] {
        let event = session_event("checkout.session.completed", &Session::new("cs_test_rot"));
        let body = event.to_string();
        let header = signature::sign_rotating(&secrets, now, body.as_bytes());
        let reply = edge
            .webhook_with(body.as_bytes(), &[("stripe-signature", &header)])
            .await;
        assert_eq!(reply.status, 200, "{secrets:?} (secret {index})");
    }
}

/// Test-only: a trigger that records every UPDATE of an order, to count transitions exactly.
async fn count_order_updates(db: &tokio_postgres::Client) {
    db.batch_execute(
        "CREATE TABLE order_updates (order_id uuid, status text);
         CREATE FUNCTION record_order_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO order_updates VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
         CREATE TRIGGER order_updates AFTER UPDATE ON orders
           FOR EACH ROW EXECUTE FUNCTION record_order_update();",
    )
    .await
    .expect("trigger");
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_and_no_secret() {
    let edge = TestEdge::spawn().await;
    let capture = tests::logs::capture();
    let event = session_event("checkout.session.completed", &Session::new("cs_test_logs"));
    let body = event.to_string();
    let now = chrono::Utc::now().timestamp();
    let good = signature::sign(&edge.secrets[0], now, body.as_bytes());
    let bad = signature::sign("whsec_wrong_secret", now, body.as_bytes());
    let ok_id = format!("logs-ok-{}", uuid::Uuid::new_v4().simple());
    let bad_id = format!("logs-bad-{}", uuid::Uuid::new_v4().simple());
    let reply = edge
        .webhook_with(
            body.as_bytes(),
            &[("stripe-signature", &good), ("x-request-id", &ok_id)],
        )
        .await;
    assert_eq!(reply.status, 200);
    let reply = edge
        .webhook_with(
            body.as_bytes(),
            &[("stripe-signature", &bad), ("x-request-id", &bad_id)],
        )
        .await;
    assert_eq!(reply.status, 400);

    let ok_lines = capture.lines_where("requestId", &ok_id);
    assert!(
        !ok_lines.is_empty(),
        "the recorded webhook is logged with its request id"
    );
    assert!(
        ok_lines
            .iter()
            .any(|l| l["eventId"] == event["id"] && l["level"] == "INFO")
    );
    let bad_lines = capture.lines_where("requestId", &bad_id);
    assert!(bad_lines.iter().any(|l| l["code"] == "invalid_signature"));
    let text = capture.text();
    for line in text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(
        !text.contains(&edge.secrets[0]),
        "a webhook secret reached the logs"
    );
    assert!(!text.contains("whsec_wrong_secret"));
    let good_v1 = good.split("v1=").nth(1).expect("v1");
    assert!(!text.contains(good_v1), "a signature reached the logs");
}
