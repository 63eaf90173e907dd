//! The Stripe webhook edge: a hyper 1.x server that verifies `Stripe-Signature`, records each event
//! and its order transition in one Postgres transaction (shared by concurrent webhooks: group
//! commit) before answering 200, and proxies every other route to the app.
//!
//! # Layout
//! - [`App`]: build (schema check, pool, bind) and run until a shutdown signal.
//! - [`routes`]: the one routing `match`; the `webhook` and `admin` handlers.
//! - [`proxy`]: the client that forwards every other route to the app.
//! - [`budget`]: the global budget of webhook body bytes in flight.
//! - [`resources`]: file descriptors: the limit raised, the connection cap derived from it.
//! - [`metrics`]: every edge metric, declared once.
//! - [`config`]: every setting of `edge serve`, parsed once.
//! - [`error`]: the one error enum and its mapping to HTTP.
//! - [`group_commit`]: the writers that commit concurrent webhook events together.
//! - [`state`]: what handlers share.
//! - [`tls`]: HTTPS on the public listener, its certificate reloaded without a restart.
//! - [`migrate`]: `edge migrate`, its `--status` and `--dry-run`.
//! - [`reload`]: what `SIGHUP` re-reads: the webhook secrets, the TLS certificate.

pub mod budget;
pub mod config;
pub mod error;
pub mod group_commit;
pub mod metrics;
pub mod migrate;
pub mod proxy;
pub mod reload;
pub mod resources;
pub mod routes;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::EdgeConfig;
use common::admin::AdminServer;
use common::db::{self, DbError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::group_commit::GroupCommit;
use crate::state::State;
pub use common::http::Limits;
use common::http::threads::{self, Serving, Sockets};

/// A writer that holds work longer than the lock time-out plus this is stalled (`/ready` 503).
const WRITER_STALL_MARGIN: Duration = Duration::from_secs(3);

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("EDGE_TLS_CERT_FILE / EDGE_TLS_KEY_FILE: {0}")]
    Tls(#[from] tls::TlsError),
}

impl StartError {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Db(e) => e.exit_code(),
            Self::Tls(_) => common::EXIT_CONFIG,
            Self::Bind { .. } => 1,
        }
    }
}

/// A built edge: listeners bound, database checked, ready to run.
pub struct App {
    state: Arc<State>,
    /// The public listener's sockets, one per serving thread.
    public: Sockets,
    admin: TcpListener,
    grace: Duration,
}

impl App {
    /// Checks the schema, opens the pool and binds both listeners.
    pub async fn build(config: EdgeConfig) -> Result<Self, StartError> {
        let limits = Limits {
            header_read_timeout: config.header_timeout,
            max_connections: resources::max_connections(&config),
            ..Limits::default()
        };
        Self::build_with_limits(config, limits).await
    }

    /// [`App::build`] with other client time-outs (tests use short ones).
    pub async fn build_with_limits(config: EdgeConfig, limits: Limits) -> Result<Self, StartError> {
        let metrics = metrics::EdgeMetrics::register();
        metrics.build_info.set(common::build::BuildInfo, 1.0);
        metrics
            .secrets_active
            .set_value(config.webhook_secrets.len() as f64);
        // First: through a pooler that does not keep sessions, anything else fails its own way.
        db::pooler::check(&config.db).await?;
        let pool = db::pool(&config.db)?;
        {
            let client = pool.get().await.map_err(|source| DbError::Unavailable {
                target: db::describe(&config.db.pg),
                source,
            })?;
            db::check_schema(&client).await?;
        }
        let writers = db::pool(&common::config::DbConfig {
            pool_size: config.ledger_writers * group_commit::CONNECTIONS_PER_WRITER,
            ..config.db.clone()
        })?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let public = Sockets::bind(config.listen, config.serve_threads).map_err(|source| {
            StartError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let admin = bind(config.admin_listen).await?;
        let grace = config.shutdown_grace;
        let writer = GroupCommit::start(
            writers,
            config.ledger_writers,
            config.batch_max,
            config.expect_livemode,
            config.db.lock_timeout + WRITER_STALL_MARGIN,
            metrics.clone(),
        );
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Certificates::load(files, metrics.clone())?)),
            None => None,
        };
        let state = Arc::new(State::new(&config, pool, writer, limits, metrics, tls));
        Ok(Self {
            state,
            public,
            admin,
            grace,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// What the handlers share (tests look at the group-commit queue through it).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then: `/ready` turns 503, the public listener stops
    /// accepting and drains (bounded by `SHUTDOWN_GRACE_SECS`), the ledger writers commit what
    /// they hold, then the admin listener stops.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let public_addr = self.public_addr();
        let state = self.state;
        let admin = AdminServer::start(
            self.admin,
            state.pool.clone(),
            state.clone(),
            state.readiness.clone(),
            state.limits,
            state.admin_stats.clone(),
        )
        .await;
        let (stop_public, public_stopped) = watch::channel(false);
        let reconcile_status = tokio::spawn(reconcile_status(state.clone()));
        let watch = state.tls.clone().map(|tls| tokio::spawn(tls.watch()));
        let serving = Serving {
            name: "public",
            tls: state.tls.as_ref().map(|tls| tls.acceptor()),
            grace: self.grace,
            limits: state.limits,
            stats: state.public_stats.clone(),
        };
        let threads = self.public.threads();
        let public = tokio::spawn(threads::serve_sockets(
            self.public,
            serving,
            {
                let state = state.clone();
                move |req, connected| routes::public(req, state.clone(), connected)
            },
            public_stopped,
        ));
        tracing::info!(
            public = %public_addr,
            threads,
            admin = %admin.addr(),
            version = common::build::VERSION,
            revision = common::build::REVISION,
            built = common::build::DATE,
            "edge listening"
        );
        shutdown.await;
        tracing::info!("shutdown requested");
        admin.start_draining();
        let _ = stop_public.send(true);
        let _ = public.await;
        // Events already handed to the writers are committed even if their client is gone. A
        // writer stuck past the grace period is abandoned: its transaction rolls back with the
        // connection, and no client was told otherwise.
        if tokio::time::timeout(self.grace, state.writer.shutdown())
            .await
            .is_err()
        {
            tracing::error!(
                "ledger writers still busy after the grace period; their uncommitted events roll back and Stripe will retry them"
            );
        }
        admin.stop().await;
        reconcile_status.abort();
        if let Some(watch) = watch {
            watch.abort();
        }
        state.pool.close();
        tracing::info!("edge stopped");
    }
}

/// How often the edge reads the end of the last successful reconcile pass.
const RECONCILE_STATUS_EVERY: Duration = Duration::from_secs(15);

/// Exports the end of the last successful reconcile window pass, read from `reconcile_runs`, so
/// that its age is known however the reconciler runs (a daemon, or `reconciler once` under cron,
/// which has no `/metrics`), and the open disputes by evidence deadline.
async fn reconcile_status(state: Arc<State>) {
    let mut tick = tokio::time::interval(RECONCILE_STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(client) = state.pool.get().await else {
            continue;
        };
        if let Ok(Some(at)) = common::ledger::status::last_reconcile_success(&client).await {
            let seconds = at.timestamp_micros() as f64 / 1e6;
            state.metrics.reconcile_last_success.set_value(seconds);
        }
        if let Ok(open) = common::ledger::status::open_disputes(&client).await {
            for (due, n) in open {
                state.metrics.disputes_open.set(due, n as f64);
            }
        }
    }
}
