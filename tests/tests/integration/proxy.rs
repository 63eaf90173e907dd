//! The edge as the app's front door: every other route is proxied to `UPSTREAM_URL` with headers
//! fixed up both ways, bodies streamed, and clean 502/504 answers when the app fails.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::edge::TestEdge;
use tests::http::{keep_alive, request, send};
use tests::upstream::{Pattern, Upstream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn edge_in_front_of(upstream: &Upstream) -> TestEdge {
    TestEdge::builder()
        .env("UPSTREAM_URL", &upstream.url())
        .spawn()
        .await
}

/// An edge in front of `upstream` that gives up on its answers after one second (504).
async fn edge_with_a_one_second_deadline(upstream: &Upstream) -> TestEdge {
    TestEdge::builder()
        .env("UPSTREAM_URL", &upstream.url())
        .env("UPSTREAM_TIMEOUT_SECS", "1")
        .spawn()
        .await
}

/// One GET for the shop's host on a kept-alive connection: its status and whole body.
async fn get_on(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (http::StatusCode, Bytes) {
    let req = Request::get(path)
        .header("host", "shop.example")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

#[tokio::test]
async fn headers_are_fixed_up_both_ways() {
    let mut upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let req = Request::builder()
        .method(Method::PATCH)
        .uri("/shop/cart?item=42&qty=2")
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "must not reach the app")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-host", "cdn.example")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::from_static(b"{\"qty\":2}")))
        .expect("request");
    let reply = send(edge.public, req).await.expect("reply");
    let seen = upstream.next().await;

    assert_eq!(seen.method, Method::PATCH);
    assert_eq!(seen.uri.path(), "/shop/cart");
    assert_eq!(seen.uri.query(), Some("item=42&qty=2"));
    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(!seen.headers.contains_key(hop), "{hop} reached the app");
    }
    let h = |name: &str| {
        seen.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    assert_eq!(h("x-custom"), "kept");
    assert_eq!(h("x-forwarded-for"), "203.0.113.7, 127.0.0.1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(h("x-forwarded-host"), "cdn.example, shop.example");
    assert_eq!(
        h("host"),
        upstream.addr.to_string(),
        "Host names the app; the caller's is forwarded"
    );
    let rid = reply.header("x-request-id").expect("request id");
    assert_eq!(
        h("x-request-id"),
        rid,
        "the app sees the id the edge logs and returns"
    );

    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from upstream");
    assert_eq!(reply.header("x-app"), Some("kept"));
    assert!(reply.header("x-upstream-hop").is_none());
    assert!(reply.header("keep-alive").is_none());
}

#[tokio::test]
async fn a_node_style_answer_loses_its_hop_by_hop_headers() {
    // Node's HTTP server sends `Connection: keep-alive` and `Keep-Alive` on every answer.
    let upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let reply = tests::http::get(edge.public, "/node").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from upstream");
    assert_eq!(reply.header("x-app"), Some("kept"));
    assert!(reply.header("keep-alive").is_none());
    assert_ne!(reply.header("connection"), Some("keep-alive"));
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test]
async fn the_apps_own_errors_pass_through_unchanged() {
    let upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    for code in [404u16, 409, 500, 503] {
        let reply = tests::http::get(edge.public, &format!("/status/{code}")).await;
        assert_eq!(reply.status.as_u16(), code);
        assert_eq!(reply.text(), "app says no");
        assert_eq!(reply.header("x-app-error"), Some("yes"));
    }
}

#[tokio::test]
async fn an_unreachable_app_is_502_and_a_slow_one_504() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let edge = TestEdge::builder()
        .env("UPSTREAM_URL", &format!("http://{closed}"))
        .spawn()
        .await;
    let reply = tests::http::get(edge.public, "/anything").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], "upstream_unavailable");
    assert_eq!(
        reply.json()["requestId"],
        reply.header("x-request-id").expect("id")
    );

    let upstream = Upstream::start().await;
    let edge = edge_with_a_one_second_deadline(&upstream).await;
    let reply = tests::http::get(edge.public, "/stall").await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"]["code"], "upstream_timeout");
    assert!(reply.json()["requestId"].is_string());
}

