//! The reconciler: finds the Stripe events the ledger lacks and backfills them through the shared
//! ledger code, on a schedule, on demand for one Checkout Session, and as a one-off pass.
//!
//! # Layout
//! - [`Reconciler`]: the pool, the Stripe client, the configuration and the metrics, and what a
//!   reconciler does (each in its own module below).
//! - [`commands`]: what each command of the binary does, and its exit status.
//! - [`config`]: every setting of the reconciler's commands, parsed once.
//! - [`startup`]: configuration per command and the schema check every command runs first.
//! - [`error`]: the one error enum, mapped once to exit statuses, HTTP answers and run rows.
//! - [`stripe_api`]: the Stripe client (rate limit, retries, typed errors, the event pager).
//! - [`runs`]: `reconcile_runs` rows, triggers, statuses and run request ids.
//! - [`pass`]: one window pass.
//! - [`session`]: reconciling one Checkout Session, with a verdict.
//! - [`orders`]: orders as support sees them, found as the ledger finds them.
//! - [`verdict`]: the one-line verdict of `session` and `inspect`.
//! - [`notify`]: order notifications: delivering the outbox to the app, and redelivery.
//! - [`slot`]: one pass at a time in this process.
//! - [`schedule`]: the daemon: passes on `RECONCILE_SCHEDULE`, the admin listener, shutdown.
//! - [`inspect`]: support's timeline for an event, a session, an order or a request id.
//! - [`admin`]: `/metrics`, `/live`, `/ready` and the token-protected support POSTs.
//! - [`metrics`]: every reconciler metric, declared once.

pub mod admin;
pub mod commands;
pub mod config;
pub mod error;
pub mod inspect;
pub mod metrics;
pub mod notify;
pub mod orders;
pub mod pass;
pub mod runs;
pub mod schedule;
pub mod session;
pub mod slot;
pub mod startup;
pub mod stripe_api;
pub mod support;
pub mod sweep;
pub mod verdict;

use chrono::{DateTime, Utc};
use common::db;
use deadpool_postgres::Pool;
use tokio::sync::watch;

use crate::config::ReconcilerConfig;

pub use crate::error::Error;
use crate::metrics::ReconcilerMetrics;
use crate::pass::PassSummary;
use crate::runs::Trigger;
use crate::session::Verdict;
use crate::stripe_api::StripeClient;

/// Everything a pass, a session reconcile or an inspection needs.
#[derive(Debug)]
pub struct Reconciler {
    pub pool: Pool,
    /// Without `STRIPE_API_KEY` (allowed for `inspect`), every call fails before anything is sent.
    pub stripe: StripeClient,
    pub config: ReconcilerConfig,
    pub metrics: ReconcilerMetrics,
}

impl Reconciler {
    /// Checks the schema and builds the pool and the Stripe client.
    pub async fn build(config: ReconcilerConfig) -> Result<Self, Error> {
        startup::check_database(&config).await?;
        let metrics = ReconcilerMetrics::register();
        metrics.build_info.set(common::build::BuildInfo, 1.0);
        let pool = db::pool(&config.db)?;
        let stripe = StripeClient::new(&config, metrics.clone())?;
        Ok(Self {
            pool,
            stripe,
            config,
            metrics,
        })
    }

    /// Runs one window pass now. `stop` turning true ends it between pages (shutdown).
    pub async fn pass(&self, trigger: Trigger, stop: &watch::Receiver<bool>) -> PassSummary {
        pass::run(self, trigger, None, stop).await
    }

    /// Runs the pass of a scheduled `tick`, unless a replica already did it.
    pub async fn pass_of_tick(
        &self,
        trigger: Trigger,
        tick: Option<DateTime<Utc>>,
        stop: &watch::Receiver<bool>,
    ) -> PassSummary {
        pass::run(self, trigger, tick, stop).await
    }

    /// Sweeps the objects created in `[from, to]` (`reconciler sweep`).
    pub async fn sweep(
        &self,
        trigger: Trigger,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        stop: &watch::Receiver<bool>,
    ) -> sweep::SweepSummary {
        sweep::run(self, trigger, from, to, stop).await
    }

    /// Queues order notifications for delivery again; returns how many.
    pub async fn redeliver(&self, which: &notify::store::Redeliver) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let queued = notify::store::redeliver(&**client, which).await?;
        tracing::info!(
            ?which,
            queued,
            "order notifications queued for delivery again"
        );
        Ok(queued)
    }

    /// Reconciles one Checkout Session and answers a verdict.
    pub async fn reconcile_session(
        &self,
        session_id: &str,
        trigger: Trigger,
    ) -> Result<Verdict, Error> {
        session::reconcile(self, session_id, trigger).await
    }
}
