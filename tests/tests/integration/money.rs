//! The money after the payment, end to end: every row of the refund and dispute state machine
//! through signed webhooks (partial and full refunds, a failed refund taking the order back,
//! `charge.refunded` of older API versions mixed with `refund.*`, refunds known before the payment,
//! disputes opening and closing without touching `paid`), their order notifications, and the
//! property that any permutation of an object's events, with duplicates, in batches of any size,
//! ends in the rows the sorted sequence gives.

use common::ledger::{self, BatchEntry, BatchMeta, Source};
use common::stripe::event::StripeEvent;
use serde_json::Value;
use sim::objects::{
    Dispute, Refund, Session, charge_refunded_with, dispute_event, refund_event, session_event,
};
use tests::edge::TestEdge;
use tests::ledger::{NewOrder, insert_order, pending_order};
use tests::pg::TestDb;
use tokio_postgres::Client;
use uuid::Uuid;

/// An order's money columns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Money {
    status: String,
    amount_refunded: i64,
    dispute_status: Option<String>,
}

async fn money(db: &Client, id: Uuid) -> Money {
    let row = db
        .query_one(
            "SELECT status, amount_refunded, dispute_status FROM orders WHERE id = $1",
            &[&id],
        )
        .await
        .expect("order");
    Money {
        status: row.get(0),
        amount_refunded: row.get(1),
        dispute_status: row.get(2),
    }
}

fn m(status: &str, amount_refunded: i64, dispute_status: Option<&str>) -> Money {
    Money {
        status: status.into(),
        amount_refunded,
        dispute_status: dispute_status.map(Into::into),
    }
}

/// The order's notifications so far: kind, from, to, amount refunded, dispute status.
async fn notifications(db: &Client, id: Uuid) -> Vec<String> {
    db.query(
        "SELECT kind || ' ' || coalesce(from_status, '-') || '->' || to_status || ' '
             || amount_refunded || ' ' || coalesce(dispute_status, '-')
         FROM order_transitions WHERE order_id = $1 ORDER BY id",
        &[&id],
    )
    .await
    .expect("transitions")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// A pending order for a session of 2000 eur, paid by a signed `checkout.session.completed`.
async fn paid_order(edge: &TestEdge, name: &str) -> (Uuid, String) {
    let session = Session::new(format!("cs_test_money_{name}"));
    let pi = session.payment_intent.clone().expect("pi");
    let db = edge.db.client().await;
    let id = pending_order(&db, &session.id).await;
    send(edge, &session_event("checkout.session.completed", &session)).await;
    (id, pi)
}

async fn send(edge: &TestEdge, event: &Value) {
    let reply = edge.webhook_json(event).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn refunds_move_the_order_both_ways() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, pi) = paid_order(&edge, "both_ways").await;
    let t = chrono::Utc::now().timestamp();
    let mut first = Refund::new(&pi, 500);
    first.status = "pending";
    send(&edge, &refund_event("refund.created", &first, t)).await;
    assert_eq!(
        money(&db, id).await,
        m("paid", 0, None),
        "a pending refund moves nothing"
    );
    first.status = "succeeded";
    send(&edge, &refund_event("refund.updated", &first, t + 1)).await;
    assert_eq!(money(&db, id).await, m("partially_refunded", 500, None));
    let mut second = Refund::new(&pi, 1500);
    send(&edge, &refund_event("refund.created", &second, t + 2)).await;
    assert_eq!(money(&db, id).await, m("refunded", 2000, None));
    second.status = "failed";
    send(&edge, &refund_event("refund.failed", &second, t + 3)).await;
    assert_eq!(
        money(&db, id).await,
        m("partially_refunded", 500, None),
        "a failed refund takes the order back"
    );
    first.status = "canceled";
    send(&edge, &refund_event("charge.refund.updated", &first, t + 4)).await;
    assert_eq!(money(&db, id).await, m("paid", 0, None));
    // A late, older snapshot of the first refund changes nothing.
    first.status = "succeeded";
    send(&edge, &refund_event("refund.updated", &first, t + 1)).await;
    assert_eq!(money(&db, id).await, m("paid", 0, None));
    let rows = db
        .query(
            "SELECT id, status, amount FROM refunds WHERE order_id = $1 ORDER BY amount",
            &[&id],
        )
        .await
        .expect("refunds");
    let rows: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (first.id.clone(), "canceled".into(), 500),
            (second.id.clone(), "failed".into(), 1500)
        ]
    );
    assert_eq!(
        notifications(&db, id).await,
        vec![
            "order.paid pending->paid 0 -",
            "order.partially_refunded paid->partially_refunded 500 -",
            "order.refunded partially_refunded->refunded 2000 -",
            "order.partially_refunded refunded->partially_refunded 500 -",
            "order.partially_refunded partially_refunded->paid 0 -",
        ]
    );
}

