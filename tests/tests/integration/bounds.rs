//! The edge bounded under attack, at test scale (the full-scale scenarios are in
//! `scripts/bench/attack.sh`): connections that send nothing are closed at the header deadline,
//! at the connection cap the longest idle connection makes room while the admin listener answers, a bad signature is
//! refused before its body is read, trickled bodies never starve real webhooks, h2 streams and
//! proxied requests are capped, stalled uploads are cut, and `/ready` costs no query per call.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::Limits;
use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{eventually, get, read_until, read_until_closed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits(header: Duration, max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: header,
        body_read_timeout: Duration::from_millis(800),
        max_connections,
        ..Limits::default()
    }
}

/// A `Stripe-Signature` that passes the checks made before the body and matches nothing.
fn plausible_signature() -> String {
    format!("t={},v1={}", chrono::Utc::now().timestamp(), "0".repeat(64))
}

/// One signed webhook; asserts it is answered 200 within `within`.
async fn webhook_within(edge: &TestEdge, name: &str, within: Duration) {
    let event = session_event(
        "checkout.session.completed",
        &Session::new(format!("cs_test_bounds_{name}")),
    );
    let started = Instant::now();
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        started.elapsed() < within,
        "{name}: answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_that_send_nothing_or_a_preface_are_closed_at_the_header_deadline() {
    let header = Duration::from_secs(1);
    let edge = TestEdge::builder()
        .limits(limits(header, 10_000))
        .spawn()
        .await;
    let mut idle = Vec::new();
    for i in 0..600 {
        let mut c = TcpStream::connect(edge.public).await.expect("connect");
        if i % 2 == 1 {
            // 16 bytes of the HTTP/2 preface, and nothing more.
            c.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        }
        idle.push(c);
    }
    let opened = Instant::now();
    for i in 0..5 {
        webhook_within(&edge, &format!("idle_{i}"), Duration::from_secs(1)).await;
    }
    for mut c in idle {
        let mut byte = [0u8; 1];
        let left = (header + Duration::from_secs(2)).saturating_sub(opened.elapsed());
        let read = tokio::time::timeout(left, c.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed by the header deadline + 2 s: {read:?}"
        );
    }
    let stats = edge.state.public_stats.clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            stats.open.load(Ordering::Relaxed) == 0
        })
        .await,
        "every connection is gone"
    );
    assert!(stats.head_timeouts.load(Ordering::Relaxed) >= 600);
}

