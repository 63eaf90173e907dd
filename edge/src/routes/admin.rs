//! The admin listener's handlers: `/metrics` (pool gauges refreshed at scrape time), `/live` and
//! `/ready`.

use common::admin::{self, NotReady};
use http::Response;

use std::sync::atomic::Ordering;

use crate::metrics::{CloseReason, Listener, PoolName, PoolState};
use crate::resources::ADMIN_CONNECTIONS;
use crate::routes::Body;
use crate::state::State;

/// Prometheus text exposition; pool, connection, budget and readiness gauges are refreshed at
/// scrape time.
pub fn metrics(state: &State) -> Response<Body> {
    let m = &state.metrics;
    for (pool, status) in [
        (PoolName::Writer, state.writer.pool().status()),
        (PoolName::Admin, state.pool.status()),
    ] {
        m.pool.set((pool, PoolState::Max), status.max_size as f64);
        m.pool.set((pool, PoolState::Open), status.size as f64);
        m.pool.set((pool, PoolState::Idle), status.available as f64);
        m.pool
            .set((pool, PoolState::Waiting), status.waiting as f64);
    }
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
        m.connections_closed.absolute(
            (listener, CloseReason::Evicted),
            stats.evicted.load(Ordering::Relaxed),
        );
    }
    m.body_budget_used
        .set_value(state.body_budget.used() as f64);
    m.ready
        .set_value(f64::from(u8::from(readiness(state).is_ok())));
    admin::metrics()
}

/// Ready = not draining, the group-commit writers are running and making progress, and the
/// database (as last probed, at most a second ago) answers, has a current schema and accepts
/// writes. No query per call.
pub fn readiness(state: &State) -> Result<i32, NotReady> {
    if state.is_draining() {
        return Err(NotReady::Draining);
    }
    state.writer.health()?;
    state.readiness.database()
}

/// `GET /ready`.
pub fn ready(state: &State) -> Response<Body> {
    let answer = readiness(state);
    if let Err(why) = answer
        && why != NotReady::Draining
    {
        tracing::warn!(reason = why.reason(), "not ready");
    }
    admin::ready(answer)
}
