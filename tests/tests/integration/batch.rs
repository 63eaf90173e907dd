//! The batched ledger write (group commit) against the one-event path: the same event sequences,
//! cut into batches of every size, leave exactly the same orders, ledger rows and answers; and the
//! batch edge cases (duplicates, several moves of one order, concurrent overlapping batches).

use common::ledger::{self, Applied, BatchEntry, BatchMeta, LedgerConnection, Source};
use common::stripe::event::StripeEvent;
use serde_json::{Value, json};
use sim::objects::{
    Dispute, Refund, Session, charge_refunded, dispute_event, envelope, refund_event, session_event,
};
use tests::ledger::{
    NewOrder, event_rows, insert_order, one_backend_waits_for_a_lock, order, pending_order,
    writing_transactions,
};
use tests::oracle::{self, RecordMeta};
use tests::pg::TestDb;
use tokio_postgres::Client;
use uuid::Uuid;

/// A small deterministic generator (xorshift64*), so that a failing seed can be replayed.
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

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One order of a scenario, created identically in both databases.
struct ScenarioOrder {
    id: Uuid,
    session_id: String,
    payment_intent: String,
}

/// A signed-off event: its JSON text and parsed form.
struct Delivery {
    body: String,
    event: StripeEvent,
    request_id: String,
}

impl Delivery {
    fn new(value: &Value, request_id: String) -> Self {
        let body = value.to_string();
        let event = StripeEvent::parse(body.as_bytes()).expect("event");
        Self {
            body,
            event,
            request_id,
        }
    }
}

/// Webhook deliveries, any mode accepted.
const WEBHOOK: BatchMeta = BatchMeta {
    source: Source::Webhook,
    expect_livemode: None,
};

const STATUSES: [&str; 4] = ["pending", "paid", "failed", "expired"];

async fn create_orders(dbs: [&Client; 2], seed: u64, rng: &mut Rng) -> Vec<ScenarioOrder> {
    let mut orders = Vec::new();
    for i in 0..6 {
        let o = ScenarioOrder {
            id: Uuid::new_v4(),
            session_id: format!("cs_test_eq_{seed}_{i}"),
            payment_intent: format!("pi_eq_{seed}_{i}"),
        };
        let status = STATUSES[rng.below(STATUSES.len())];
        // Some orders expect another amount (an anomaly), some expect nothing.
        let amount: Option<i64> = [Some(2000), Some(1999), None][rng.below(3)];
        let currency = [Some("eur"), Some("EUR"), None][rng.below(3)];
        let known_intent = rng.chance(30).then(|| o.payment_intent.clone());
        for db in dbs {
            db.execute(
                "INSERT INTO orders (id, stripe_session_id, status, amount_total, currency, stripe_payment_intent_id)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&o.id, &o.session_id, &status, &amount, &currency, &known_intent],
            )
            .await
            .expect("order");
        }
        orders.push(o);
    }
    orders
}

