//! Group commit through the edge: requests that arrive while a commit runs share the next one and
//! each gets its own correct answer, also when one of their events fails or the edge shuts down
//! with the batch in flight. A row lock held by the test keeps the first commit waiting, so that
//! the batch that follows is known exactly.

use std::time::Duration;

use serde_json::Value;
use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{Reply, eventually};
use tests::ledger::{event_count, one_backend_waits_for_a_lock, order, pending_order};
use tests::pg::TestDb;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(10);

/// An edge with one writer, so that every queued event goes into the next batch.
async fn one_writer_edge() -> TestEdge {
    TestEdge::builder()
        .env("EDGE_LEDGER_WRITERS", "1")
        .spawn()
        .await
}

/// A pending order and the `checkout.session.completed` event that pays it.
async fn paid_event(db: &Client, name: &str) -> (Uuid, Value) {
    let session = Session::new(format!("cs_test_gc_{name}"));
    let id = pending_order(db, &session.id).await;
    (id, session_event("checkout.session.completed", &session))
}

/// `n` pending orders named `{prefix}_{i}` and their paying events.
async fn paid_events(db: &Client, prefix: &str, n: usize) -> Vec<(Uuid, Value)> {
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        events.push(paid_event(db, &format!("{prefix}_{i}")).await);
    }
    events
}

/// Holds a row lock on `order` until dropped or rolled back: the batch that contains an event
/// of that order waits inside its transaction.
async fn hold_order(db: &TestDb, order: Uuid) -> Client {
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.expect("begin");
    holder
        .execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", &[&order])
        .await
        .expect("lock");
    holder
}

/// Delivers `blocker` while its order is locked, and returns once the writer's transaction waits
/// for that lock: every event delivered from now on queues for the next batch. Rolling back the
/// returned holder lets the writer go on.
async fn block_the_writer(
    edge: &TestEdge,
    db: &Client,
    (order, blocker): &(Uuid, Value),
) -> (Client, JoinHandle<Reply>) {
    let holder = hold_order(&edge.db, *order).await;
    let first = edge.spawn_webhook_json(blocker);
    assert!(
        one_backend_waits_for_a_lock(db).await,
        "the first batch waits for the held row lock"
    );
    (holder, first)
}

/// Waits until `n` events are queued for the writer.
async fn queued(edge: &TestEdge, n: usize) {
    let ready = eventually(WITHIN, || async { edge.state.writer.queued() == n }).await;
    assert!(
        ready,
        "{n} events queued (have {})",
        edge.state.writer.queued()
    );
}

/// Waits for every reply and checks that each is 200 for a new event.
async fn all_new(replies: Vec<JoinHandle<Reply>>) {
    for reply in replies {
        let reply = reply.await.expect("task");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["duplicate"], false);
    }
}

/// How many transactions wrote the ledger rows of these events.
async fn writing_transactions(db: &Client, events: &[&Value]) -> i64 {
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    tests::ledger::writing_transactions(db, &ids).await
}

#[tokio::test]
async fn requests_arriving_during_a_commit_share_the_next_one_with_correct_answers() {
    let edge = one_writer_edge().await;
    let db = edge.db.client().await;
    let blocker = paid_event(&db, "blocker").await;
    let (earlier_order, earlier) = paid_event(&db, "earlier").await;
    assert_eq!(edge.webhook_json(&earlier).await.status, 200);
    let fresh = paid_events(&db, "fresh", 10).await;
    let (tripled_order, tripled) = paid_event(&db, "tripled").await;

    let (holder, first) = block_the_writer(&edge, &db, &blocker).await;
    let fresh_replies: Vec<_> = fresh
        .iter()
        .map(|(_, e)| edge.spawn_webhook_json(e))
        .collect();
    let tripled_replies: Vec<_> = (0..3).map(|_| edge.spawn_webhook_json(&tripled)).collect();
    let earlier_reply = edge.spawn_webhook_json(&earlier);
    queued(&edge, 14).await;
    holder.batch_execute("ROLLBACK").await.expect("release");

    assert_eq!(first.await.expect("task").status, 200);
    all_new(fresh_replies).await;
    let mut duplicates = Vec::new();
    for reply in tripled_replies {
        let reply = reply.await.expect("task");
        assert_eq!(reply.status, 200);
        duplicates.push(reply.json()["duplicate"] == true);
    }
    duplicates.sort();
    assert_eq!(
        duplicates,
        [false, true, true],
        "one of three copies in a batch is new"
    );
    let earlier_reply = earlier_reply.await.expect("task");
    assert_eq!(earlier_reply.status, 200);
    assert_eq!(earlier_reply.json()["duplicate"], true);

    for (id, _) in &fresh {
        assert_eq!(order(&db, *id).await.status, "paid");
    }
    for id in [blocker.0, earlier_order, tripled_order] {
        assert_eq!(order(&db, id).await.status, "paid");
    }
    assert_eq!(event_count(&db).await, 13, "one row per distinct event");
    let mut batch: Vec<&Value> = fresh.iter().map(|(_, e)| e).collect();
    batch.push(&tripled);
    assert_eq!(
        writing_transactions(&db, &batch).await,
        1,
        "the 11 events that arrived during the blocked commit were committed together"
    );
}

