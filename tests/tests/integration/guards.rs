//! The ledger's guards, each found by hostile testing: orphans never starve (a flood of events no
//! order will claim never hides a customer's), poison events are stored byte for byte, a payment
//! never lands on another session's order, one locked row never stalls the other webhooks, a
//! read-only database is reported and survived, and storage errors keep their cause.

use std::time::{Duration, Instant};

use reconciler::runs::Trigger;
use serde_json::json;
use sim::objects::{Session, session_event};
use sim::server::StripeSim;
use tests::edge::TestEdge;
use tests::http::{eventually, get};
use tests::ledger::{NewOrder, event_rows, insert_order, order, pending_order};
use tokio_postgres::Client;

const KEY: &str = "sk_test_guards_suite";

fn never() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(false).1
}

/// `n` events of another shop on the same Stripe account: no order here will ever claim them.
async fn unmatchable_orphans(db: &Client, n: i32) {
    db.execute(
        "INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id,
             stripe_session_id, livemode, stripe_created_at, payload, source, client_reference_id)
         SELECT 'evt_other_shop_' || i, 'checkout.session.completed', 'cs_other_shop_' || i,
             'cs_other_shop_' || i, false, now() - interval '1 day' + i * interval '1 second',
             '{\"id\":\"evt_other_shop\"}'::json, 'webhook', gen_random_uuid()
         FROM generate_series(1, $1) AS i",
        &[&n],
    )
    .await
    .expect("orphans of another shop");
}

/// A paid session whose `checkout.session.completed` reaches the ledger (through the edge, and on
/// the simulator) before the app has written its order.
async fn paid_before_its_order(edge: &TestEdge, sim: &StripeSim, name: &str) -> Session {
    let session = Session::new(format!("cs_test_{name}"));
    sim.put_session(session.object());
    let event = session_event("checkout.session.completed", &session);
    sim.add_event(event.clone());
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    session
}

#[tokio::test]
async fn a_flood_of_unclaimed_orphans_never_hides_a_paying_event() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    unmatchable_orphans(&db, 5000).await;
    let session = paid_before_its_order(&edge, &sim, "late_order_pass").await;
    let id = pending_order(&db, &session.id).await;

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let started = Instant::now();
    let first = reconciler.pass(Trigger::Schedule, &never()).await;
    println!(
        "fault=orphan-flood unclaimed=5000 pass_ms={} linked={}",
        started.elapsed().as_millis(),
        first.orphans_linked
    );
    assert_eq!(first.status, "ok", "{first:?}");
    assert_eq!(first.orphans_linked, 1, "{first:?}");
    assert_eq!(order(&db, id).await.status, "paid");
    let second = reconciler.pass(Trigger::Schedule, &never()).await;
    assert_eq!(second.orphans_linked, 0, "{second:?}");
}

#[tokio::test]
async fn a_session_reconcile_alone_applies_the_stored_event() {
    let sim = StripeSim::start(KEY).await;
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    unmatchable_orphans(&db, 5000).await;
    let session = paid_before_its_order(&edge, &sim, "late_order_session").await;
    let id = pending_order(&db, &session.id).await;

    let reconciler = tests::reconciler::build(&edge.db, &sim, &[]).await;
    let verdict = reconciler
        .reconcile_session(&session.id, Trigger::Cli)
        .await
        .expect("verdict");
    assert_eq!(order(&db, id).await.status, "paid");
    assert_eq!(verdict.events_applied, 1, "{verdict:?}");
    assert_eq!(verdict.verdict, "paid on Stripe, paid here: nothing to do");
    assert!(!verdict.verdict.contains("resend"));
}

/// A poison body: what it tests, its event id, its exact text.
struct Poison {
    name: &'static str,
    id: String,
    body: String,
}