#[tokio::test]
async fn older_api_versions_and_newer_events_converge() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let t = chrono::Utc::now().timestamp();
    // One shop sees charge.refunded with the refunds embedded, another the refund.* events, a
    // third both, in the other order: all end in the same state.
    for (name, mix) in [("old", 0), ("new", 1), ("both", 2)] {
        let (id, pi) = paid_order(&edge, &format!("converge_{name}")).await;
        let a = Refund::new(&pi, 700);
        let mut b = Refund::new(&pi, 1300);
        b.charge = a.charge.clone();
        let charge_after_a = charge_refunded_with(&pi, 2000, std::slice::from_ref(&a), t);
        let charge_after_b = charge_refunded_with(&pi, 2000, &[a.clone(), b.clone()], t + 5);
        let events = match mix {
            0 => vec![charge_after_a, charge_after_b],
            1 => vec![
                refund_event("refund.created", &b, t + 5),
                refund_event("refund.created", &a, t),
            ],
            _ => vec![
                charge_after_b,
                refund_event("refund.created", &b, t + 5),
                charge_after_a,
                refund_event("refund.created", &a, t),
            ],
        };
        for event in &events {
            send(&edge, event).await;
        }
        assert_eq!(money(&db, id).await, m("refunded", 2000, None), "{name}");
        let n: i64 = db
            .query_one("SELECT count(*) FROM refunds WHERE order_id = $1", &[&id])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2, "{name}: one row per refund");
    }
}

#[tokio::test]
async fn a_charge_without_its_refunds_refunds_by_its_amount() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, pi) = paid_order(&edge, "charge_only").await;
    let t = chrono::Utc::now().timestamp();
    let mut partial = charge_refunded_with(&pi, 2000, &[], t);
    partial["data"]["object"]["amount_refunded"] = serde_json::json!(500);
    partial["data"]["object"]["refunds"] = Value::Null;
    send(&edge, &partial).await;
    assert_eq!(money(&db, id).await, m("partially_refunded", 500, None));
    let mut full = charge_refunded_with(&pi, 2000, &[], t + 1);
    full["data"]["object"]["amount_refunded"] = serde_json::json!(2000);
    full["data"]["object"]["refunded"] = serde_json::json!(true);
    full["data"]["object"]["refunds"] = Value::Null;
    send(&edge, &full).await;
    assert_eq!(money(&db, id).await, m("refunded", 2000, None));
    // The older charge snapshot arriving late changes nothing.
    send(&edge, &partial).await;
    assert_eq!(money(&db, id).await, m("refunded", 2000, None));
}

#[tokio::test]
async fn a_refund_known_before_the_payment_settles_when_it_is_paid() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let session = Session::new("cs_test_money_refund_first");
    let pi = session.payment_intent.clone().expect("pi");
    let id = insert_order(
        &db,
        NewOrder {
            session_id: Some(session.id.clone()),
            payment_intent: Some(pi.clone()),
            ..Default::default()
        },
    )
    .await;
    let refund = Refund::new(&pi, 500);
    send(
        &edge,
        &refund_event("refund.created", &refund, session.created + 60),
    )
    .await;
    assert_eq!(
        money(&db, id).await,
        m("pending", 500, None),
        "recorded, but a pending order is not refunded"
    );
    send(
        &edge,
        &session_event("checkout.session.completed", &session),
    )
    .await;
    assert_eq!(money(&db, id).await, m("partially_refunded", 500, None));
    assert_eq!(
        notifications(&db, id).await,
        vec![
            "order.paid pending->paid 500 -",
            "order.partially_refunded paid->partially_refunded 500 -",
        ],
        "the shop hears of the payment, then of the refund"
    );
}

