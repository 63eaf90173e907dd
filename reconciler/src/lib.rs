//! The reconciler: finds the Stripe events the ledger lacks and backfills them through the shared
//! ledger code, on a schedule, on demand for one Checkout Session, and as a one-off pass.
//!
//! # Layout
//! - [`Reconciler`]: the pool, the Stripe client, the configuration and the metrics.
//! - [`startup`]: configuration per command and the schema check every command runs first.
//! - [`stripe_api`]: the Stripe client (rate limit, retries, typed errors).
//! - [`pass`]: one window pass and its `reconcile_runs` row.
//! - [`session`]: reconciling one Checkout Session, with a verdict.
//! - [`schedule`]: the daemon: passes on `RECONCILE_SCHEDULE`, the admin listener, shutdown.
//! - [`inspect`]: support's timeline for an event, a session, an order or a request id.
//! - [`admin`]: `/metrics`, `/live`, `/ready` and the token-protected support POSTs.

pub mod admin;
pub mod inspect;
pub mod pass;
pub mod schedule;
pub mod session;
pub mod startup;
pub mod stripe_api;

use common::config::ReconcilerConfig;
use common::db;
use common::metrics::ReconcilerMetrics;
use deadpool_postgres::Pool;

use crate::startup::StartError;
use crate::stripe_api::StripeClient;

/// Everything a pass or a session reconcile needs.
#[derive(Debug)]
pub struct Reconciler {
    pub pool: Pool,
    pub stripe: StripeClient,
    pub config: ReconcilerConfig,
    pub metrics: ReconcilerMetrics,
}

impl Reconciler {
    /// Checks the schema and builds the pool and the Stripe client.
    pub async fn build(config: ReconcilerConfig) -> Result<Self, StartError> {
        startup::check_database(&config).await?;
        let metrics = ReconcilerMetrics::register();
        let pool = db::pool(&config.db)?;
        let stripe = StripeClient::new(&config, metrics.clone())?;
        Ok(Self {
            pool,
            stripe,
            config,
            metrics,
        })
    }
}