#[tokio::test]
async fn a_failing_event_gets_its_own_error_and_its_batch_is_still_recorded() {
    let edge = one_writer_edge().await;
    let db = edge.db.client().await;
    // A trigger that refuses one event: a stand-in for any row the database rejects.
    db.batch_execute(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.payload->'data'->'object'->>'id' LIKE 'cs_test_gc_poison%' THEN
             RAISE EXCEPTION 'refused by test trigger';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON payment_events
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .await
    .expect("trigger");
    let blocker = paid_event(&db, "blocker").await;
    let innocent = paid_events(&db, "innocent", 6).await;
    let (poison_order, poison) = paid_event(&db, "poison").await;

    let (holder, first) = block_the_writer(&edge, &db, &blocker).await;
    let mut replies: Vec<_> = innocent[..3]
        .iter()
        .map(|(_, e)| edge.spawn_webhook_json(e))
        .collect();
    let poison_reply = edge.spawn_webhook_json(&poison);
    replies.extend(
        innocent[3..]
            .iter()
            .map(|(_, e)| edge.spawn_webhook_json(e)),
    );
    queued(&edge, 7).await;
    holder.batch_execute("ROLLBACK").await.expect("release");

    assert_eq!(first.await.expect("task").status, 200);
    all_new(replies).await;
    let poison_reply = poison_reply.await.expect("task");
    assert_eq!(poison_reply.status, 500);
    assert_eq!(poison_reply.json()["error"]["code"], "storage_unavailable");
    for (id, _) in &innocent {
        assert_eq!(order(&db, *id).await.status, "paid");
    }
    assert_eq!(order(&db, poison_order).await.status, "pending");
    assert_eq!(event_count(&db).await, 7, "every event but the refused one");
}

#[tokio::test]
async fn shutdown_with_a_batch_in_flight_still_answers_every_request_after_its_commit() {
    let mut edge = one_writer_edge().await;
    let db = edge.db.client().await;
    let blocker = paid_event(&db, "blocker").await;
    let queued_events = paid_events(&db, "queued", 8).await;

    let (holder, first) = block_the_writer(&edge, &db, &blocker).await;
    let replies: Vec<_> = queued_events
        .iter()
        .map(|(_, e)| edge.spawn_webhook_json(e))
        .collect();
    queued(&edge, 8).await;

    // SIGTERM while one batch waits in its transaction and eight events wait for the next.
    edge.trigger_stop();
    let draining = eventually(WITHIN, || async {
        tests::http::get(edge.admin, "/ready").await.status == 503
    })
    .await;
    assert!(draining, "the edge is draining");
    holder.batch_execute("ROLLBACK").await.expect("release");

    assert_eq!(first.await.expect("task").status, 200);
    all_new(replies).await;
    edge.stopped().await;
    for (id, _) in &queued_events {
        assert_eq!(order(&db, *id).await.status, "paid");
    }
    assert_eq!(event_count(&db).await, 9);
}

#[tokio::test]
async fn a_writer_whose_connection_is_lost_opens_a_new_one() {
    let edge = one_writer_edge().await;
    let db = edge.db.client().await;
    let (before_order, before) = paid_event(&db, "before_loss").await;
    assert_eq!(edge.webhook_json(&before).await.status, 200);

    // Every backend of the edge goes, the writer's pipelined connection among them.
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .expect("terminate");
    let (after_order, after) = paid_event(&db, "after_loss").await;
    // Stripe redelivers until it gets a 2xx; a delivery may still meet the lost connection.
    let recorded = eventually(WITHIN, || async {
        edge.webhook_json(&after).await.status == 200
    })
    .await;

    assert!(recorded, "the writer records again on a new connection");
    assert_eq!(order(&db, before_order).await.status, "paid");
    assert_eq!(order(&db, after_order).await.status, "paid");
    assert_eq!(event_count(&db).await, 2);
}
