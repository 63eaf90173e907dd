//! The reconciler's one error enum, and its one mapping to what each caller shows: the process
//! exit status, the admin listener's HTTP answer, and `reconcile_runs.error`. Sources are kept,
//! and their text (Postgres's message and SQLSTATE above all) is shown through
//! [`common::error::chain`].

use std::net::SocketAddr;

use common::config::ConfigError;
use common::db::DbError;
use common::ledger::LedgerError;
use common::stripe::event::EventError;
use deadpool_postgres::PoolError;
use http::StatusCode;

use crate::stripe_api::StripeError;

/// Everything that can stop a reconciler command, a pass or a support request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("database query failed: {}", common::error::postgres(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("no database connection: {}", common::error::chain(.0))]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("Stripe returned an event that cannot be read: {0}")]
    BadEvent(#[from] EventError),
    #[error("stopped by shutdown between pages")]
    Stopped,
    #[error("the pass ran past RECONCILE_PASS_TIMEOUT ({}s) and was stopped", .0.as_secs())]
    PassTimeout(std::time::Duration),
    #[error("{0} event(s) could not be written (see failedEvents); the next pass retries them")]
    EventsNotWritten(usize),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("RECONCILE_SCHEDULE: {0}")]
    Schedule(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("cannot build the HTTP client for APP_NOTIFY_URL: {}", common::error::chain(.0))]
    NotifyClient(#[source] reqwest::Error),
}

/// An error as the admin listener answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Error {
    /// The process exit status (sysexits where one fits).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Schedule(_) => common::EXIT_CONFIG,
            Self::Database(e) => e.exit_code(),
            Self::Pool(_) => common::EXIT_UNAVAILABLE,
            _ => 1,
        }
    }

    /// The admin listener's answer: the database → 503; Stripe and anything else → 502, since
    /// the reconciler is a gateway to Stripe here.
    pub fn http(&self) -> HttpError {
        let (status, code, message) = match self {
            Self::Stripe(StripeError::Unauthorized(_)) => (
                StatusCode::BAD_GATEWAY,
                "stripe_unauthorized",
                "Stripe refused the API key".to_owned(),
            ),
            Self::Database(_) | Self::Query(_) | Self::Pool(_) | Self::Ledger(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the database is unavailable".to_owned(),
            ),
            Self::Stopped => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                self.to_string(),
            ),
            other => (
                StatusCode::BAD_GATEWAY,
                "stripe_unavailable",
                other.to_string(),
            ),
        };
        HttpError {
            status,
            code,
            message,
        }
    }

    /// The text recorded in `reconcile_runs.error`.
    pub fn run_text(&self) -> String {
        self.to_string()
    }
}
