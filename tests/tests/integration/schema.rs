//! The schema keeps only indexes that a query needs, and has those that its recurring reads need:
//! every index of the product's tables carries a comment that names the file holding the query it
//! serves (that file exists and uses the index's table), and the reads that run every few seconds,
//! every pass or on every support page load touch about the rows they return, never a table that
//! grows for ever.

use std::path::Path;

use chrono::{Duration, Utc};
use serde_json::Value;
use tests::pg::TestDb;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One index of the migrated schema, with its table and its comment.
struct Index {
    name: String,
    table: String,
    comment: Option<String>,
}

async fn indexes(db: &TestDb) -> Vec<Index> {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT i.relname, t.relname, obj_description(i.oid, 'pg_class')
               FROM pg_index AS x
               JOIN pg_class AS i ON i.oid = x.indexrelid
               JOIN pg_class AS t ON t.oid = x.indrelid
               JOIN pg_namespace AS n ON n.oid = t.relnamespace
              WHERE n.nspname = 'public' AND t.relname <> 'refinery_schema_history'
              ORDER BY t.relname, i.relname",
            &[],
        )
        .await
        .expect("list the indexes");
    rows.iter()
        .map(|r| Index {
            name: r.get(0),
            table: r.get(1),
            comment: r.get(2),
        })
        .collect()
}

