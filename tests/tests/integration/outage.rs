//! The database goes away under a running edge (its TCP link is cut): webhooks get 5xx and nothing
//! is written, `/ready` turns 503, and once the link returns the same edge records the retried
//! delivery, without a restart.

use std::time::Duration;

use sim::objects::{Session, session_event};
use tests::edge::TestEdge;
use tests::http::{eventually, get};
use tests::ledger::{event_count, event_rows, order, pending_order};

#[tokio::test]
async fn database_outage_answers_5xx_and_recovers_without_restart() {
    let edge = TestEdge::builder().through_fault_proxy().spawn().await;
    let fault = edge.fault.as_ref().expect("fault proxy");
    let db = edge.db.client().await; // direct, not through the proxy
    let warm = session_event(
        "checkout.session.completed",
        &Session::new("cs_test_before"),
    );
    assert_eq!(edge.webhook_json(&warm).await.status, 200);
    assert_eq!(get(edge.admin, "/ready").await.status, 200);

    let session = Session::new("cs_test_outage");
    let id = pending_order(&db, &session.id).await;
    let event = session_event("checkout.session.completed", &session);
    fault.cut();
    for _ in 0..3 {
        let reply = edge.webhook_json(&event).await;
        assert!(
            reply.status.is_server_error(),
            "{}: {}",
            reply.status,
            reply.text()
        );
        assert_eq!(reply.json()["error"]["code"], "storage_unavailable");
        assert!(!reply.text().contains("tokio") && !reply.text().contains("postgres"));
    }
    // `/ready` answers from a probe that runs every second.
    let reported = eventually(Duration::from_secs(5), || async {
        let ready = get(edge.admin, "/ready").await;
        ready.status == 503 && ready.json()["status"] == "unavailable"
    })
    .await;
    assert!(reported, "/ready reports the outage");
    assert_eq!(
        event_count(&db).await,
        1,
        "nothing written during the outage"
    );
    assert_eq!(order(&db, id).await.status, "pending");

    fault.restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        edge.webhook_json(&event).await.status == 200
    })
    .await;
    assert!(
        recovered,
        "the retried delivery succeeds once the database is back"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(edge.admin, "/ready").await.status == 200
        })
        .await
    );
    assert_eq!(
        event_rows(&db, event["id"].as_str().expect("id"))
            .await
            .len(),
        1
    );
    assert_eq!(order(&db, id).await.status, "paid");
}