#[tokio::test]
async fn http1_connections_send_each_next_head_within_the_header_deadline_and_h2_ones_may_idle() {
    let header = Duration::from_secs(1);
    let edge = TestEdge::builder()
        .limits(limits(header, 10_000))
        .spawn()
        .await;
    let request = b"GET /stripe/webhook HTTP/1.1\r\nHost: e\r\n\r\n";
    // One keep-alive connection that then sends nothing, one that starts a head and never ends it.
    let mut silent = TcpStream::connect(edge.public).await.expect("connect");
    let mut slow = TcpStream::connect(edge.public).await.expect("connect");
    for c in [&mut silent, &mut slow] {
        c.write_all(request).await.expect("write");
        let answer = read_until(c, b"}", Duration::from_secs(5))
            .await
            .expect("an answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 405"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let answered = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: e\r\nX-Slow: ")
        .await
        .expect("write");
    let h2 = TcpStream::connect(edge.public).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .expect("h2c");
    tokio::spawn(conn);
    let h2_get = || {
        http::Request::get(format!("http://{}/stripe/webhook", edge.public))
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request")
    };
    let first = sender.send_request(h2_get()).await.expect("h2 answer");
    assert_eq!(first.status(), 405);
    let h2_idle_since = Instant::now();

    for (name, c) in [("silent", &mut silent), ("slow head", &mut slow)] {
        let left = (header + Duration::from_secs(3)).saturating_sub(answered.elapsed());
        let (_, closed) = read_until_closed(c, left).await;
        assert!(
            closed,
            "{name}: closed by the header deadline + 3 s after its answer"
        );
    }
    // The scenario: the h2 connection stays idle longer than the header deadline that closed
    // the HTTP/1 ones (they may close a little before a second has passed since `answered`:
    // their last answer came before it). It waits for the idle time-out (30 s) instead, and
    // serves its next request.
    let idle = header + Duration::from_millis(300);
    tokio::time::sleep(idle.saturating_sub(h2_idle_since.elapsed())).await;
    assert!(h2_idle_since.elapsed() > header);
    sender
        .ready()
        .await
        .expect("the h2 connection is still open");
    let second = sender.send_request(h2_get()).await.expect("h2 answer");
    assert_eq!(second.status(), 405);
    let stats = edge.state.public_stats.clone();
    assert!(stats.idle_closed.load(Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_and_the_admin_listener_answers() {
    // A header deadline far longer than the test: only eviction can make room.
    let edge = TestEdge::builder()
        .limits(limits(Duration::from_secs(60), 16))
        .spawn()
        .await;
    let mut idle = Vec::new();
    for _ in 0..24 {
        idle.push(TcpStream::connect(edge.public).await.expect("connect"));
    }
    let stats = edge.state.public_stats.clone();
    assert!(
        eventually(Duration::from_secs(2), || async {
            stats.evicted.load(Ordering::Relaxed) == 8
        })
        .await,
        "each connection past the cap closes the longest idle one"
    );
    assert_eq!(stats.open.load(Ordering::Relaxed), 16);
    let started = Instant::now();
    assert_eq!(get(edge.admin, "/live").await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    for i in 0..3 {
        webhook_within(&edge, &format!("at_cap_{i}"), Duration::from_secs(1)).await;
    }
    assert!(stats.open.load(Ordering::Relaxed) <= 16);
    // The first connections opened were the ones closed.
    let mut byte = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(1), idle[0].read(&mut byte)).await;
    assert!(matches!(first, Ok(Ok(0)) | Ok(Err(_))), "{first:?}");
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.contains(r#"edge_connections_closed_total{listener="public",reason="evicted"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_signature_is_refused_before_the_body_is_read() {
    let edge = TestEdge::spawn().await;
    for header in [
        "t=1,v1=00".to_owned(),
        format!("t={},v1=abc", chrono::Utc::now().timestamp()),
        format!("t=1,v1={}", "0".repeat(64)),
    ] {
        let mut c = TcpStream::connect(edge.public).await.expect("connect");
        c.write_all(
            format!(
                "POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {header}\r\nContent-Length: 100000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let started = Instant::now();
        let (answer, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{header}: {answer}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused at once, no body read"
        );
    }
}

#[tokio::test]
async fn a_flood_of_trickled_bodies_never_starves_real_webhooks() {
    let edge = TestEdge::builder()
        .env("EDGE_MAX_BODY_BYTES", "65536")
        .env("EDGE_BODY_BUDGET_BYTES", "262144")
        .limits(Limits {
            body_read_timeout: Duration::from_secs(10),
            ..Limits::default()
        })
        .spawn()
        .await;
    // Twenty bodies of 64 KiB declared, a hundred bytes sent, then nothing.
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(edge.public).await.expect("connect");
        c.write_all(
            format!(
                "POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {}\r\nContent-Length: 65536\r\n\r\n{}",
                plausible_signature(),
                "x".repeat(100)
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        attackers.push(c);
    }
    assert!(
        eventually(Duration::from_secs(2), || async {
            edge.state.body_budget.used() == 262_144
        })
        .await,
        "the flood fills the budget"
    );
    for i in 0..5 {
        webhook_within(&edge, &format!("flood_{i}"), Duration::from_secs(1)).await;
    }
    let mut overloaded = 0;
    for mut c in attackers {
        let (answer, _) = read_until_closed(&mut c, Duration::from_millis(200)).await;
        if String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503") {
            overloaded += 1;
        }
    }
    assert!(
        overloaded >= 16,
        "the oldest trickled bodies made room: {overloaded}"
    );
    assert!(edge.state.body_budget.used() <= 262_144);
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.contains(r#"edge_webhook_requests_total{outcome="overloaded"}"#),
        "{metrics}"
    );
}

/// A request body declared and never sent.
struct NeverSent;

impl hyper::body::Body for NeverSent {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// This edge's webhooks in flight now (the `edge_webhook_requests_in_flight` gauge is the whole
/// test process's, where other tests' edges run too).
async fn in_flight(edge: &TestEdge) -> f64 {
    edge.state.webhooks_in_flight.load(Ordering::Relaxed) as f64
}

#[tokio::test]
async fn h2_streams_per_connection_are_capped() {
    let edge = TestEdge::spawn().await;
    let stream = TcpStream::connect(edge.public).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c");
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let req = http::Request::post(format!("http://{}/stripe/webhook", edge.public))
            .header("stripe-signature", plausible_signature())
            .header("content-length", "4096")
            .body(NeverSent)
            .expect("request");
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let _ = sender.send_request(req).await;
            }
        }));
    }
    // A wait, not a speed check: on a loaded machine the 32 streams take a while to start.
    assert!(
        eventually(Duration::from_secs(15), || async {
            in_flight(&edge).await >= 32.0
        })
        .await,
        "streams are being served"
    );
    // However long the client keeps asking, the server holds 32 streams of this connection.
    let later = eventually(Duration::from_millis(500), || async {
        in_flight(&edge).await > 32.0
    })
    .await;
    assert!(
        !later,
        "never more than 32 at once: {}",
        in_flight(&edge).await
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn proxied_requests_in_flight_are_capped_and_stalled_uploads_are_cut() {
    let mut upstream = tests::upstream::Upstream::start().await;
    let edge = TestEdge::builder()
        .env("UPSTREAM_URL", &upstream.url())
        .env("UPSTREAM_TIMEOUT_SECS", "5")
        .env("EDGE_PROXY_MAX_INFLIGHT", "2")
        .limits(Limits {
            body_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        })
        .spawn()
        .await;
    let public = edge.public;
    let stalled: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(public, "/stall").await }))
        .collect();
    // Both reached the app, and hold their slots while it does not answer.
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), upstream.next())
            .await
            .expect("the app sees the stalled requests");
    }
    let third = get(public, "/third").await;
    assert_eq!(
        third.status,
        503,
        "past the cap, 503 at once: {}",
        third.text()
    );
    assert_eq!(third.json()["error"]["code"], "overloaded");
    for t in stalled {
        assert_eq!(t.await.expect("task").status, 504);
    }
    assert_eq!(get(public, "/after").await.status, 200, "slots come back");

    // An upload that stalls is cut by the body time-out, not the upstream time-out.
    let mut c = TcpStream::connect(public).await.expect("connect");
    c.write_all(b"POST /upload HTTP/1.1\r\nHost: e\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .expect("write");
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 5") || answer.is_empty(),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_never_arrives_is_a_timeout() {
    let edge = TestEdge::builder()
        .limits(limits(Duration::from_secs(5), 10_000))
        .spawn()
        .await;
    let mut c = TcpStream::connect(edge.public).await.expect("connect");
    c.write_all(
        format!(
            "POST /stripe/webhook HTTP/1.1\r\nHost: e\r\nStripe-Signature: {}\r\nContent-Length: 100\r\n\r\n{{",
            plausible_signature()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (answer, _) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with(r#"edge_webhook_requests_total{outcome="timeout"}"#)
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_flood_of_ready_probes_costs_no_query_per_call() {
    let edge = TestEdge::spawn().await;
    let before = edge.state.readiness.probes();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let admin = edge.admin;
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                assert_eq!(get(admin, "/ready").await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let probes = edge.state.readiness.probes() - before;
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        probes <= seconds + 1,
        "800 /ready calls in {seconds} s made {probes} database probes"
    );
}