#[tokio::test]
async fn disputes_open_and_close_without_touching_paid() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let (id, pi) = paid_order(&edge, "dispute").await;
    let t = chrono::Utc::now().timestamp();
    let mut dispute = Dispute::new(&pi, 2000);
    send(&edge, &dispute_event("charge.dispute.created", &dispute, t)).await;
    assert_eq!(money(&db, id).await, m("paid", 0, Some("needs_response")));
    let row = db
        .query_one(
            "SELECT reason, extract(epoch FROM evidence_due_by)::bigint, charge FROM disputes
             WHERE id = $1",
            &[&dispute.id],
        )
        .await
        .expect("dispute row");
    assert_eq!(row.get::<_, String>(0), "fraudulent");
    assert_eq!(row.get::<_, i64>(1), dispute.due_by);
    assert_eq!(row.get::<_, String>(2), dispute.charge);
    dispute.status = "under_review";
    send(
        &edge,
        &dispute_event("charge.dispute.updated", &dispute, t + 1),
    )
    .await;
    send(
        &edge,
        &dispute_event("charge.dispute.funds_withdrawn", &dispute, t + 1),
    )
    .await;
    assert_eq!(money(&db, id).await, m("paid", 0, Some("under_review")));
    dispute.status = "lost";
    send(
        &edge,
        &dispute_event("charge.dispute.closed", &dispute, t + 2),
    )
    .await;
    // An older snapshot, redelivered late, never reopens it.
    dispute.status = "needs_response";
    send(&edge, &dispute_event("charge.dispute.created", &dispute, t)).await;
    assert_eq!(
        money(&db, id).await,
        m("paid", 0, Some("lost")),
        "a lost dispute is shown as such; paid is never changed by a dispute"
    );
    assert_eq!(
        notifications(&db, id).await,
        vec![
            "order.paid pending->paid 0 -",
            "order.dispute_opened paid->paid 0 needs_response",
            "order.dispute_opened paid->paid 0 under_review",
            "order.dispute_closed paid->paid 0 lost",
        ],
        "every change of the dispute's status is notified once"
    );
    // Support sees it: the order's money line and the dispute with its reason and deadline.
    let pool = common::db::pool(&edge.db.db_config()).expect("pool");
    let timeline =
        reconciler::inspect::inspect(&pool, None, &reconciler::inspect::Target::Order(id))
            .await
            .expect("timeline");
    let text = reconciler::inspect::render_text(&timeline);
    assert!(text.contains("dispute lost"), "{text}");
    assert!(text.contains(&dispute.id), "{text}");
    assert!(text.contains("reason fraudulent"), "{text}");
    assert!(text.contains("evidence due"), "{text}");
    let metrics = tests::http::get(edge.admin, "/metrics").await.text();
    assert!(metrics.contains("edge_disputes_total{status=\"lost\"}"));
    assert!(metrics.contains("edge_refunds_total{status=\"succeeded\"}"));
}

#[tokio::test]
async fn money_events_of_an_unknown_payment_wait_as_orphans() {
    let edge = TestEdge::spawn().await;
    let db = edge.db.client().await;
    let refund = Refund::new("pi_unknown_money", 500);
    let event = refund_event("refund.created", &refund, chrono::Utc::now().timestamp());
    send(&edge, &event).await;
    let row = db
        .query_one(
            "SELECT order_id IS NULL FROM payment_events WHERE stripe_event_id = $1",
            &[&event["id"].as_str().expect("id")],
        )
        .await
        .expect("ledger row");
    assert!(row.get::<_, bool>(0), "kept with no order, as an orphan");
    let n: i64 = db
        .query_one("SELECT count(*) FROM refunds", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "no refund row without its order");
}

/// A deterministic generator for the permutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The events of one refund and one dispute of `pi`, as Stripe would send them over time: created
/// pending, succeeded, then failed; a dispute opened, reviewed, won; a charge.refunded between.
fn lifecycle(pi: &str, n: usize) -> Vec<Value> {
    let t = 1_760_000_000;
    let mut refund = Refund::new(pi, 800);
    refund.id = format!("re_perm_{n}");
    let mut other = Refund::new(pi, 1200);
    other.id = format!("re_perm_other_{n}");
    let mut dispute = Dispute::new(pi, 2000);
    dispute.id = format!("du_perm_{n}");
    dispute.due_by = t + 86_400;
    let mut events = Vec::new();
    refund.status = "pending";
    events.push(refund_event("refund.created", &refund, t));
    refund.status = "succeeded";
    events.push(refund_event("refund.updated", &refund, t + 10));
    events.push(refund_event("refund.created", &other, t + 10));
    events.push(charge_refunded_with(
        pi,
        2000,
        &[refund.clone(), other.clone()],
        t + 10,
    ));
    refund.status = "failed";
    events.push(refund_event("refund.failed", &refund, t + 20));
    events.push(dispute_event("charge.dispute.created", &dispute, t + 5));
    dispute.status = "under_review";
    events.push(dispute_event("charge.dispute.updated", &dispute, t + 15));
    dispute.status = "won";
    events.push(dispute_event("charge.dispute.closed", &dispute, t + 25));
    events
}

