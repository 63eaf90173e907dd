//! What every request handler shares: the pool, the group-commit writer, the verification
//! settings, the proxy, the body budget and what the listeners count.

use crate::metrics::EdgeMetrics;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, PoisonError, RwLock};

use common::admin::Readiness;
use common::config::Secret;

use crate::config::EdgeConfig;
use deadpool_postgres::Pool;

use crate::group_commit::GroupCommit;
use crate::proxy::Proxy;
use common::http::{Limits, ServeStats};

use crate::budget::BodyBudget;
use crate::tls::Certificates;

/// Shared, read-mostly state of one edge process.
#[derive(Debug)]
pub struct State {
    /// Readiness probes and the edge's own reads.
    pub pool: Pool,
    /// What `/ready` answers from: the database probe's last result, draining.
    pub readiness: Arc<Readiness>,
    /// The group-commit writer: every webhook write goes through it.
    pub writer: GroupCommit,
    /// The webhook secrets in force; `SIGHUP` replaces them (a rotation without a restart).
    webhook_secrets: RwLock<Arc<Vec<Secret>>>,
    pub tolerance_secs: u64,
    pub max_body_bytes: usize,
    pub proxy: Option<Proxy>,
    pub limits: Limits,
    /// Webhook body bytes in flight across all connections (`EDGE_BODY_BUDGET_BYTES`).
    pub body_budget: BodyBudget,
    /// What the public and the admin listeners did (read at scrape time).
    pub public_stats: Arc<ServeStats>,
    pub admin_stats: Arc<ServeStats>,
    pub metrics: EdgeMetrics,
    /// The public listener's certificate, when it speaks HTTPS.
    pub tls: Option<Arc<Certificates>>,
    /// Webhooks being answered now (`edge_webhook_requests_in_flight` for this edge alone).
    pub webhooks_in_flight: AtomicUsize,
}

impl State {
    /// The webhook secrets in force.
    pub fn webhook_secrets(&self) -> Arc<Vec<Secret>> {
        self.webhook_secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `secrets` in force for the next webhooks.
    pub fn set_webhook_secrets(&self, secrets: Vec<Secret>) {
        self.metrics.secrets_active.set_value(secrets.len() as f64);
        *self
            .webhook_secrets
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(secrets);
    }

    pub fn new(
        config: &EdgeConfig,
        pool: Pool,
        writer: GroupCommit,
        limits: Limits,
        metrics: EdgeMetrics,
        tls: Option<Arc<Certificates>>,
    ) -> Self {
        Self {
            pool,
            readiness: Arc::new(Readiness::new(&config.db.tls)),
            writer,
            webhook_secrets: RwLock::new(Arc::new(config.webhook_secrets.clone())),
            tolerance_secs: config.webhook_tolerance_secs,
            max_body_bytes: config.max_body_bytes,
            proxy: config.upstream.as_ref().map(|app| {
                Proxy::new(
                    app,
                    config.upstream_timeout,
                    config.proxy_max_inflight,
                    &limits,
                    metrics.clone(),
                )
            }),
            limits,
            body_budget: {
                metrics
                    .body_budget
                    .set_value(config.body_budget_bytes as f64);
                BodyBudget::new(config.body_budget_bytes)
            },
            public_stats: Arc::new(ServeStats::default()),
            admin_stats: Arc::new(ServeStats::default()),
            metrics,
            tls,
            webhooks_in_flight: AtomicUsize::new(0),
        }
    }
}