/// A random event about one of `orders` (or about no order at all).
fn random_event(rng: &mut Rng, orders: &[ScenarioOrder], seed: u64, n: usize) -> Value {
    let id = format!("evt_eq_{seed}_{n}");
    let o = &orders[rng.below(orders.len())];
    let kind = rng.below(8);
    if kind == 0 {
        // A refund, full or partial, found by payment intent.
        let mut v = charge_refunded(&o.payment_intent, 2000, [2000, 500][rng.below(2)]);
        v["id"] = json!(id);
        return v;
    }
    if kind == 1 {
        // One of two refunds of the order, in some state, at some time.
        let mut refund = Refund::new(&o.payment_intent, [500, 1500][rng.below(2)]);
        refund.id = format!("re_eq_{seed}_{}_{}", o.session_id, rng.below(2));
        refund.status = ["pending", "succeeded", "failed", "canceled"][rng.below(4)];
        let mut v = refund_event(
            ["refund.created", "refund.updated", "refund.failed"][rng.below(3)],
            &refund,
            1_760_000_000 + rng.below(20) as i64,
        );
        v["id"] = json!(id);
        return v;
    }
    if kind == 2 {
        let mut dispute = Dispute::new(&o.payment_intent, 2000);
        dispute.id = format!("du_eq_{seed}_{}", o.session_id);
        dispute.status = ["needs_response", "under_review", "won", "lost"][rng.below(4)];
        let mut v = dispute_event(
            "charge.dispute.updated",
            &dispute,
            1_760_000_000 + rng.below(20) as i64,
        );
        v["id"] = json!(id);
        return v;
    }
    let mut session = Session::new(if rng.chance(10) {
        format!("cs_test_eq_unknown_{seed}_{n}")
    } else {
        o.session_id.clone()
    });
    session.payment_intent = Some(o.payment_intent.clone());
    session.created = 1_760_000_000 + n as i64;
    session.livemode = rng.chance(10);
    match rng.below(4) {
        0 => session.client_reference_id = Some(o.id.to_string()),
        1 => session.metadata_order_id = Some(o.id.to_string()),
        _ => {}
    }
    if rng.chance(20) {
        session.payment_status = "unpaid";
    }
    if rng.chance(10) {
        session.amount_total = Some(1999);
    }
    let event_type = [
        "checkout.session.completed",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "customer.created",
        "checkout.session.completed",
    ][kind - 1];
    envelope(
        &id,
        event_type,
        session.created + 5,
        session.livemode,
        session.object(),
    )
}

/// Orders and ledger rows of a scenario, in a comparable form.
async fn snapshot(db: &Client, seed: u64) -> (Vec<String>, Vec<String>) {
    let orders = db
        .query(
            "SELECT id::text || ' ' || status || ' ' || coalesce(paid_at::text, '-') || ' '
                || coalesce(stripe_payment_intent_id, '-') || ' ' || coalesce(anomaly, '-') || ' '
                || amount_refunded || ' ' || coalesce(dispute_status, '-') || ' '
                || coalesce(amount_total::text, '-')
             FROM orders WHERE stripe_session_id LIKE 'cs_test_eq\\_' || $1 || '\\_%' ORDER BY id",
            &[&seed.to_string()],
        )
        .await
        .expect("orders")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let events: Vec<String> = db
        .query(
            "SELECT stripe_event_id || ' ' || event_type || ' ' || coalesce(order_id::text, '-') || ' '
                || coalesce(stripe_session_id, '-') || ' ' || coalesce(stripe_object_id, '-') || ' '
                || livemode || ' ' || stripe_created_at || ' ' || source || ' '
                || coalesce(request_id, '-') || ' ' || md5(payload::text)
             FROM payment_events WHERE stripe_event_id LIKE 'evt_eq\\_' || $1 || '\\_%'
             ORDER BY stripe_event_id",
            &[&seed.to_string()],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let transitions = db
        .query(
            "SELECT t.order_id::text || ' ' || t.kind || ' ' || t.from_status || ' ' || t.to_status
                || ' ' || t.stripe_event_id || ' ' || t.occurred_at || ' ' || t.livemode || ' '
                || coalesce(t.stripe_session_id, '-') || ' ' || coalesce(t.amount_total::text, '-')
                || ' ' || coalesce(t.currency, '-')
             FROM order_transitions AS t
             WHERE t.stripe_event_id LIKE 'evt_eq\\_' || $1 || '\\_%'
             ORDER BY t.order_id, t.id",
            &[&seed.to_string()],
        )
        .await
        .expect("transitions")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<String>>();
    (orders, events.into_iter().chain(transitions).collect())
}

fn entries(deliveries: &[Delivery]) -> Vec<BatchEntry<'_>> {
    deliveries
        .iter()
        .map(|d| BatchEntry {
            event: &d.event,
            payload: &d.body,
            request_id: Some(&d.request_id),
        })
        .collect()
}

