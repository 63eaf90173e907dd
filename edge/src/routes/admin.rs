//! The admin listener's handlers: `/metrics` (Prometheus text), `/live` and `/ready`.

use std::time::Duration;

use common::db;
use common::metrics as names;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json as value;

use crate::routes::{Body, full, json};
use crate::state::State;

/// `/ready` answers 503 when the database has not answered within this time.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Prometheus text exposition; pool gauges are refreshed at scrape time.
pub fn metrics(state: &State) -> Response<Body> {
    // Both pools together (readiness checks and the group-commit writers), in the order of
    // `POOL_STATES`: max, open, idle, waiting.
    let (a, b) = (state.pool.status(), state.ledger.pool().status());
    state.metrics.pool([
        a.max_size + b.max_size,
        a.size + b.size,
        a.available + b.available,
        a.waiting + b.waiting,
    ]);
    let mut resp = Response::new(full(names::render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The process is up.
pub fn live() -> Response<Body> {
    json(StatusCode::OK, &value!({ "status": "live" }))
}

/// Ready = not draining, every group-commit writer is running, the database answers, and its
/// schema is current.
pub async fn ready(state: &State) -> Response<Body> {
    if state.is_draining() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &value!({ "status": "draining" }),
        );
    }
    if !state.ledger.all_running() {
        tracing::error!("not ready: a ledger writer has stopped");
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &value!({ "status": "unavailable", "reason": "ledger_writer" }),
        );
    }
    let check = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        db::check_schema(&client).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(version)) => json(
            StatusCode::OK,
            &value!({ "status": "ready", "schemaVersion": version }),
        ),
        Ok(Err(reason)) => {
            tracing::warn!(%reason, "not ready");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &value!({ "status": "unavailable", "reason": "database" }),
            )
        }
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &value!({ "status": "unavailable", "reason": "database_timeout" }),
        ),
    }
}
