//! The admin listener's handlers: `/metrics` (pool gauges refreshed at scrape time), `/live` and
//! `/ready`.

use common::admin::{self, NotReady};
use http::Response;

use std::sync::atomic::Ordering;

use crate::metrics::{CloseReason, Listener, PoolState};
use crate::resources::ADMIN_CONNECTIONS;
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
    let m = &state.metrics;
    for (listener, stats, limit) in [
        (
            Listener::Public,
            &state.public_stats,
            state.limits.max_connections,
        ),
        (Listener::Admin, &state.admin_stats, ADMIN_CONNECTIONS),
    ] {
        m.connections_open
            .set(listener, stats.open.load(Ordering::Relaxed) as f64);
        m.connection_limit.set(listener, limit as f64);
        m.accept_errors
            .absolute(listener, stats.accept_errors.load(Ordering::Relaxed));
        m.connections_closed.absolute(
            (listener, CloseReason::HeadTimeout),
            stats.head_timeouts.load(Ordering::Relaxed),
        );
        m.connections_closed.absolute(
            (listener, CloseReason::Idle),
            stats.idle_closed.load(Ordering::Relaxed),
        );
    }
    m.body_budget_used
        .set_value(state.body_budget.used() as f64);
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