#[tokio::test]
async fn batches_of_any_size_give_exactly_the_one_event_results() {
    let (one_db, batch_db) = (TestDb::new().await, TestDb::new().await);
    let (one, batched) = (one_db.client().await, batch_db.client().await);
    let one_pool = common::db::pool(&one_db.db_config()).expect("pool");
    let batch_pool = common::db::pool(&batch_db.db_config()).expect("pool");
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let orders = create_orders([&one, &batched], seed, &mut rng).await;
        let expect_livemode = [None, Some(false)][rng.below(2)];
        let mut values: Vec<Value> = Vec::new();
        for n in 0..40 {
            // Redeliveries of an earlier event, as Stripe does.
            if !values.is_empty() && rng.chance(15) {
                let again = values[rng.below(values.len())].clone();
                values.push(again);
            } else {
                values.push(random_event(&mut rng, &orders, seed, n));
            }
        }
        let deliveries: Vec<Delivery> = values
            .iter()
            .enumerate()
            .map(|(n, v)| Delivery::new(v, format!("req-{seed}-{n}")))
            .collect();

        let mut want: Vec<Applied> = Vec::new();
        for d in &deliveries {
            let meta = RecordMeta {
                source: Source::Webhook,
                request_id: Some(&d.request_id),
                expect_livemode,
            };
            want.push(
                oracle::record(&one_pool, &d.event, &d.body, &meta)
                    .await
                    .expect("one event"),
            );
        }

        let meta = BatchMeta {
            source: Source::Webhook,
            expect_livemode,
        };
        let mut got: Vec<Applied> = Vec::new();
        let mut rest = &deliveries[..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let size = if seed % 5 == 0 {
                rest.len()
            } else {
                (1 + rng.below(12)).min(rest.len())
            };
            let (batch, tail) = rest.split_at(size);
            sizes.push(size);
            got.extend(
                ledger::record(&batch_pool, &entries(batch), meta)
                    .await
                    .applied()
                    .expect("batch"),
            );
            rest = tail;
        }

        assert_eq!(got, want, "answers, seed {seed}, batches {sizes:?}");
        assert_eq!(
            snapshot(&batched, seed).await,
            snapshot(&one, seed).await,
            "database state, seed {seed}, batches {sizes:?}"
        );
    }
    let outbox: i64 = batched
        .query_one("SELECT count(*) FROM order_transitions", &[])
        .await
        .expect("count")
        .get(0);
    assert!(
        outbox > 40,
        "the sequences moved orders: {outbox} transitions"
    );
}

#[tokio::test]
async fn duplicates_within_a_batch_and_already_in_the_ledger_are_answered_as_duplicates() {
    let db = TestDb::new().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let client = db.client().await;
    let sessions: Vec<Session> = (0..3)
        .map(|i| Session::new(format!("cs_test_dupbatch_{i}")))
        .collect();
    let mut ids = Vec::new();
    for s in &sessions {
        ids.push(pending_order(&client, &s.id).await);
    }
    let events: Vec<Value> = sessions
        .iter()
        .map(|s| session_event("checkout.session.completed", s))
        .collect();
    let meta = WEBHOOK;
    let earlier = [Delivery::new(&events[2], "req-earlier".into())];
    ledger::record(&pool, &entries(&earlier), meta)
        .await
        .applied()
        .expect("first delivery");

    // e0, e0 again, e1, e2 (already recorded), e1 again.
    let deliveries: Vec<Delivery> = [0, 0, 1, 2, 1]
        .iter()
        .enumerate()
        .map(|(n, &i)| Delivery::new(&events[i], format!("req-dup-{n}")))
        .collect();
    let applied = ledger::record(&pool, &entries(&deliveries), meta)
        .await
        .applied()
        .expect("batch");
    let duplicate: Vec<bool> = applied.iter().map(|a| a.duplicate).collect();
    assert_eq!(duplicate, [false, true, false, true, true]);
    let transitions = applied.iter().filter(|a| a.transition.is_some()).count();
    assert_eq!(transitions, 2, "one transition per new event: {applied:?}");
    for (a, &i) in applied.iter().zip(&[0, 0, 1, 2, 1]) {
        assert_eq!(a.order_id, Some(ids[i]), "every answer names its order");
    }
    for (i, e) in events.iter().enumerate() {
        let id = e["id"].as_str().expect("id");
        let rows = event_rows(&client, id).await;
        assert_eq!(rows.len(), 1, "exactly one row for {id}");
        let first = if i == 2 {
            "req-earlier"
        } else {
            ["req-dup-0", "req-dup-2"][i]
        };
        assert_eq!(rows[0].request_id.as_deref(), Some(first));
        assert_eq!(order(&client, ids[i]).await.status, "paid");
    }
}

