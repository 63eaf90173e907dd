//! Bad input gets a quick 4xx (or, for a stalled client, a closed connection), writes nothing, and
//! never stops the edge from serving everyone else.

use std::time::Duration;

use common::http::serve::MAX_HEADERS;
use edge::Limits;
use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{get, read_until_closed};
use tests::ledger::event_count;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A `Stripe-Signature` that passes the checks made before the body is read (well formed, in
/// tolerance, a v1 of 64 hex characters) and matches nothing: what the body limits are tested with.
fn plausible_signature() -> String {
    format!("t={},v1={}", chrono::Utc::now().timestamp(), "0".repeat(64))
}

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

async fn raw(edge: &TestEdge, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(edge.public).await.expect("connect");
    conn.write_all(bytes).await.expect("write");
    let (answer, _) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn duplicated_signature_headers_are_refused() {
    let edge = TestEdge::spawn().await;
    let event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_two_sigs"),
    );
    let body = event.to_string();
    let header = edge.sign(body.as_bytes());
    let reply = edge
        .webhook_with(
            body.as_bytes(),
            &[("stripe-signature", &header), ("stripe-signature", &header)],
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "invalid_signature");
    assert_eq!(event_count(&edge.db.client().await).await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_refused_declared_or_chunked() {
    let edge = TestEdge::builder()
        .env("EDGE_MAX_BODY_BYTES", "2048")
        .spawn()
        .await;
    // Declared too large: answered before any body byte is read.
    let answer = raw(
        &edge,
        format!("POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {}\r\nContent-Length: 999999999\r\n\r\n", plausible_signature()).as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Chunked, no length: cut off at the limit.
    let chunk = "a".repeat(1000);
    let mut req = format!(
        "POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        plausible_signature()
    );
    for _ in 0..5 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let answer = raw(&edge, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(event_count(&edge.db.client().await).await, 0);
}

#[tokio::test]
async fn stalled_clients_are_disconnected_and_others_are_served() {
    let edge = TestEdge::builder().limits(short_limits()).spawn().await;
    // Headers that never finish.
    let mut slow_head = TcpStream::connect(edge.public).await.expect("connect");
    slow_head
        .write_all(b"POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nX-Slow: ")
        .await
        .expect("write");
    // A body that never finishes.
    let mut slow_body = TcpStream::connect(edge.public).await.expect("connect");
    slow_body
        .write_all(format!("POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {}\r\nContent-Length: 100\r\n\r\n{{\"id\":", plausible_signature()).as_bytes())
        .await
        .expect("write");
    // Everyone else is served meanwhile.
    let event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_while_stalled"),
    );
    assert_eq!(edge.webhook_json(&event).await.status, 200);
    let (_, closed) = read_until_closed(&mut slow_head, Duration::from_secs(5)).await;
    assert!(closed, "a stalled head is disconnected");
    let (answer, closed) = read_until_closed(&mut slow_body, Duration::from_secs(5)).await;
    assert!(closed, "a stalled body is disconnected");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(event_count(&edge.db.client().await).await, 1);
    assert_eq!(get(edge.admin, "/live").await.status, 200);
}

#[tokio::test]
async fn oversized_or_numerous_headers_are_refused() {
    let edge = TestEdge::spawn().await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: e\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let answer = raw(&edge, big.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    // `count` headers in all (Host, the X-H ones, Connection): exactly the limit passes (answered
    // 404: nothing is proxied here), one more is refused.
    for (count, expected) in [
        (MAX_HEADERS, "HTTP/1.1 404"),
        (MAX_HEADERS + 1, "HTTP/1.1 431"),
    ] {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: e\r\n");
        for i in 2..count {
            head.push_str(&format!("X-H{i}: v\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let answer = raw(&edge, head.as_bytes()).await;
        assert!(answer.starts_with(expected), "{count} headers: {answer}");
    }
    let mut many = String::from("GET / HTTP/1.1\r\nHost: e\r\n");
    for i in 0..2000 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(&edge, many.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert_eq!(get(edge.admin, "/live").await.status, 200);
}
