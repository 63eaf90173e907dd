//! The object-level sweep against the simulator's object lists: orders whose events are gone
//! (older than 30 days) or were never generated are paid, expired, refunded and disputed from
//! the objects themselves, with synthetic ledger rows holding the objects' exact bytes; a second
//! sweep changes nothing; a stopped sweep resumes from its stored cursor; a sweep over 100,000
//! sessions, 1 % of them never evented, costs one request per 100 objects; and `reconciler sweep`
//! as a process prints its summary with a peak memory that does not grow with the window.

use std::time::Duration;

use chrono::Utc;
use reconciler::runs::{RunStatus, Trigger};
use serde_json::{Value, json};
use sim::objects::{Dispute, Refund, Session};
use sim::server::StripeSim;
use tests::ledger::{NewOrder, insert_order, order};
use tests::pg::TestDb;
use tokio::sync::watch;
use uuid::Uuid;

const KEY: &str = "sk_test_sweep_suite";

async fn order_for(db: &tokio_postgres::Client, session: &Session, status: &'static str) -> Uuid {
    insert_order(
        db,
        NewOrder {
            session_id: Some(session.id.clone()),
            status: Some(status),
            payment_intent: session.payment_intent.clone(),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn objects_whose_events_are_gone_move_their_orders_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let forty_days_ago = Utc::now().timestamp() - 40 * 24 * 3600;

    // A paid session and an expired one, 40 days old: their events left the Events API.
    let mut paid = Session::new("cs_test_sweep_paid");
    paid.created = forty_days_ago;
    let mut expired = Session::new("cs_test_sweep_expired");
    expired.created = forty_days_ago + 60;
    expired.status = "expired";
    expired.payment_status = "unpaid";
    // A session still open, and one whose order does not exist here: nothing to apply.
    let mut open = Session::new("cs_test_sweep_open");
    open.status = "open";
    open.payment_status = "unpaid";
    let stranger = Session::new("cs_test_sweep_someone_else");
    let paid_id = order_for(&client, &paid, "pending").await;
    let expired_id = order_for(&client, &expired, "pending").await;
    let open_id = order_for(&client, &open, "pending").await;
    // A paid order whose refund and dispute Stripe never sent events for.
    let refunded = Session::new("cs_test_sweep_refunded");
    let refunded_id = order_for(&client, &refunded, "paid").await;
    let pi = refunded.payment_intent.clone().expect("pi");
    client
        .execute(
            "UPDATE orders SET amount_total = 2000, currency = 'eur' WHERE id = $1",
            &[&refunded_id],
        )
        .await
        .expect("amount");
    let refund = Refund::new(&pi, 500);
    let dispute = Dispute::new(&pi, 2000);
    for object in [
        paid.object(),
        expired.object(),
        open.object(),
        stranger.object(),
        refund.object(),
        dispute.object(),
    ] {
        sim.put_object(object);
    }

    let r = tests::reconciler::build(&db, &sim, &[]).await;
    let (_stop, stopped) = watch::channel(false);
    let from = Utc::now() - chrono::Duration::days(60);
    let summary = r.sweep(Trigger::Cli, from, Utc::now(), &stopped).await;
    assert_eq!(summary.status, RunStatus::Ok, "{summary:?}");
    assert_eq!(summary.objects_seen, 6);
    assert_eq!(summary.objects_applied, 4, "{summary:?}");
    assert_eq!(summary.stripe_requests, 3, "one page per list");

    assert_eq!(order(&client, paid_id).await.status, "paid");
    assert_eq!(order(&client, expired_id).await.status, "expired");
    assert_eq!(order(&client, open_id).await.status, "pending");
    let row = client
        .query_one(
            "SELECT status, amount_refunded, dispute_status FROM orders WHERE id = $1",
            &[&refunded_id],
        )
        .await
        .expect("order");
    assert_eq!(row.get::<_, String>(0), "partially_refunded");
    assert_eq!(row.get::<_, i64>(1), 500);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("needs_response")
    );

    // The ledger keeps the object exactly as Stripe listed it, under the sweep's own id.
    let rows = client
        .query(
            "SELECT stripe_event_id, payload::text, source, request_id FROM payment_events
             ORDER BY stripe_event_id",
            &[],
        )
        .await
        .expect("ledger");
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        ids,
        vec![
            format!("sweep:{}:paid", paid.id),
            format!("sweep:{}:expired", expired.id),
            format!("sweep:{}:needs_response", dispute.id),
            format!("sweep:{}:succeeded", refund.id),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    for row in &rows {
        assert_eq!(row.get::<_, String>(2), "sweep");
        assert!(
            row.get::<_, Option<String>>(3)
                .is_some_and(|r| r.starts_with("reconcile-run-"))
        );
    }
    let paid_payload: String = rows
        .iter()
        .find(|r| r.get::<_, String>(0).ends_with(":paid"))
        .map(|r| r.get(1))
        .expect("paid row");
    assert_eq!(paid_payload, paid.object().to_string(), "the exact bytes");
    let run_scope: String = client
        .query_one(
            "SELECT scope FROM reconcile_runs WHERE id = $1",
            &[&summary.run_id.expect("run")],
        )
        .await
        .expect("run")
        .get(0);
    assert_eq!(run_scope, "sweep");

    // A second sweep finds nothing to do.
    let again = r.sweep(Trigger::Cli, from, Utc::now(), &stopped).await;
    assert_eq!(again.status, RunStatus::Ok);
    assert_eq!((again.objects_missing, again.objects_applied), (0, 0));
    let n: i64 = client
        .query_one("SELECT count(*) FROM payment_events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 4, "nothing doubled");
    let notified: i64 = client
        .query_one("SELECT count(*) FROM order_transitions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        notified, 4,
        "paid, expired, partially refunded, dispute opened: each notified once"
    );
}

/// A minimal session object (the full fixture is 2 KB; 100,000 of them would not be).
fn small_session(i: usize, created: i64, paid: bool) -> Value {
    json!({
        "id": format!("cs_test_bulk_{i}"),
        "object": "checkout.session",
        "amount_total": 2000,
        "currency": "eur",
        "created": created,
        "livemode": false,
        "mode": "payment",
        "payment_intent": format!("pi_bulk_{i}"),
        "payment_status": if paid { "paid" } else { "unpaid" },
        "status": if paid { "complete" } else { "open" },
    })
}

#[tokio::test]
async fn a_sweep_of_100000_sessions_costs_one_request_per_100() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let n = 100_000usize;
    let base = Utc::now().timestamp() - 50 * 24 * 3600;
    for i in 0..n {
        sim.put_object(small_session(i, base + (i as i64) * 20, true));
    }
    // Every order paid by its webhook, except 1 % that Stripe never sent an event for.
    client
        .execute(
            "INSERT INTO orders (id, stripe_session_id, status, stripe_payment_intent_id)
             SELECT gen_random_uuid(), 'cs_test_bulk_' || i,
                 CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'paid' END, 'pi_bulk_' || i
             FROM generate_series(0, $1::int - 1) AS i",
            &[&(n as i32)],
        )
        .await
        .expect("orders");
    let r = tests::reconciler::build(
        &db,
        &sim,
        &[
            ("STRIPE_MAX_RPS", "1000"),
            ("RECONCILE_PASS_TIMEOUT", "10m"),
        ],
    )
    .await;
    let (_stop, stopped) = watch::channel(false);
    let from = Utc::now() - chrono::Duration::days(60);
    let summary = r.sweep(Trigger::Cli, from, Utc::now(), &stopped).await;
    assert_eq!(summary.status, RunStatus::Ok, "{summary:?}");
    assert_eq!(summary.objects_seen, n as u64);
    assert_eq!(summary.objects_applied, (n / 100) as u64);
    assert_eq!(
        summary.stripe_requests,
        n.div_ceil(100) as u64 + 2,
        "ceil(n/100) session pages, one page of refunds and one of disputes"
    );
    let pending: i64 = client
        .query_one("SELECT count(*) FROM orders WHERE status <> 'paid'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_stopped_sweep_resumes_from_its_cursor() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let base = Utc::now().timestamp() - 10 * 24 * 3600;
    let n = 350usize;
    for i in 0..n {
        sim.put_object(small_session(i, base + i as i64, true));
    }
    client
        .execute(
            "INSERT INTO orders (id, stripe_session_id, status)
             SELECT gen_random_uuid(), 'cs_test_bulk_' || i, 'pending'
             FROM generate_series(0, $1::int - 1) AS i",
            &[&(n as i32)],
        )
        .await
        .expect("orders");
    // One request a second, so that the stop lands between pages.
    let r =
        std::sync::Arc::new(tests::reconciler::build(&db, &sim, &[("STRIPE_MAX_RPS", "1")]).await);
    let (stop, stopped) = watch::channel(false);
    let from = Utc::now() - chrono::Duration::days(20);
    let to = Utc::now();
    let first = tokio::spawn({
        let (r, stopped) = (r.clone(), stopped.clone());
        async move { r.sweep(Trigger::Cli, from, to, &stopped).await }
    });
    // Stop once the first page is applied and its cursor stored.
    let stored = tests::http::eventually(Duration::from_secs(20), || async {
        client
            .query_one(
                "SELECT cursor IS NOT NULL FROM sweep_cursors WHERE list = 'checkout_sessions'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
    })
    .await;
    assert!(stored, "the first page's cursor is stored");
    stop.send(true).expect("stop");
    let first = first.await.expect("first sweep");
    assert_eq!(first.status, RunStatus::Failed, "{first:?}");
    assert!(first.objects_applied >= 100 && first.objects_applied < n as u64);

    let (_stop, stopped) = watch::channel(false);
    let second = r.sweep(Trigger::Cli, from, to, &stopped).await;
    assert_eq!(second.status, RunStatus::Ok, "{second:?}");
    assert!(second.resumed);
    assert_eq!(
        first.objects_applied + second.objects_applied,
        n as u64,
        "every object applied once"
    );
    assert!(
        second.objects_seen < n as u64,
        "the second sweep did not list from the top: {second:?}"
    );
    let paid: i64 = client
        .query_one("SELECT count(*) FROM orders WHERE status = 'paid'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(paid, n as i64);
}

/// `reconciler sweep` as support runs it: a process, its JSON summary, its exit status, and its
/// peak memory over 2,000 then 22,000 sessions (one page at a time: printed, and under the
/// reconciler's 64 MB target).
#[tokio::test]
async fn the_sweep_command_prints_its_summary_with_flat_memory() {
    let sim = StripeSim::start(KEY).await;
    let base = Utc::now().timestamp() - 45 * 24 * 3600;
    let mut peaks = Vec::new();
    let mut total = 0usize;
    for n in [2_000usize, 20_000] {
        let db = TestDb::new().await;
        let client = db.client().await;
        for i in total..total + n {
            sim.put_object(small_session(i, base + i as i64, true));
        }
        total += n;
        client
            .execute(
                "INSERT INTO orders (id, stripe_session_id, status)
                 SELECT gen_random_uuid(), 'cs_test_bulk_' || i,
                     CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'paid' END
                 FROM generate_series(0, $1::int - 1) AS i",
                &[&(total as i32)],
            )
            .await
            .expect("orders");
        let url = db.url();
        let api = sim.url();
        let env = [
            ("DATABASE_URL", url.as_str()),
            ("STRIPE_API_KEY", KEY),
            ("STRIPE_API_BASE", api.as_str()),
            ("STRIPE_MAX_RPS", "1000"),
            ("STRIPE_EXPECT_LIVEMODE", "false"),
        ];
        let run = tests::process::run(
            "reconciler",
            &["sweep", "--since", "60d"],
            &env,
            Duration::from_secs(300),
        )
        .await;
        assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
        let summary: Value = serde_json::from_str(&run.stdout).expect("a JSON summary");
        assert_eq!(summary["status"], "ok");
        assert_eq!(summary["objectsSeen"], total as u64);
        assert_eq!(summary["objectsApplied"], (total / 100) as u64);
        assert_eq!(summary["stripeRequests"], total.div_ceil(100) as u64 + 2);
        peaks.push(run.peak_rss_mb);
    }
    println!("reconciler sweep, peak RSS for 2,000 and 22,000 sessions: {peaks:?} MB");
    // The reconciler's memory target (docs/performance.md): the larger window stays well under it.
    // (The smaller run is too short for the 20 ms sampling to be a bound to compare against.)
    assert!(
        peaks[1] < 64.0,
        "peak RSS over 22,000 sessions: {peaks:?} MB"
    );

    let refused = tests::process::run(
        "reconciler",
        &["sweep", "--since", "yesterday"],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(refused.status.code(), Some(64), "{}", refused.stderr);
    assert!(refused.stderr.contains("--since"), "{}", refused.stderr);
}