/// The rows a sequence left, without the order ids and times of writing.
async fn rows_of(db: &Client, id: Uuid) -> Vec<String> {
    let mut rows: Vec<String> = db
        .query(
            "SELECT 'refund ' || id || ' ' || status || ' ' || amount || ' ' || stripe_created_at
             FROM refunds WHERE order_id = $1
             UNION ALL
             SELECT 'dispute ' || id || ' ' || status || ' ' || amount || ' ' || stripe_created_at
                 || ' ' || evidence_due_by
             FROM disputes WHERE order_id = $1
             UNION ALL
             SELECT 'order ' || status || ' ' || amount_refunded || ' '
                 || coalesce(dispute_status, '-')
             FROM orders WHERE id = $1",
            &[&id],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn any_permutation_with_duplicates_ends_in_the_sorted_rows() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let meta = BatchMeta {
        source: Source::Webhook,
        expect_livemode: None,
    };
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut want: Option<Vec<String>> = None;
    for n in 0..60 {
        // Each run has its own paid order and payment intent, and the same objects' events.
        let pi = format!("pi_perm_{n}");
        let id = insert_order(
            &client,
            NewOrder {
                session_id: Some(format!("cs_test_perm_{n}")),
                status: Some("paid"),
                payment_intent: Some(pi.clone()),
                amount_total: Some(2000),
                ..Default::default()
            },
        )
        .await;
        let mut events = lifecycle(&pi, 0);
        for e in &mut events {
            // The objects are the same in every run but belong to this run's payment.
            rewrite_ids(e, n);
        }
        if n > 0 {
            // A random permutation, with random duplicates.
            for i in (1..events.len()).rev() {
                events.swap(i, rng.below(i + 1));
            }
            for _ in 0..rng.below(4) {
                let again = events[rng.below(events.len())].clone();
                events.insert(rng.below(events.len() + 1), again);
            }
        }
        let texts: Vec<String> = events.iter().map(Value::to_string).collect();
        let parsed: Vec<StripeEvent> = texts
            .iter()
            .map(|t| StripeEvent::parse_str(t).expect("event"))
            .collect();
        // In batches of random sizes, as the edge's group commit makes them.
        let mut at = 0;
        while at < parsed.len() {
            let size = 1 + rng.below(parsed.len() - at);
            let entries: Vec<BatchEntry<'_>> = (at..at + size)
                .map(|i| BatchEntry {
                    event: &parsed[i],
                    payload: &texts[i],
                    request_id: None,
                })
                .collect();
            let recorded = ledger::record(&pool, &entries, meta).await;
            assert!(recorded.failure.is_none(), "{:?}", recorded.failure);
            at += size;
        }
        let got: Vec<String> = rows_of(&client, id)
            .await
            .into_iter()
            .map(|r| r.replace(&format!("_run{n}"), ""))
            .collect();
        match &want {
            None => {
                // The failed refund (newest) outweighs the charge that counted it.
                assert!(
                    got.contains(&"order partially_refunded 1200 won".to_owned()),
                    "{got:?}"
                );
                want = Some(got);
            }
            Some(want) => assert_eq!(&got, want, "permutation {n}"),
        }
    }
}

/// Makes the object ids of a lifecycle unique to run `n` (`re_perm_0` → `re_perm_0_run{n}`), and
/// the event ids too, so that runs never share a ledger row.
fn rewrite_ids(event: &mut Value, n: usize) {
    let o = &mut event["data"]["object"];
    let suffix = format!("_run{n}");
    for key in ["id"] {
        if let Some(id) = o[key].as_str().map(str::to_owned)
            && (id.starts_with("re_perm") || id.starts_with("du_perm"))
        {
            o[key] = Value::String(id + &suffix);
        }
    }
    if let Some(list) = o["refunds"]["data"].as_array_mut() {
        for r in list {
            if let Some(id) = r["id"].as_str().map(str::to_owned) {
                r["id"] = Value::String(id + &suffix);
            }
        }
    }
    if let Some(id) = event["id"].as_str().map(str::to_owned) {
        event["id"] = Value::String(format!("{id}{suffix}"));
    }
}

#[tokio::test]
async fn the_database_ranks_statuses_as_the_code_does() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for status in [
        "pending",
        "requires_action",
        "succeeded",
        "failed",
        "canceled",
        "new_status",
    ] {
        let rank: i32 = client
            .query_one("SELECT ledger_refund_rank($1)", &[&status])
            .await
            .expect("rank")
            .get(0);
        assert_eq!(
            rank,
            i32::from(common::ledger::money::refund_rank(status)),
            "{status}"
        );
    }
    for status in [
        "warning_needs_response",
        "warning_under_review",
        "warning_closed",
        "needs_response",
        "under_review",
        "won",
        "lost",
        "prevented",
        "new_status",
    ] {
        let rank: i32 = client
            .query_one("SELECT ledger_dispute_rank($1)", &[&status])
            .await
            .expect("rank")
            .get(0);
        assert_eq!(
            rank,
            i32::from(common::ledger::money::dispute_rank(status)),
            "{status}"
        );
    }
}
