//! Slow peers hold nothing for ever: h2 clients that keep their flow-control window at zero, and
//! HTTP/1 or h2 clients that never read a proxied download. Their connections count as idle at
//! the cap and are closed at the stall time-out, their proxy slots and upstream connections come
//! back, webhooks keep their latency, and a thousand stuck streams cost little memory.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::Limits;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::edge::TestEdge;
use tests::http::{eventually, get};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An h2c connection whose stream windows are zero: the server can send no DATA, ever.
async fn zero_window(addr: std::net::SocketAddr) -> http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2c");
    // The connection task answers PINGs and SETTINGS, and never opens a window.
    tokio::spawn(conn);
    sender
}

/// Sends `n` requests for `path` on `sender` and waits for their heads; the bodies are never read
/// (they are kept, so that the streams stay open).
async fn stuck_streams(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
) -> Vec<hyper::Response<hyper::body::Incoming>> {
    let mut held = Vec::new();
    for _ in 0..n {
        sender.ready().await.expect("ready");
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .expect("request");
        held.push(sender.send_request(req).await.expect("response head"));
    }
    held
}

fn limits(max_connections: usize, stall: Duration) -> Limits {
    Limits {
        max_connections,
        stall_timeout: stall,
        ..Limits::default()
    }
}

#[tokio::test]
async fn zero_window_connections_at_the_cap_make_room_and_are_closed_at_the_stall_time_out() {
    let edge = TestEdge::builder()
        .limits(limits(8, Duration::from_secs(3)))
        .spawn()
        .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut sender = zero_window(edge.public).await;
        // A cheap request whose answer (405, a JSON body) can never be sent.
        let heads = stuck_streams(&mut sender, edge.public, "/stripe/webhook", 4).await;
        assert!(heads.iter().all(|r| r.status() == 405));
        held.push((sender, heads));
    }
    let stats = edge.state.public_stats.clone();
    assert_eq!(stats.open.load(Ordering::Relaxed), 8, "every slot is taken");

    // Every connection is blocked on its peer: a webhook makes room and keeps its latency.
    let body = sim::objects::session_event(
        "checkout.session.completed",
        &sim::objects::Session::new("cs_test_zero_window"),
    )
    .to_string();
    let started = Instant::now();
    let answer = edge.webhook(body.as_bytes()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the webhook waited {:?} for a slot",
        started.elapsed()
    );
    assert!(stats.evicted.load(Ordering::Relaxed) >= 1);

    // Left alone, the stuck connections are closed at the stall time-out.
    assert!(
        eventually(Duration::from_secs(10), || async {
            stats.open.load(Ordering::Relaxed) == 0
        })
        .await,
        "open: {}",
        stats.open.load(Ordering::Relaxed)
    );
    let closed =
        stats.stalled_closed.load(Ordering::Relaxed) + stats.evicted.load(Ordering::Relaxed);
    assert!(closed >= 8, "stalled or evicted: {closed}");
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.lines().any(|l| l
            .starts_with(r#"edge_connections_closed_total{listener="public",reason="stalled"}"#)),
        "{metrics}"
    );
    drop(held);
}

#[tokio::test]
async fn slow_readers_of_a_proxied_download_give_back_their_slots_and_upstream_connections() {
    let upstream = tests::upstream::Upstream::start().await;
    let edge = TestEdge::builder()
        .env("UPSTREAM_URL", &upstream.url())
        .env("EDGE_PROXY_MAX_INFLIGHT", "3")
        .limits(limits(64, Duration::from_secs(2)))
        .spawn()
        .await;
    let download = "/download?bytes=52428800";
    // Two HTTP/1 clients ask for 50 MB and never read a byte of it.
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(edge.public).await.expect("connect");
        c.write_all(format!("GET {download} HTTP/1.1\r\nhost: {}\r\n\r\n", edge.public).as_bytes())
            .await
            .expect("write");
        readers.push(c);
    }
    // And an h2 client with a zero window does the same.
    let mut sender = zero_window(edge.public).await;
    let h2_heads = stuck_streams(&mut sender, edge.public, download, 1).await;
    assert_eq!(h2_heads[0].status(), 200);
    let proxy = edge.state.proxy.as_ref().expect("proxy");
    assert!(
        eventually(Duration::from_secs(5), || async { proxy.in_flight() == 3 }).await,
        "the three downloads hold every slot: {}",
        proxy.in_flight()
    );
    assert_eq!(get(edge.public, "/status/200").await.status, 503, "full");

    // Not read for the stall time-out, they are given up: the slots come back.
    assert!(
        eventually(Duration::from_secs(10), || async { proxy.in_flight() == 0 }).await,
        "in flight: {}",
        proxy.in_flight()
    );
    assert_eq!(get(edge.public, "/status/200").await.status, 200);
    let metrics = get(edge.admin, "/metrics").await.text();
    let stalled = metrics
        .lines()
        .find(|l| l.starts_with("edge_proxy_responses_stalled_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(stalled >= 3.0, "{metrics}");
    drop((readers, h2_heads, sender));
}

#[tokio::test]
async fn a_thousand_zero_window_streams_hold_little_memory_and_webhooks_go_through() {
    let edge = tests::process::Server::edge(&[("EDGE_MAX_CONNECTIONS", "100")]).await;
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut sender = zero_window(edge.public).await;
        let heads = stuck_streams(&mut sender, edge.public, "/stripe/webhook", 32).await;
        held.push((sender, heads));
    }
    let streams: usize = held.iter().map(|(_, h)| h.len()).sum();
    assert_eq!(streams, 1024);
    let started = Instant::now();
    let reply = edge.webhook("cs_test_thousand_streams").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let latency = started.elapsed();
    let rss = edge.peak_rss_mb();
    eprintln!(
        "attack=h2-zero-window streams={streams} webhook_ms={} peak_rss_mb={rss:.1}",
        latency.as_millis()
    );
    assert!(
        rss < 64.0,
        "peak RSS {rss:.1} MB with {streams} stuck streams"
    );
    assert!(latency < Duration::from_secs(2), "webhook took {latency:?}");
    drop(held);
}
