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

/// Ready = not draining, the group-commit writers are running and making progress, and the
/// database (as last probed, at most a second ago) answers, has a current schema and accepts
/// writes. No query per call.
pub fn ready(state: &State) -> Response<Body> {
    if state.is_draining() {
        return admin::ready(Err(NotReady::Draining));
    }
    if let Err(why) = state.writer.health() {
        tracing::warn!(reason = why.reason(), "not ready: the ledger writers");
        return admin::ready(Err(why));
    }
    admin::ready(state.readiness.database())
}