#[tokio::test]
async fn one_order_moved_three_times_in_one_batch_moves_as_three_transactions_would() {
    let db = TestDb::new().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let client = db.client().await;
    let mut session = Session::new("cs_test_three_moves");
    session.payment_intent = Some("pi_three_moves".into());
    let id = insert_order(
        &client,
        NewOrder {
            session_id: Some(session.id.clone()),
            amount_total: Some(2000),
            currency: Some("eur".into()),
            ..Default::default()
        },
    )
    .await;
    // The async payment fails, then succeeds, then the charge is refunded in full: the refund is
    // found by the payment intent that the first event of this same batch recorded.
    let failed = session_event("checkout.session.async_payment_failed", &session);
    let succeeded = session_event("checkout.session.async_payment_succeeded", &session);
    let refunded = charge_refunded("pi_three_moves", 2000, 2000);
    let deliveries: Vec<Delivery> = [&failed, &succeeded, &refunded]
        .iter()
        .enumerate()
        .map(|(n, v)| Delivery::new(v, format!("req-move-{n}")))
        .collect();
    let applied = ledger::record(&pool, &entries(&deliveries), WEBHOOK)
        .await
        .applied()
        .expect("batch");
    use common::ledger::OrderStatus::*;
    let moves: Vec<_> = applied.iter().map(|a| a.transition).collect();
    assert_eq!(
        moves,
        [
            Some((Pending, Failed)),
            Some((Failed, Paid)),
            Some((Paid, Refunded))
        ]
    );
    assert!(applied.iter().all(|a| a.order_id == Some(id) && !a.orphan));
    let now = order(&client, id).await;
    assert_eq!(now.status, "refunded");
    assert_eq!(now.payment_intent.as_deref(), Some("pi_three_moves"));
    assert!(now.paid_at.is_some());
    let refund_id = refunded["id"].as_str().expect("id");
    assert_eq!(
        event_rows(&client, refund_id).await[0].order_id,
        Some(id),
        "the refund is linked to the order it moved"
    );
    // The order's update and the events were written by one transaction (this was the pool
    // connection's first batch, when the update statement is still being prepared).
    let writers: i64 = client
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM (
                 SELECT xmin FROM orders WHERE id = $1
                 UNION ALL SELECT xmin FROM payment_events WHERE order_id = $1) AS w",
            &[&id],
        )
        .await
        .expect("xmin")
        .get(0);
    assert_eq!(writers, 1, "one transaction wrote the events and the order");
}

