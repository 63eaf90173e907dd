//! HTTPS on the edge's public listener, with a real TLS client trusting the test's CA: webhooks
//! over HTTP/1.1 and h2 (ALPN), `X-Forwarded-Proto: https` to the app, the certificate reloaded
//! (on demand and when its files change) without dropping open connections, a bad new pair kept
//! out, and 3,000 connections that never send a ClientHello closed at the head deadline.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use edge::Limits;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::edge::TestEdge;
use tests::http::{eventually, get};
use tests::tls::{Pem, TestCa, connect, peer_certificate};

/// An HTTPS edge whose certificate (for `localhost`, from `ca`) lives in `dir`.
struct HttpsEdge {
    edge: TestEdge,
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl HttpsEdge {
    async fn start(extra: &[(&str, &str)], limits: Option<Limits>) -> Self {
        let ca = TestCa::new("edge-https-test-ca");
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = ca
            .issue(&["localhost"], "localhost")
            .write(dir.path(), "edge");
        let mut builder = TestEdge::builder()
            .env("EDGE_TLS_CERT_FILE", &cert.display().to_string())
            .env("EDGE_TLS_KEY_FILE", &key.display().to_string());
        for (k, v) in extra {
            builder = builder.env(k, v);
        }
        if let Some(limits) = limits {
            builder = builder.limits(limits);
        }
        Self {
            edge: builder.spawn().await,
            ca,
            dir,
        }
    }

    /// Replaces the certificate's files with `pem`.
    fn write(&self, pem: &Pem) {
        pem.write(self.dir.path(), "edge");
    }

    async fn tls(&self, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        connect(self.edge.public, "localhost", &self.ca, alpn)
            .await
            .expect("TLS handshake")
    }
}

/// A signed webhook request for a new session.
fn webhook(edge: &TestEdge, name: &str) -> http::Request<Full<Bytes>> {
    let body = sim::objects::session_event(
        "checkout.session.completed",
        &sim::objects::Session::new(name),
    )
    .to_string();
    http::Request::post("https://localhost/stripe/webhook")
        .header("host", "localhost")
        .header("stripe-signature", edge.sign(body.as_bytes()))
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

async fn status(resp: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>) -> u16 {
    let resp = resp.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test]
async fn webhooks_over_http1_and_h2_and_the_app_learns_it_was_https() {
    let mut upstream = tests::upstream::Upstream::start().await;
    let https = HttpsEdge::start(&[("UPSTREAM_URL", &upstream.url())], None).await;
    let edge = &https.edge;

    let stream = https.tls(&[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1");
    tokio::spawn(conn);
    assert_eq!(
        status(h1.send_request(webhook(edge, "cs_test_https_h1")).await).await,
        200
    );

    let stream = https.tls(&[b"h2", b"http/1.1"]).await;
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 by ALPN"
    );
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(conn);
    assert_eq!(
        status(h2.send_request(webhook(edge, "cs_test_https_h2")).await).await,
        200
    );
    let proxied = http::Request::get("https://localhost/checkout")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(status(h2.send_request(proxied).await).await, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    let metrics = get(edge.admin, "/metrics").await.text();
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with("edge_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(expiry > chrono::Utc::now().timestamp() as f64, "{metrics}");
}

#[tokio::test]
async fn a_new_certificate_serves_new_handshakes_and_open_connections_stay() {
    let https = HttpsEdge::start(&[], None).await;
    let edge = &https.edge;
    let first = https.tls(&[b"http/1.1"]).await;
    let old_cert = peer_certificate(&first);
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(first))
        .await
        .expect("http/1.1");
    tokio::spawn(conn);
    assert_eq!(
        status(open.send_request(webhook(edge, "cs_test_reload_1")).await).await,
        200
    );

    // A renewal on demand (what SIGHUP does).
    https.write(&https.ca.issue(&["localhost"], "localhost-renewed"));
    let tls = edge.state.tls.as_ref().expect("https");
    assert!(tls.reload());
    let second = https.tls(&[b"http/1.1"]).await;
    let new_cert = peer_certificate(&second);
    assert_ne!(new_cert, old_cert, "new handshakes get the new certificate");
    assert_eq!(
        status(open.send_request(webhook(edge, "cs_test_reload_2")).await).await,
        200,
        "the connection opened before the reload still works"
    );

    // A bad pair (a key of another certificate) is refused: the one in force stays.
    let good = https.ca.issue(&["localhost"], "localhost");
    let other = https.ca.issue(&["localhost"], "localhost");
    https.write(&Pem {
        cert: good.cert.clone(),
        key: other.key,
    });
    assert!(!tls.reload());
    assert_eq!(peer_certificate(&https.tls(&[b"http/1.1"]).await), new_cert);

    // A renewal written to the files is picked up without a signal.
    https.write(&good);
    assert!(
        eventually(Duration::from_secs(20), || async {
            peer_certificate(&https.tls(&[b"http/1.1"]).await) != new_cert
        })
        .await,
        "the watcher reloads a changed pair"
    );
    // At least once: the watcher may also have seen the bad pair before the good one came.
    let metrics = get(edge.admin, "/metrics").await.text();
    let failed = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"edge_config_reloads_total{what="tls_certificate",outcome="failed"} "#)
        })
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(failed.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test]
async fn three_thousand_connections_without_a_client_hello_are_closed_at_the_deadline() {
    let _ = edge::resources::raise_fd_limit();
    let https = HttpsEdge::start(
        &[],
        Some(Limits {
            header_read_timeout: Duration::from_secs(3),
            ..Limits::default()
        }),
    )
    .await;
    let edge = &https.edge;
    let mut silent = Vec::new();
    for _ in 0..3000 {
        silent.push(
            tokio::net::TcpStream::connect(edge.public)
                .await
                .expect("connect"),
        );
    }
    // Meanwhile a real client gets through.
    let stream = https.tls(&[b"http/1.1"]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1");
    tokio::spawn(conn);
    assert_eq!(
        status(h1.send_request(webhook(edge, "cs_test_silent")).await).await,
        200
    );
    let stats = edge.state.public_stats.clone();
    assert!(
        eventually(Duration::from_secs(15), || async {
            stats.head_timeouts.load(Ordering::Relaxed) >= 3000
        })
        .await,
        "closed at the head deadline: {}",
        stats.head_timeouts.load(Ordering::Relaxed)
    );
    drop(silent);
}
