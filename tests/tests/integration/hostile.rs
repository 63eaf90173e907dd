//! Hostile input on the public listener, over raw sockets: each request gets a quick 4xx or a
//! closed connection, nothing is written, the edge keeps serving, and no raw attacker byte reaches
//! the logs.

use std::time::Duration;

use common::stripe::signature;
use edge::Limits;
use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{get, read_until_closed};
use tests::ledger::{event_count, event_rows};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends raw bytes on a new connection; returns what came back before the close (or 2 s).
async fn raw(edge: &TestEdge, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(edge.public).await.expect("connect");
    let _ = conn.write_all(bytes).await;
    let (answer, _) = read_until_closed(&mut conn, Duration::from_secs(2)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn webhook(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /stripe/webhook HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// The status of the first response: "closed" when the edge closed without answering, "h2" for
/// HTTP/2 frames (its settings, then GOAWAY), else the HTTP/1 status code.
fn status(answer: &str) -> String {
    if answer.is_empty() {
        "closed".to_owned()
    } else if !answer.starts_with("HTTP/") {
        "h2".to_owned()
    } else {
        answer.get(9..12).unwrap_or("?").to_owned()
    }
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_or_a_closed_connection_and_write_nothing() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let edge = TestEdge::builder()
        .env("EDGE_MAX_BODY_BYTES", "65536")
        .limits(limits)
        .spawn()
        .await;
    let secret = edge.secrets[0].clone();
    let now = chrono::Utc::now().timestamp();
    let event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_hostile"),
    )
    .to_string();
    let good = signature::compute_v1(&secret, now, event.as_bytes());
    let sig = |value: &str| format!("Stripe-Signature: {value}\r\n");
    let signed = |body: &[u8]| sig(&signature::sign(&secret, now, body));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let raw_nul = b"{\"id\":\"evt_nul\",\"object\":\"event\",\0\"type\":\"x\",\"created\":1,\"livemode\":false,\"data\":{\"object\":{}}}";
    let many_v1 = format!("t={now}{}", ",v1=00".repeat(1000));
    let huge_v1 = format!("t={now},v1={}", "a".repeat(1 << 20));
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("no signature", webhook("", event.as_bytes()), &["400"]),
        ("empty signature", webhook(&sig(""), event.as_bytes()), &["400"]),
        ("t huge", webhook(&sig(&format!("t=99999999999999999999999,v1={good}")), event.as_bytes()), &["400"]),
        ("t negative", webhook(&sig(&format!("t=-{now},v1={good}")), event.as_bytes()), &["400"]),
        ("t not a number", webhook(&sig(&format!("t=yesterday,v1={good}")), event.as_bytes()), &["400"]),
        ("t empty", webhook(&sig(&format!("t=,v1={good}")), event.as_bytes()), &["400"]),
        ("t twice", webhook(&sig(&format!("t={now},t={now},v1={good}")), event.as_bytes()), &["400"]),
        ("t too old", webhook(&sig(&format!("t={},v1={good}", now - 3600)), event.as_bytes()), &["400"]),
        ("v1 not hex", webhook(&sig(&format!("t={now},v1=zz{}", &good[2..])), event.as_bytes()), &["400"]),
        ("v1 uppercase", webhook(&sig(&format!("t={now},v1={}", good.to_uppercase())), event.as_bytes()), &["400"]),
        ("v1 1 MB", webhook(&sig(&huge_v1), event.as_bytes()), &["431", "400", "closed"]),
        ("1000 v1 entries", webhook(&sig(&many_v1), event.as_bytes()), &["400"]),
        ("only v0", webhook(&sig(&format!("t={now},v0={good}")), event.as_bytes()), &["400"]),
        ("two signature headers", webhook(&format!("{}{}", signed(event.as_bytes()), signed(event.as_bytes())), event.as_bytes()), &["400"]),
        ("signature of another body", webhook(&signed(b"{}"), event.as_bytes()), &["400"]),
        ("invalid UTF-8 body", webhook(&signed(b"\xff\xfe\xfd"), b"\xff\xfe\xfd"), &["400"]),
        ("JSON nested 10,000 deep", webhook(&signed(deep.as_bytes()), deep.as_bytes()), &["400"]),
        ("raw NUL byte in the JSON", webhook(&signed(raw_nul), raw_nul), &["400"]),
        ("not an event", webhook(&signed(br#"{"object":"list","data":[]}"#), br#"{"object":"list","data":[]}"#), &["400"]),
        ("declared too large", b"POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nContent-Length: 10000000\r\n\r\n".to_vec(), &["413"]),
        ("two different Content-Lengths", format!("POST /stripe/webhook HTTP/1.1\r\nHost: e\r\n{}Content-Length: 5\r\nContent-Length: 7\r\n\r\n{{}}{{}}{{}}", signed(b"{}")).into_bytes(), &["400", "closed"]),
        ("Content-Length with Transfer-Encoding", format!("POST /stripe/webhook HTTP/1.1\r\nHost: e\r\n{}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n", signed(b"{}")).into_bytes(), &["400", "closed"]),
        ("chunked body that never ends", format!("POST /stripe/webhook HTTP/1.1\r\nHost: e\r\n{}Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"id\"\r\n", signed(b"{}")).into_bytes(), &["408", "closed"]),
        ("headers that never end", b"POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nX-Slow: ".to_vec(), &["closed", "408"]),
        ("header over 16 KB", format!("GET / HTTP/1.1\r\nHost: e\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000)).into_bytes(), &["431", "closed"]),
        ("thousands of headers", format!("GET / HTTP/1.1\r\nHost: e\r\n{}\r\n", "X-H: v\r\n".repeat(3000)).into_bytes(), &["431", "closed"]),
        ("request id with ESC", b"GET /stripe/webhook HTTP/1.1\r\nHost: e\r\nX-Request-Id: a\x1b[31mb\r\n\r\n".to_vec(), &["400", "405", "closed"]),
        ("request id of 10 KB", format!("GET /stripe/webhook HTTP/1.1\r\nHost: e\r\nX-Request-Id: {}\r\n\r\n", "r".repeat(10_000)).into_bytes(), &["405"]),
        ("GET on the webhook", b"GET /stripe/webhook HTTP/1.1\r\nHost: e\r\n\r\n".to_vec(), &["405"]),
        ("metrics on the public listener", b"GET /metrics HTTP/1.1\r\nHost: e\r\n\r\n".to_vec(), &["404"]),
        ("admin POST on the public listener", b"POST /reconcile/run HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n\r\n".to_vec(), &["404"]),
        ("path with dot segments", format!("POST /stripe/../stripe/webhook HTTP/1.1\r\nHost: e\r\n{}Content-Length: {}\r\n\r\n{event}", signed(event.as_bytes()), event.len()).into_bytes(), &["404"]),
        ("garbage instead of HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n".to_vec(), &["400", "closed"]),
        ("HTTP/2 preface then garbage", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00garbage".to_vec(), &["closed", "h2"]),
    ];
    for (name, bytes, expected) in &cases {
        let answer = raw(&edge, bytes).await;
        let got = status(&answer);
        assert!(
            expected.contains(&got.as_str()),
            "{name}: expected one of {expected:?}, got {got}: {:.200}",
            answer
        );
    }
    let db = edge.db.client().await;
    assert_eq!(event_count(&db).await, 0, "nothing was written");

    // Pipelined requests are answered in order on one connection.
    let answer = raw(&edge, b"GET /a HTTP/1.1\r\nHost: e\r\n\r\nGET /live HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n").await;
    assert_eq!(answer.matches("HTTP/1.1 404").count(), 2, "{answer}");

    // The edge still serves, and the logs hold no raw control byte from any of this.
    let ok = edge.webhook(event.as_bytes()).await;
    assert_eq!(ok.status, 200);
    assert_eq!(get(edge.admin, "/live").await.status, 200);
    let logs = tests::logs::capture().text();
    assert!(
        !logs.contains('\x1b') && !logs.contains('\0'),
        "a raw control byte reached the logs"
    );
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}

#[tokio::test]
async fn odd_but_genuine_events_are_kept() {
    let edge = TestEdge::builder()
        .env("EDGE_MAX_BODY_BYTES", "8192")
        .spawn()
        .await;
    let db = edge.db.client().await;
    // A NUL escape in a string (jsonb refused it): stored exactly as signed.
    let mut event = session_event("checkout.session.completed", &Session::new("cs_test_nul"));
    event["data"]["object"]["customer_details"]["name"] = serde_json::json!("Zoë\u{0}Null");
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(
        rows[0].payload["data"]["object"]["customer_details"]["name"],
        "Zoë\u{0}Null"
    );
    // A `created` beyond any time: stored (it is signed and has an id and a type), marked
    // unreadable, and it moves no order.
    let big_number = br#"{"id":"evt_big","object":"event","type":"checkout.session.completed","created":99999999999999999999999,"livemode":false,"data":{"object":{"object":"checkout.session","id":"cs_test_big_created"}}}"#;
    assert_eq!(edge.webhook(big_number).await.status, 200);
    assert_eq!(event_rows(&db, "evt_big").await.len(), 1);
    // An amount beyond i64 is read leniently (as unknown), not refused.
    let mut big = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_big_amount"),
    );
    big["data"]["object"]["amount_total"] = serde_json::json!(1e30);
    assert_eq!(edge.webhook_json(&big).await.status, 200);
    // A body exactly at the limit passes; one byte more is refused.
    let mut at_limit = session_event("checkout.session.completed", &Session::new("cs_test_limit"));
    at_limit["data"]["object"]["padding"] = serde_json::json!("");
    let base = at_limit.to_string().len();
    at_limit["data"]["object"]["padding"] = serde_json::json!("p".repeat(8192 - base));
    let body = at_limit.to_string();
    assert_eq!(body.len(), 8192);
    assert_eq!(edge.webhook(body.as_bytes()).await.status, 200);
    let mut over = body.into_bytes();
    over.insert(over.len() - 1, b' ');
    assert_eq!(edge.webhook(&over).await.status, 413);
}