#[tokio::test]
async fn concurrent_batches_over_the_same_orders_and_events_apply_each_event_once() {
    let db = TestDb::new().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let client = db.client().await;
    let mut values = Vec::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let s = Session::new(format!("cs_test_overlap_{i}"));
        ids.push(pending_order(&client, &s.id).await);
        values.push(session_event("checkout.session.completed", &s));
    }
    // Four writers get the same 40 events in different orders, at the same time.
    let tasks: Vec<_> = (0..4u64)
        .map(|w| {
            let pool = pool.clone();
            let mut order: Vec<Value> = values.clone();
            let mut rng = Rng(w * 7919 + 1);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            tokio::spawn(async move {
                let deliveries: Vec<Delivery> = order
                    .iter()
                    .map(|v| Delivery::new(v, format!("req-writer-{w}")))
                    .collect();
                ledger::record(&pool, &entries(&deliveries), WEBHOOK)
                    .await
                    .applied()
                    .map(|applied| applied.iter().filter(|a| !a.duplicate).count())
            })
        })
        .collect();
    let mut new_events = 0;
    for t in tasks {
        new_events += t
            .await
            .expect("task")
            .expect("no batch failed (no deadlock)");
    }
    assert_eq!(new_events, 40, "each event is new exactly once");
    let (rows, paid): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM payment_events),
                        (SELECT count(*) FROM orders WHERE status = 'paid')",
                &[],
            )
            .await
            .expect("counts");
        (r.get(0), r.get(1))
    };
    assert_eq!((rows, paid), (40, 40));
    assert_eq!(
        tests::ledger::paid_notifications(&client, "cs_test_overlap_%").await,
        (40, 0),
        "one notification per order"
    );
}

/// Two batches on one connection, as a writer's two lanes run them: `first` is sent in full and
/// then held by advisory lock 7 (which the test holds) inside Postgres; `second` must get the
/// turn meanwhile and queue its transaction behind `first`'s `COMMIT`. Then `first` is let go,
/// and both results are returned.
async fn two_lanes(
    db: &TestDb,
    first: &[Delivery],
    second: &[Delivery],
) -> (
    Result<Vec<Applied>, ledger::LedgerError>,
    Result<Vec<Applied>, ledger::LedgerError>,
) {
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let holder = db.client().await;
    holder
        .execute("SELECT pg_advisory_lock(7)", &[])
        .await
        .expect("lock");
    let conn = LedgerConnection::get(&pool).await.expect("connection");
    let turn = tokio::sync::Mutex::new(());
    let first_turn = turn.lock().await;
    let (second_has_turn, turn_taken) = tokio::sync::oneshot::channel();
    let first_entries = entries(first);
    let first_done = async {
        let sent = conn.send(&first_entries, WEBHOOK).await;
        drop(first_turn);
        sent.recorded().await.applied()
    };
    let second_done = async {
        let second_turn = turn.lock().await;
        let _ = second_has_turn.send(());
        let second_entries = entries(second);
        let sent = conn.send(&second_entries, WEBHOOK).await;
        drop(second_turn);
        sent.recorded().await.applied()
    };
    let release = async {
        tokio::time::timeout(std::time::Duration::from_secs(10), turn_taken)
            .await
            .expect("the second lane gets the turn while the first batch is still open")
            .expect("turn");
        assert!(
            one_backend_waits_for_a_lock(&holder).await,
            "the first batch is held inside Postgres"
        );
        holder
            .execute("SELECT pg_advisory_unlock(7)", &[])
            .await
            .expect("unlock");
    };
    let (first, second, ()) = tokio::join!(first_done, second_done, release);
    (first, second)
}

/// One paid-session delivery for a new pending order named `name`; its event id is `event_id`.
async fn session_paid(client: &Client, name: &str, event_id: &str) -> (Uuid, Delivery) {
    let session = Session::new(format!("cs_test_{name}"));
    let id = pending_order(client, &session.id).await;
    let mut value = session_event("checkout.session.completed", &session);
    value["id"] = json!(event_id);
    (id, Delivery::new(&value, format!("req-{name}")))
}

