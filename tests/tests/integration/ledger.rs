//! The ledger function called directly: a write cancelled mid-transaction commits nothing and
//! never returns an open transaction to the pool.

use std::time::Duration;

use common::ledger::{self, Applied, BatchEntry, BatchMeta, LedgerError, Source};
use common::stripe::event::StripeEvent;
use deadpool_postgres::Pool;
use sim::objects::{Session, session_event};
use tests::ledger::{event_rows, order, pending_order};
use tests::pg::TestDb;

#[tokio::test]
async fn a_cancelled_write_commits_nothing_and_leaves_no_open_transaction() {
    let db = TestDb::new().await;
    let pool = common::db::pool(&db.db_config()).expect("pool");
    let session = Session::new("cs_test_cancel");
    let admin = db.client().await;
    let id = pending_order(&admin, &session.id).await;
    let event_json = session_event("checkout.session.completed", &session);
    let body = event_json.to_string();
    let event = StripeEvent::parse(body.as_bytes()).expect("event");
    let meta = "cancel-test";

    // Another session holds the order's row lock: the write blocks inside its transaction.
    let mut blocker = db.client().await;
    let tx = blocker.transaction().await.expect("tx");
    tx.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .expect("lock");
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        record(&pool, &event, &body, meta),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the write was blocked and then cancelled"
    );
    tx.rollback().await.expect("release");

    // The discarded connection's backend exits once it sees the socket closed.
    let no_open_transaction = tests::http::eventually(Duration::from_secs(5), || async {
        let open: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        open == 0
    })
    .await;
    assert!(
        no_open_transaction,
        "no pooled connection is left inside a transaction"
    );
    assert!(event_rows(&admin, &event.id).await.is_empty());
    assert_eq!(order(&admin, id).await.status, "pending");

    // The pool keeps working, and the retried delivery is applied once.
    let applied = record(&pool, &event, &body, meta).await.expect("retry");
    assert!(!applied.duplicate);
    assert_eq!(order(&admin, id).await.status, "paid");
    let again = record(&pool, &event, &body, meta).await.expect("duplicate");
    assert!(again.duplicate);
}

/// One webhook event written as the edge writes it: a batch of one.
async fn record(
    pool: &Pool,
    event: &StripeEvent,
    body: &str,
    request_id: &str,
) -> Result<Applied, LedgerError> {
    let entry = BatchEntry {
        event,
        payload: body,
        request_id: Some(request_id),
    };
    let meta = BatchMeta {
        source: Source::Webhook,
        expect_livemode: None,
    };
    let mut applied = ledger::record(pool, &[entry], meta).await.applied()?;
    applied.pop().ok_or(LedgerError::OrderBusy)
}
