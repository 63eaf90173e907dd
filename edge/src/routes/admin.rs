//! What the edge adds to the shared admin listener (`common::admin`): its readiness reasons (the
//! group-commit writers) and the gauges refreshed at scrape time (pools, connections, body
//! budget, readiness). It serves no route of its own.

use std::sync::atomic::Ordering;

use common::admin::{self, NotReady, Routes};
use common::http::Body;
use common::telemetry::RequestId;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::metrics::{CloseReason, Listener, PoolName, PoolState};
use crate::state::State;

impl Routes for State {
    /// The group-commit writers are running and making progress.
    fn not_ready(&self) -> Result<(), NotReady> {
        self.writer.health()
    }

    fn before_scrape(&self, ready: bool) {
        let m = &self.metrics;
        for (pool, status) in [
            (PoolName::Writer, self.writer.pool().status()),
            (PoolName::Admin, self.pool.status()),
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
                &self.public_stats,
                self.limits.max_connections,
            ),
            (Listener::Admin, &self.admin_stats, admin::MAX_CONNECTIONS),
        ] {
            m.connections_open
                .set(listener, stats.open.load(Ordering::Relaxed) as f64);
            m.connection_limit.set(listener, limit as f64);
            m.accept_errors
                .absolute(listener, stats.accept_errors.load(Ordering::Relaxed));
            for (reason, count) in [
                (CloseReason::HeadTimeout, &stats.head_timeouts),
                (CloseReason::Idle, &stats.idle_closed),
                (CloseReason::Evicted, &stats.evicted),
                (CloseReason::Stalled, &stats.stalled_closed),
            ] {
                m.connections_closed
                    .absolute((listener, reason), count.load(Ordering::Relaxed));
            }
        }
        m.body_budget_used.set_value(self.body_budget.used() as f64);
        m.ready.set_value(f64::from(u8::from(ready)));
    }

    async fn handle(&self, _req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        admin::not_found(rid)
    }
}