/// The files a comment names: the comma-separated paths before its first `: `.
fn named_files(comment: &str) -> Vec<&str> {
    comment
        .split_once(": ")
        .map(|(paths, _)| paths.split(", ").map(str::trim).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_index_names_the_query_it_serves() {
    let db = TestDb::new().await;
    let all = indexes(&db).await;
    assert!(all.len() > 20, "the schema has its indexes: {}", all.len());
    let mut problems = Vec::new();
    for index in &all {
        let Some(comment) = index.comment.as_deref() else {
            problems.push(format!("{} on {}: no comment", index.name, index.table));
            continue;
        };
        let files = named_files(comment);
        if files.is_empty() {
            problems.push(format!(
                "{}: the comment does not start with the files of its query: {comment}",
                index.name
            ));
        }
        for file in files {
            match std::fs::read_to_string(Path::new(ROOT).join(file)) {
                Ok(text) if text.contains(&index.table) => {}
                Ok(_) => problems.push(format!(
                    "{}: {file} does not mention the table {}",
                    index.name, index.table
                )),
                Err(e) => problems.push(format!("{}: {file}: {e}", index.name)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The tables that grow with every payment or every pass.
const GROWING: [&str; 6] = [
    "orders",
    "payment_events",
    "order_transitions",
    "reconcile_runs",
    "disputes",
    "refunds",
];

/// Rows of each growing table in the seeded database, far more than any read may touch.
const SEEDED: i64 = 5_000;

/// How many rows one plan node may touch: what the reads return (25 at most) plus a margin.
const MOST_TOUCHED: f64 = 60.0;

/// A year of history in miniature (`$SEEDED` is `SEEDED`): that many paid orders each with its
/// event, its delivered notification, a refund and a closed dispute; as many successful passes and
/// events of a type that never has an order (an endpoint that takes `customer.*`); and the few rows
/// that the recurring reads look for (anomalies, orphans, queued and dead notifications, open
/// disputes, a pass that died running). `reconcile_scans` is left out: its reads are the
/// reconciler's own (`pass::scans`), and each goes through a partial or ordered index.
const SEED: &str = "
INSERT INTO orders (id, stripe_session_id, status, amount_total, currency,
                    stripe_payment_intent_id, paid_at, created_at, updated_at, anomaly)
SELECT md5('order' || g)::uuid, 'cs_test_' || g, 'paid', 1000, 'eur', 'pi_' || g,
       now() - g * interval '1 minute', now() - g * interval '1 minute',
       now() - g * interval '1 minute',
       CASE WHEN g % 1000 = 0 THEN 'amount_mismatch' END
FROM generate_series(1, $SEEDED) AS g;
INSERT INTO payment_events (stripe_event_id, event_type, stripe_session_id, order_id, livemode,
                            stripe_created_at, payload, source, request_id)
SELECT 'evt_' || o.stripe_session_id, 'checkout.session.completed', o.stripe_session_id, o.id,
       false, o.created_at, '{}', 'webhook', 'req_' || o.stripe_session_id
FROM orders AS o;
INSERT INTO payment_events (stripe_event_id, event_type, livemode, stripe_created_at, payload,
                            source)
SELECT 'evt_orphan_' || g, 'checkout.session.completed', false, now(), '{}', 'webhook'
FROM generate_series(1, 3) AS g;
INSERT INTO payment_events (stripe_event_id, event_type, livemode, stripe_created_at, payload,
                            source)
SELECT 'evt_customer_' || g, 'customer.updated', false, now() - g * interval '1 second', '{}',
       'webhook'
FROM generate_series(1, $SEEDED) AS g;
INSERT INTO order_transitions (order_id, kind, from_status, to_status, stripe_event_id,
                               occurred_at, livemode, delivered_at)
SELECT o.id, 'order.paid', 'pending', 'paid', 'evt_' || o.stripe_session_id, o.created_at, false,
       o.created_at
FROM orders AS o;
INSERT INTO order_transitions (order_id, kind, from_status, to_status, stripe_event_id,
                               occurred_at, livemode, dead_at)
SELECT md5('order' || g)::uuid, 'order.refunded', 'paid', 'refunded', 'evt_refund_' || g, now(),
       false, CASE WHEN g > 3 THEN now() END
FROM generate_series(1, 5) AS g;
INSERT INTO disputes (id, order_id, status, evidence_due_by, stripe_event_id, stripe_created_at)
SELECT 'du_' || g, md5('order' || g)::uuid, CASE WHEN g <= 2 THEN 'needs_response' ELSE 'won' END,
       now() + interval '3 days', 'evt_dispute_' || g, now()
FROM generate_series(1, $SEEDED) AS g;
INSERT INTO refunds (id, order_id, amount, status, stripe_event_id, stripe_created_at)
SELECT 're_' || g, md5('order' || g)::uuid, 100, 'succeeded', 'evt_re_' || g, now()
FROM generate_series(1, $SEEDED) AS g;
INSERT INTO reconcile_runs (trigger, scope, status, started_at, finished_at, window_from,
                            window_to, tick_at, orphans_adopted)
SELECT 'schedule', 'window', 'ok', now() - g * interval '1 minute',
       now() - g * interval '1 minute', now() - (g + 3) * interval '1 minute',
       now() - g * interval '1 minute', now() - g * interval '1 minute', true
FROM generate_series(1, $SEEDED) AS g;
INSERT INTO reconcile_runs (trigger, scope, status) VALUES ('schedule', 'window', 'running');
ANALYZE;
";

/// Every plan node that reads a growing table, as (statement, table, rows touched), from the
/// JSON plans that auto_explain sent as notices.
fn scans(notices: &[String]) -> Vec<(String, String, f64)> {
    fn walk(node: &Value, statement: &str, out: &mut Vec<(String, String, f64)>) {
        let number = |key: &str| node.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        if let Some(table) = node.get("Relation Name").and_then(Value::as_str)
            && GROWING.contains(&table)
        {
            let touched = (number("Actual Rows")
                + number("Rows Removed by Filter")
                + number("Rows Removed by Index Recheck"))
                * number("Actual Loops").max(1.0);
            out.push((statement.to_owned(), table.to_owned(), touched));
        }
        for child in node
            .get("Plans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, statement, out);
        }
    }
    let mut out = Vec::new();
    for notice in notices {
        let Some((_, json)) = notice.split_once("plan:") else {
            continue;
        };
        let Ok(explained) = serde_json::from_str::<Value>(json.trim()) else {
            panic!("auto_explain's plan is not JSON: {notice}");
        };
        let statement = explained["Query Text"].as_str().unwrap_or("?");
        let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        walk(&explained["Plan"], &statement, &mut out);
    }
    out
}

#[tokio::test]
async fn periodic_and_support_reads_stay_small() {
    let db = TestDb::new().await;
    let seed = SEED.replace("$SEEDED", &SEEDED.to_string());
    db.client().await.batch_execute(&seed).await.expect("seed");
    let (pool, mut notices) = tests::pg::pool_keeping_notices(&db.config);
    let mut client = pool.get().await.expect("connect");
    client
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_timing = off;
             SET auto_explain.log_format = json;
             SET auto_explain.log_level = notice;",
        )
        .await
        .expect("auto_explain (the test cluster's user is a superuser)");

    // The edge's gauges, every 15 s.
    let last = common::ledger::status::last_reconcile_success(&client).await;
    assert!(last.expect("last success").is_some());
    common::ledger::status::open_disputes(&client)
        .await
        .expect("disputes");
    // Every pass.
    use reconciler::runs;
    assert_eq!(
        runs::fail_interrupted(&client).await.expect("interrupted"),
        1
    );
    runs::tick_done(&client, Utc::now() - Duration::minutes(7))
        .await
        .expect("tick");
    runs::high_water(&client).await.expect("high water");
    runs::last_adoption_start(&client).await.expect("adoption");
    let claimants = common::ledger::orphans::Claimants {
        changed_since: Utc::now() - Duration::minutes(3),
        orders: vec![],
    };
    common::ledger::orphans::adopt_orphans(&client, &claimants, None, 100)
        .await
        .expect("orphans");
    // The notification workers and their gauges.
    use reconciler::notify::store;
    store::backlog(&**client, None).await.expect("backlog");
    let tx = client.transaction().await.expect("begin");
    assert!(store::claim(&tx, None).await.expect("claim").is_some());
    tx.rollback().await.expect("rollback");
    // The support overview, on every load.
    use reconciler::support::query;
    assert_eq!(query::recent_runs(&client).await.expect("runs").len(), 25);
    assert_eq!(query::orphans(&client).await.expect("orphans").0, 3);
    assert_eq!(query::anomalies(&client).await.expect("anomalies").len(), 5);
    let undelivered = query::undelivered(&client).await.expect("undelivered");
    assert_eq!(undelivered.len(), 5, "{undelivered:?}");
    assert_eq!(undelivered.iter().filter(|u| u.4).count(), 2, "two dead");
    assert_eq!(query::open_disputes(&client).await.expect("open").len(), 2);
    assert!(
        query::order_of_object(&client, "du_7")
            .await
            .expect("du")
            .is_some()
    );
    // Support's search and `reconciler inspect`, by every kind of id (the pool's one connection,
    // with the same settings, once this client is back in it).
    let order: uuid::Uuid = client
        .query_one(
            "SELECT id FROM orders WHERE stripe_session_id = 'cs_test_42'",
            &[],
        )
        .await
        .expect("an order")
        .get(0);
    drop(client);
    use reconciler::inspect::{Target, local};
    for target in [
        Target::Order(order),
        Target::Session("cs_test_42".into()),
        Target::Event("evt_cs_test_42".into()),
        Target::RequestId("req_cs_test_42".into()),
        Target::RequestId(runs::request_id(100)),
    ] {
        local(&pool, &target).await.expect("inspect");
    }

    // Each notice came in before its statement's answer, so all of them are in.
    let mut seen = Vec::new();
    while let Ok(notice) = notices.try_recv() {
        seen.push(notice);
    }
    let scans = scans(&seen);
    assert!(
        scans.len() >= 40,
        "auto_explain reported the reads: {seen:?}"
    );
    let heavy: Vec<String> = scans
        .iter()
        .filter(|(_, _, touched)| *touched > MOST_TOUCHED)
        .map(|(statement, table, touched)| format!("{touched} rows of {table}: {statement}"))
        .collect();
    assert!(
        heavy.is_empty(),
        "reads touching more than {MOST_TOUCHED} of {SEEDED} rows:\n{}",
        heavy.join("\n")
    );
}

#[tokio::test]
async fn the_orphans_index_lists_exactly_the_order_types() {
    let db = TestDb::new().await;
    let predicate: String = db
        .client()
        .await
        .query_one(
            "SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_index AS x
             JOIN pg_class AS i ON i.oid = x.indexrelid
             WHERE i.relname = 'payment_events_order_type_orphans_idx'",
            &[],
        )
        .await
        .expect("the index")
        .get(0);
    let types = common::stripe::event::types::ORDER_TYPES;
    for t in types {
        assert!(
            predicate.contains(&format!("'{t}'")),
            "{t} missing: {predicate}"
        );
    }
    assert_eq!(
        predicate.matches("'::text").count(),
        types.len(),
        "{predicate}"
    );
}