/// Signed bodies that serde accepts but `jsonb` refused or expanded, and a large one.
fn poison_bodies() -> Vec<Poison> {
    let base = |name: &'static str, extra: &str| {
        let session = Session::new(format!("cs_test_poison_{name}"));
        let mut event = session_event("checkout.session.completed", &session);
        event["data"]["object"]["poison"] = json!("PLACEHOLDER");
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let body = event.to_string().replace("\"PLACEHOLDER\"", extra);
        Poison { name, id, body }
    };
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let repeated = format!("[{}]", vec!["1e100000"; 50].join(","));
    let large = format!("\"{}\"", "x".repeat(900 * 1024));
    let mut in_metadata = base("surrogate inside metadata", r#""x""#);
    in_metadata.body = in_metadata
        .body
        .replace(r#""metadata":{}"#, r#""metadata":{"note":"\ud83d"}"#);
    vec![
        base("lone high surrogate", r#""\ud800""#),
        base("lone low surrogate", r#""\udc00 trailing""#),
        in_metadata,
        base("NUL escape", r#""a\u0000b""#),
        base("number beyond any range", "1e1000000"),
        base("1e100000 fifty times", &repeated),
        base("nesting 200 deep", &deep),
        base("a 900 KB event", &large),
    ]
}

async fn stored_text(db: &Client, id: &str) -> Vec<String> {
    db.query(
        "SELECT payload::text FROM payment_events WHERE stripe_event_id = $1",
        &[&id],
    )
    .await
    .expect("payload")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn poison_events_are_stored_byte_for_byte_by_the_edge() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    for Poison { name, id, body } in poison_bodies() {
        let reply = edge.webhook(body.as_bytes()).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.json()["duplicate"], false, "{name}");
        assert_eq!(stored_text(&db, &id).await, vec![body], "{name}");
    }
}

#[tokio::test]
async fn poison_events_are_backfilled_byte_for_byte_by_the_reconciler() {
    let sim = StripeSim::start(KEY).await;
    let db_handle = tests::pg::TestDb::new().await;
    let db = db_handle.client().await;
    let now = chrono::Utc::now().timestamp();
    let bodies = poison_bodies();
    for (n, p) in bodies.iter().enumerate() {
        sim.add_event_text(
            &p.id,
            "checkout.session.completed",
            now - 600 + n as i64,
            p.body.clone(),
        );
    }
    let reconciler = tests::reconciler::build(&db_handle, &sim, &[]).await;
    let summary = reconciler.pass(Trigger::Cli, &never()).await;
    assert_eq!(summary.status, "ok", "{summary:?}");
    assert_eq!(summary.events_backfilled, bodies.len() as u64);
    for p in &bodies {
        assert_eq!(
            stored_text(&db, &p.id).await,
            vec![p.body.clone()],
            "{}",
            p.name
        );
    }
}

#[tokio::test]
async fn an_unreadable_order_field_keeps_the_event_and_leaves_the_order() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_unreadable_amount");
    let id = pending_order(&db, &session.id).await;
    let body = session_event("checkout.session.completed", &session)
        .to_string()
        .replace(r#""amount_total":2000"#, r#""amount_total":1e1000000"#);
    let reply = edge.webhook(body.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let now = order(&db, id).await;
    assert_eq!(now.status, "pending");
    assert!(
        now.anomaly
            .as_deref()
            .is_some_and(|a| a.starts_with("unreadable") && a.contains("amount_total")),
        "{now:?}"
    );
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.contains(r#"edge_order_anomalies_total{kind="unreadable"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_payment_never_lands_on_another_sessions_order() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    // Order C has its own session and no expected amount.
    let own = Session::new("cs_test_order_c_own");
    let c = pending_order(&db, &own.id).await;
    // A Payment Link session nobody created an order for names C in its client_reference_id.
    let mut other = Session::new("cs_test_payment_link_other");
    other.client_reference_id = Some(c.to_string());
    other.amount_total = Some(1);
    let event = session_event("checkout.session.completed", &other);
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let now = order(&db, c).await;
    assert_eq!(now.status, "pending", "C was not paid by another session");
    assert!(
        now.anomaly
            .as_deref()
            .is_some_and(|a| a.starts_with("session_mismatch") && a.contains(&other.id)),
        "{now:?}"
    );
    let rows = event_rows(&db, event["id"].as_str().expect("id")).await;
    assert_eq!(rows.len(), 1, "the event is stored");
    assert_eq!(rows[0].order_id, None, "and not linked to C");
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.contains(r#"edge_order_anomalies_total{kind="session_mismatch"} 1"#),
        "{metrics}"
    );

    // An order without a session yet is still found by its client_reference_id.
    let d = insert_order(&db, NewOrder::default()).await;
    let mut link = Session::new("cs_test_payment_link_d");
    link.client_reference_id = Some(d.to_string());
    let reply = edge
        .webhook_json(&session_event("checkout.session.completed", &link))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(order(&db, d).await.status, "paid");
}

#[tokio::test]
async fn one_locked_order_never_stalls_the_webhooks_of_the_others() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let locked = Session::new("cs_test_locked_elsewhere");
    let locked_id = pending_order(&db, &locked.id).await;
    let mut others = Vec::new();
    for i in 0..10 {
        let s = Session::new(format!("cs_test_free_{i}"));
        let id = pending_order(&db, &s.id).await;
        others.push((id, session_event("checkout.session.completed", &s)));
    }
    // An app transaction holds the order's row lock (for 20 s, were it not released below).
    let mut holder = edge.db.client().await;
    let tx = holder.transaction().await.expect("tx");
    tx.execute(
        "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE",
        &[&locked_id],
    )
    .await
    .expect("lock");

    let locked_event = session_event("checkout.session.completed", &locked);
    let started = Instant::now();
    let blocked = edge.spawn_webhook_json(&locked_event);
    let free: Vec<_> = others
        .iter()
        .map(|(_, e)| edge.spawn_webhook_json(e))
        .collect();
    let mut slowest = Duration::ZERO;
    for (task, (id, _)) in free.into_iter().zip(&others) {
        let reply = task.await.expect("task");
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered after {:?}",
            started.elapsed()
        );
        assert_eq!(order(&db, *id).await.status, "paid");
    }
    let reply = blocked.await.expect("task");
    println!(
        "fault=locked-row others=10 slowest_other_ms={} locked_answer={} after_ms={}",
        slowest.as_millis(),
        reply.status,
        started.elapsed().as_millis()
    );
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        event_rows(&db, locked_event["id"].as_str().expect("id"))
            .await
            .is_empty()
    );

    // The lock goes; Stripe's retry is recorded.
    tx.rollback().await.expect("release");
    let retry = edge.webhook_json(&locked_event).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(order(&db, locked_id).await.status, "paid");
    let metrics = get(edge.admin, "/metrics").await.text();
    assert!(
        metrics.contains("edge_ledger_order_busy_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_read_only_database_is_reported_and_survived_without_a_restart() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let name = edge.db.config.get_dbname().expect("dbname").to_owned();
    let sessions: Vec<Session> = (0..2)
        .map(|i| Session::new(format!("cs_test_read_only_{i}")))
        .collect();
    let mut ids = Vec::new();
    for s in &sessions {
        ids.push(pending_order(&db, &s.id).await);
    }
    // The database turns read-only (a failover in progress, a maintenance switch): new sessions
    // are read-only, and the edge's current ones are cut.
    db.batch_execute(&format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    ))
    .await
    .expect("read-only");
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .expect("terminate");
    let event = session_event("checkout.session.completed", &sessions[0]);
    let started = Instant::now();
    let refused = eventually(Duration::from_secs(10), || async {
        edge.webhook_json(&event).await.status.as_u16() >= 500
    })
    .await;
    assert!(refused, "writes are refused with 5xx");
    let not_ready = eventually(Duration::from_secs(10), || async {
        let r = get(edge.admin, "/ready").await;
        r.status == 503 && r.json()["reason"] == "read_only"
    })
    .await;
    assert!(not_ready, "/ready says the database is read-only");
    let reported_ms = started.elapsed().as_millis();

    // Writable again: the same edge recovers, without a restart.
    db.batch_execute(&format!(
        "ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
    ))
    .await
    .expect("writable");
    let writable = Instant::now();
    let recovered = eventually(Duration::from_secs(15), || async {
        edge.webhook_json(&event).await.status == 200
    })
    .await;
    assert!(recovered, "webhooks are recorded again");
    println!(
        "fault=read-only reported_ms={reported_ms} recovered_ms={}",
        writable.elapsed().as_millis()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(edge.admin, "/ready").await.status == 200
        })
        .await
    );
    assert_eq!(order(&db, ids[0]).await.status, "paid");
}

#[tokio::test]
async fn a_storage_failure_names_the_event_and_postgres_s_reason() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    db.batch_execute(
        "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           RAISE EXCEPTION 'refused by the guards suite' USING ERRCODE = 'P0001',
             HINT = 'drop the trigger';
         END $$;
         CREATE TRIGGER refuse_event BEFORE INSERT ON payment_events FOR EACH ROW
           WHEN (NEW.stripe_event_id LIKE 'evt_refused%') EXECUTE FUNCTION refuse_event();",
    )
    .await
    .expect("trigger");
    let mut event = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_refused"),
    );
    event["id"] = json!("evt_refused_by_trigger");
    let reply = edge.webhook_json(&event).await;
    assert_eq!(reply.status, 500);
    assert!(
        !reply.text().contains("refused by"),
        "database internals stay out of the answer"
    );
    let lines = tests::logs::capture().lines_where("eventId", "evt_refused_by_trigger");
    let line = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("an error line names the event: {lines:?}"));
    assert_eq!(line["eventType"], "checkout.session.completed");
    assert_eq!(line["sqlstate"], "P0001");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused by the guards suite") && error.contains("drop the trigger"),
        "{line}"
    );
}