#[tokio::test]
async fn a_batch_sent_behind_a_pending_commit_on_the_same_connection_commits_on_its_own() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // The first batch's COMMIT waits for the test (a deferred check takes advisory lock 7).
    client
        .batch_execute(
            "CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_advisory_xact_lock(7); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER wait_for_test AFTER INSERT ON payment_events
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
               WHEN (NEW.stripe_event_id LIKE 'evt_held%') EXECUTE FUNCTION wait_for_test();",
        )
        .await
        .expect("trigger");
    let (held_order, held) = session_paid(&client, "lane_held", "evt_held_1").await;
    let (next_order, next) = session_paid(&client, "lane_next", "evt_next_1").await;

    let (first, second) = two_lanes(
        &db,
        std::slice::from_ref(&held),
        std::slice::from_ref(&next),
    )
    .await;

    assert!(!first.expect("first batch")[0].duplicate);
    assert!(!second.expect("second batch")[0].duplicate);
    assert_eq!(order(&client, held_order).await.status, "paid");
    assert_eq!(order(&client, next_order).await.status, "paid");
    assert_eq!(
        writing_transactions(&client, &["evt_held_1", "evt_next_1"]).await,
        2,
        "each batch is its own transaction"
    );
}

#[tokio::test]
async fn a_batch_failing_after_its_commit_is_sent_leaves_the_batch_behind_it_unharmed() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // The first batch's order update waits for the test, then is refused.
    client
        .batch_execute(
            "CREATE FUNCTION refuse_after_wait() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               PERFORM pg_advisory_xact_lock(7);
               RAISE EXCEPTION 'refused by test trigger';
             END $$;
             CREATE TRIGGER refuse_after_wait BEFORE UPDATE ON orders FOR EACH ROW
               WHEN (NEW.stripe_session_id LIKE 'cs_test_lane_refused%')
               EXECUTE FUNCTION refuse_after_wait();",
        )
        .await
        .expect("trigger");
    let (refused_order, refused) = session_paid(&client, "lane_refused", "evt_refused_1").await;
    let (next_order, next) = session_paid(&client, "lane_after", "evt_after_1").await;

    let (first, second) = two_lanes(
        &db,
        std::slice::from_ref(&refused),
        std::slice::from_ref(&next),
    )
    .await;

    let error = first.expect_err("the refused update fails its batch");
    assert!(error.is_statement_failure(), "{error}");
    assert_eq!(order(&client, refused_order).await.status, "pending");
    assert!(
        event_rows(&client, "evt_refused_1").await.is_empty(),
        "nothing of the failed batch is written"
    );
    assert!(!second.expect("the batch behind it")[0].duplicate);
    assert_eq!(order(&client, next_order).await.status, "paid");
    assert_eq!(event_rows(&client, "evt_after_1").await.len(), 1);
}

#[tokio::test]
async fn a_batch_dropped_before_its_commit_is_sent_never_hands_its_connection_on() {
    let db = TestDb::new().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let client = db.client().await;
    let (order_id, delivery) = session_paid(&client, "lane_dropped", "evt_dropped_1").await;
    // The batch's lock-and-insert waits for this row lock, inside its open transaction.
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.expect("begin");
    holder
        .execute(
            "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE",
            &[&order_id],
        )
        .await
        .expect("lock");
    let conn = LedgerConnection::get(&pool).await.expect("connection");
    let handed_on = std::sync::atomic::AtomicBool::new(false);
    let batch_entries = entries(std::slice::from_ref(&delivery));
    let batch = async {
        let sent = conn.send(&batch_entries, WEBHOOK).await;
        handed_on.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(sent)
    };
    let waiting = one_backend_waits_for_a_lock(&client);
    // The writer's future is dropped (a panic or a cancellation) while its transaction is open.
    let dropped_midway = tokio::select! {
        _ = batch => false,
        waited = waiting => waited,
    };

    assert!(
        dropped_midway,
        "the batch was dropped while waiting in its transaction"
    );
    assert!(
        !handed_on.load(std::sync::atomic::Ordering::SeqCst),
        "a transaction that may be open never hands its connection on"
    );
    // Its owner closes that connection (here with the whole pool); Postgres rolls the
    // transaction back.
    drop(conn);
    drop(pool);
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert!(event_rows(&client, "evt_dropped_1").await.is_empty());
    assert_eq!(order(&client, order_id).await.status, "pending");
}
