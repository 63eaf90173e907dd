//! The admin listener's handlers: `/metrics` (pool gauges refreshed at scrape time), `/live` and
//! `/ready`.

use common::admin::{self, NotReady};
use http::Response;

use crate::metrics::PoolState;
use crate::routes::Body;
use crate::state::State;

/// Prometheus text exposition; pool gauges are refreshed at scrape time.
pub fn metrics(state: &State) -> Response<Body> {
    // Both pools together (readiness checks and the group-commit writers).
    let (a, b) = (state.pool.status(), state.writer.pool().status());
    let gauges = &state.metrics.pool;
    gauges.set(PoolState::Max, (a.max_size + b.max_size) as f64);
    gauges.set(PoolState::Open, (a.size + b.size) as f64);
    gauges.set(PoolState::Idle, (a.available + b.available) as f64);
    gauges.set(PoolState::Waiting, (a.waiting + b.waiting) as f64);
    admin::metrics()
}

/// Ready = not draining, every group-commit writer is running, the database answers, and its
/// schema is current.
pub async fn ready(state: &State) -> Response<Body> {
    if state.is_draining() {
        return admin::ready(Err(NotReady::Draining));
    }
    if !state.writer.all_running() {
        tracing::error!("not ready: a ledger writer has stopped");
        return admin::ready(Err(NotReady::LedgerWriter));
    }
    admin::ready(admin::database_ready(&state.pool).await)
}
