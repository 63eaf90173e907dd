//! The admin listener (`/metrics`, `/live`, `/ready`) and graceful shutdown.

use std::time::Duration;

use common::stripe::signature;
use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{eventually, get, read_until, read_until_closed};
use tests::ledger::event_rows;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn metrics_expose_every_edge_series_from_the_start() {
    let edge = TestEdge::builder()
        .env("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b")
        .spawn()
        .await;
    let reply = get(edge.admin, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let text = reply.text();
    for series in [
        r#"edge_webhook_requests_total{outcome="processed"}"#,
        r#"edge_webhook_requests_total{outcome="duplicate"}"#,
        r#"edge_webhook_requests_total{outcome="invalid_signature"}"#,
        r#"edge_webhook_requests_total{outcome="invalid_payload"}"#,
        r#"edge_webhook_requests_total{outcome="too_large"}"#,
        r#"edge_webhook_requests_total{outcome="storage_error"}"#,
        r#"edge_webhook_secret_matches_total{secret_index="0"}"#,
        r#"edge_webhook_secret_matches_total{secret_index="1"}"#,
        r#"edge_order_transitions_total{from="pending",to="paid"}"#,
        r#"edge_order_transitions_total{from="paid",to="refunded"}"#,
        "edge_orphan_events_total",
        r#"edge_order_anomalies_total{kind="amount_mismatch"}"#,
        r#"edge_order_anomalies_total{kind="livemode_mismatch"}"#,
        r#"edge_db_pool_connections{pool="writer",state="max"}"#,
        r#"edge_db_pool_connections{pool="writer",state="waiting"}"#,
        r#"edge_db_pool_connections{pool="admin",state="idle"}"#,
        r#"edge_webhook_signature_failures_total{reason="no_match"}"#,
        r#"edge_webhook_signature_failures_total{reason="too_old"}"#,
        "edge_ready 1",
        "edge_reconcile_last_success_timestamp_seconds",
        r#"edge_connections_closed_total{listener="public",reason="evicted"}"#,
        "process_resident_memory_bytes",
        "process_open_fds",
        r#"edge_proxy_requests_total{status_class="5xx"}"#,
        "edge_webhook_requests_in_flight",
        "# HELP edge_webhook_requests_total",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    let event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_metrics"),
    );
    assert_eq!(edge.webhook_json(&event).await.status, 200);
    let text = get(edge.admin, "/metrics").await.text();
    assert!(
        text.contains("edge_webhook_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn version_agrees_in_the_binary_the_metrics_and_ready() {
    use common::build::{DATE, LONG_VERSION, REVISION, VERSION};
    let edge = TestEdge::spawn().await;
    // What `--version` prints is built from the same constants as /ready and the metric.
    assert_eq!(
        LONG_VERSION,
        format!("{VERSION} (revision {REVISION}, built {DATE})")
    );
    let ready = get(edge.admin, "/ready").await.json();
    assert_eq!(ready["version"], VERSION);
    assert_eq!(ready["revision"], REVISION);
    assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
    let metrics = get(edge.admin, "/metrics").await.text();
    let info = format!(r#"edge_build_info{{version="{VERSION}",revision="{REVISION}"}} 1"#);
    assert!(metrics.contains(&info), "{info} in\n{metrics}");
    // The binary prints it. (Its revision is the one it was built from, which `cargo test` alone
    // does not rebuild: only the shape and the version are compared.)
    let printed = tests::process::run(
        "edge",
        &["--version"],
        &[],
        std::time::Duration::from_secs(30),
    )
    .await;
    assert!(printed.status.success(), "{}", printed.stderr);
    assert!(
        printed
            .stdout
            .starts_with(&format!("edge {VERSION} (revision ")),
        "{}",
        printed.stdout
    );
    assert!(printed.stdout.contains(", built "), "{}", printed.stdout);
}

#[tokio::test]
async fn live_ready_and_methods() {
    let edge = TestEdge::spawn().await;
    let live = get(edge.admin, "/live").await;
    assert_eq!(live.status, 200);
    assert!(live.header("x-request-id").is_some());
    let ready = get(edge.admin, "/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json()["schemaVersion"],
        common::db::required_schema_version()
    );
    assert_eq!(get(edge.admin, "/stripe/webhook").await.status, 404);
    let req = tests::http::request(http::Method::POST, edge.admin, "/ready")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let reply = tests::http::send(edge.admin, req).await.expect("reply");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_reports_draining() {
    let mut edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let event = session_event("checkout.session.completed", &Session::new("cs_test_drain"));
    let body = event.to_string();
    let header = signature::sign(
        &edge.secrets[0],
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let mut conn = TcpStream::connect(edge.public).await.expect("connect");
    let head = format!(
        "POST /stripe/webhook HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {header}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    // The edge asks for the body only once the handler is reading it: the request is in flight.
    read_until(&mut conn, b"100 Continue", Duration::from_secs(5))
        .await
        .expect("100 Continue");

    edge.trigger_stop();
    let admin = edge.admin;
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(admin, "/ready").await.status == 503
        })
        .await,
        "/ready reports draining"
    );
    conn.write_all(body.as_bytes()).await.expect("write body");
    let (answer, _) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("HTTP/1.1 200 OK"), "{answer}");
    edge.stopped().await;
    assert_eq!(
        event_rows(&db, event["id"].as_str().expect("id"))
            .await
            .len(),
        1
    );
    assert!(
        TcpStream::connect(edge.public).await.is_err(),
        "no longer accepting"
    );
}