#[tokio::test]
async fn each_request_of_a_kept_connection_gets_its_whole_504_deadline() {
    let upstream = Upstream::start().await;
    let edge = edge_with_a_one_second_deadline(&upstream).await;
    // One client connection, whose requests must each get a deadline of their own.
    let mut sender = keep_alive(edge.public).await.expect("connection");
    for (round, pause) in [Duration::from_millis(600), Duration::ZERO]
        .into_iter()
        .enumerate()
    {
        let (fast, _) = get_on(&mut sender, "/").await;
        assert_eq!(fast, 200);
        // The scenario: the next request comes later than the first one's deadline would allow
        // if it were left in place.
        tokio::time::sleep(pause).await;
        sender.ready().await.expect("still open");
        let started = std::time::Instant::now();
        let (slow, _) = get_on(&mut sender, "/stall").await;
        assert_eq!(slow, 504, "round {round}");
        // The whole second, counted from this request: not what was left of an earlier one.
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "round {round}: 504 after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn the_webhook_is_never_proxied() {
    let mut upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let reply = tests::http::get(edge.public, "/stripe/webhook").await;
    assert_eq!(reply.status, 405);
    let reply = edge.webhook(b"{}").await;
    assert_eq!(reply.status, 400, "verified by the edge itself");
    // The next request the app sees is this one, not a webhook.
    tests::http::get(edge.public, "/after").await;
    assert_eq!(upstream.next().await.uri.path(), "/after");
}

#[tokio::test]
async fn request_ids_are_kept_or_replaced() {
    let mut upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let req = request(Method::GET, edge.public, "/rid")
        .header("x-request-id", "support-ticket-77")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = send(edge.public, req).await.expect("reply");
    assert_eq!(reply.header("x-request-id"), Some("support-ticket-77"));
    assert_eq!(
        upstream.next().await.headers["x-request-id"],
        "support-ticket-77"
    );

    let long = "x".repeat(10 * 1024);
    for hostile in ["has space", "semi;colon", long.as_str()] {
        let req = request(Method::GET, edge.public, "/rid")
            .header("x-request-id", hostile)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let reply = send(edge.public, req).await.expect("reply");
        let got = reply.header("x-request-id").expect("id").to_owned();
        assert_ne!(got, hostile);
        assert_eq!(got.len(), 36);
        assert_eq!(upstream.next().await.headers["x-request-id"], got.as_str());
    }
    // Raw bytes no HTTP library would send: a control character (refused by the parser) and a
    // CR/LF that only splits the line into two headers.
    for raw in [
        &b"GET /rid HTTP/1.1\r\nHost: e\r\nX-Request-Id: a\x1b[31mb\r\n\r\n"[..],
        b"GET /rid HTTP/1.1\r\nHost: e\r\nX-Request-Id: abc\r\nX-Injected: 1\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(edge.public).await.expect("connect");
        conn.write_all(raw).await.expect("write");
        let (answer, _) =
            tests::http::read_until_closed(&mut conn, Duration::from_millis(500)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains("\x1b"), "{answer}");
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;

    // Download: read frame by frame, never holding the body.
    let mut sender = keep_alive(edge.public).await.expect("connection");
    let req = Request::get(format!("/download?bytes={SIZE}"))
        .header("host", "shop.example")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("download");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.expect("frame").data_ref() {
            n += data.len() as u64;
            sum = data.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
        }
    }
    assert_eq!((n, sum), (SIZE, Pattern::sum(SIZE)));

    // Upload: a streamed request body, checked by the app as it arrives.
    let mut sender = keep_alive(edge.public).await.expect("connection");
    let req = Request::post("/upload")
        .header("host", "shop.example")
        .body(Pattern::new(SIZE))
        .expect("request");
    let resp = sender.send_request(req).await.expect("upload");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(seen["bytes"], SIZE);
    assert_eq!(seen["sum"], Pattern::sum(SIZE));
}

#[tokio::test]
async fn http2_clients_are_served_with_prior_knowledge() {
    let mut upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let stream = TcpStream::connect(edge.public).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c");
    tokio::spawn(conn);
    let req = Request::get("http://shop.example/h2?x=1")
        .version(Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), Version::HTTP_2);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"hello from upstream");
    let seen = upstream.next().await;
    assert_eq!(seen.uri.path(), "/h2");
    assert_eq!(seen.uri.query(), Some("x=1"));
    assert_eq!(seen.headers["x-forwarded-host"], "shop.example");
}

#[tokio::test]
async fn proxied_requests_are_counted() {
    let upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    tests::http::get(edge.public, "/status/500").await;
    tests::http::get(edge.public, "/").await;
    let metrics = tests::http::get(edge.admin, "/metrics").await.text();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value(r#"edge_proxy_requests_total{status_class="5xx"}"#) >= 1.0);
    assert!(value(r#"edge_proxy_requests_total{status_class="2xx"}"#) >= 1.0);
    assert!(metrics.contains("edge_proxy_request_duration_seconds_bucket"));
}

/// The proxy keeps the upstream connection of a client connection for its next request: one app
/// connection serves a keep-alive client's requests; one the app closes is replaced, and the next
/// request goes through on a new one.
#[tokio::test]
async fn a_client_connection_reuses_its_upstream_connection_and_survives_the_app_closing_it() {
    let mut upstream = Upstream::start().await;
    let edge = edge_in_front_of(&upstream).await;
    let mut sender = keep_alive(edge.public).await.expect("connection");
    for n in 0..20 {
        let (status, body) = get_on(&mut sender, &format!("/page/{n}")).await;
        assert_eq!(status, 200);
        assert_eq!(body, "hello from upstream");
        upstream.next().await;
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one app connection for 20 requests"
    );

    let (status, _) = get_on(&mut sender, "/close").await;
    assert_eq!(status, 200);
    upstream.next().await;
    for n in 0..5 {
        let (status, body) = get_on(&mut sender, &format!("/after/{n}")).await;
        assert_eq!(
            status, 200,
            "request {n} after the app closed its connection"
        );
        assert_eq!(body, "hello from upstream");
        upstream.next().await;
    }
    assert_eq!(
        upstream.connections(),
        2,
        "the closed connection was replaced once"
    );
}

/// `EDGE_SERVE_THREADS=2`: two threads, each with its own runtime and socket on the same port;
/// clients on many connections are answered (proxied and webhook routes alike), each keeping
/// its upstream connection.
#[tokio::test]
async fn the_public_listener_on_threads_of_its_own_serves_every_connection() {
    let mut upstream = Upstream::start().await;
    let edge = TestEdge::builder()
        .env("UPSTREAM_URL", &upstream.url())
        .env("EDGE_SERVE_THREADS", "2")
        .spawn()
        .await;
    let mut senders = Vec::new();
    for _ in 0..8 {
        let sender = keep_alive(edge.public).await.expect("connection");
        senders.push(sender);
    }
    for round in 0..3 {
        for sender in &mut senders {
            let (status, _) = get_on(sender, &format!("/round/{round}")).await;
            assert_eq!(status, 200);
            upstream.next().await;
        }
    }
    assert_eq!(
        upstream.connections(),
        8,
        "one app connection per client connection"
    );
    let answer = tests::http::get(edge.public, "/stripe/webhook").await;
    assert_eq!(
        answer.status, 405,
        "the webhook route answers on these threads too"
    );
}
