//! Postgres plumbing: every connection the binaries make (the deadpool pools and the dedicated
//! ones), TLS as `sslmode` says ([`tls`]), the session settings sent as SQL (so that they pass
//! through PgBouncer), the check that a pooler in front keeps sessions ([`pooler`]), and the
//! embedded migrations with the start-up schema check ([`migrations`]).

mod migrations;
pub mod pooler;
pub mod tls;

pub use migrations::{
    MigrationState, MigrationStatus, check_schema, embedded_migration_count, migrate,
    migration_sql, migration_status, required_schema_version, schema_version,
};

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::DbConfig;
use crate::pgurl::{SslMode, TlsParams};

/// How long a request waits for a pooled connection before the answer is 503.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database failure at start-up or in a one-off command.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database {target}: {cause}")]
    Connect {
        /// Where: hosts, port, database and user (never the password).
        target: String,
        /// Why, as an operator can act on it.
        cause: String,
        source: tokio_postgres::Error,
    },
    #[error("DATABASE_URL's TLS settings cannot be used: {0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error(
        "DATABASE_URL goes through a pooler that does not keep sessions (PgBouncer \
         pool_mode=transaction or statement): {0} need session mode; set pool_mode=session for \
         this database, or connect to Postgres directly"
    )]
    PoolerMode(&'static str),
    #[error("cannot connect to the database {target}: {}", crate::error::chain(.source))]
    Unavailable {
        /// Where: hosts, port, database and user (never the password).
        target: String,
        source: deadpool_postgres::PoolError,
    },
    #[error("database query failed: {}", crate::error::postgres(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {}", crate::error::chain(.0))]
    Migration(#[from] refinery::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error(
        "the database schema is at version {have} but this build needs version {need}: \
         run `edge migrate` first"
    )]
    SchemaOutdated { have: i32, need: i32 },
    #[error(
        "the database schema is at version {have}, which supports builds made for version \
         {oldest} or later, and this build was made for version {need}: deploy a newer build"
    )]
    SchemaTooNew { have: i32, need: i32, oldest: i32 },
}

impl DbError {
    /// The process exit status for this failure: 69 when the database cannot be reached (TLS
    /// refused included), 64 when the TLS settings cannot be used, 78 when the schema does not
    /// fit the build or a pooler does not keep sessions, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Connect { .. } | Self::Unavailable { .. } => crate::EXIT_UNAVAILABLE,
            Self::Tls(_) => crate::EXIT_CONFIG,
            Self::PoolerMode(_) => crate::EXIT_SCHEMA,
            e if e.is_schema_mismatch() => crate::EXIT_SCHEMA,
            _ => 1,
        }
    }

    /// The schema does not fit this build (exit status 78): older than it needs, or too new.
    pub fn is_schema_mismatch(&self) -> bool {
        matches!(
            self,
            Self::SchemaOutdated { .. } | Self::SchemaTooNew { .. }
        )
    }
}

/// Where a configuration connects: `host[,host…]:port/dbname as user`.
pub fn describe(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = pg
        .get_ports()
        .first()
        .map_or_else(|| "5432".to_owned(), u16::to_string);
    format!(
        "{}:{port}/{} as {}",
        hosts.join(","),
        pg.get_dbname().unwrap_or("?"),
        pg.get_user().unwrap_or("?")
    )
}

/// Why a connection failed, as an operator can act on it: TLS (an unknown CA, a host name
/// mismatch, an expired certificate, a server without TLS), the server's refusal (a password, a
/// missing database, a `pg_hba.conf` rule that wants TLS) or the network's (refused, unknown host).
pub fn connect_cause(e: &tokio_postgres::Error, tls: &TlsParams) -> String {
    if let Some(cause) = tls::cause(e, tls) {
        return cause;
    }
    let cause = crate::error::postgres(e);
    match e.as_db_error() {
        Some(db) if db.code().code() == "28000" && db.message().contains("no encryption") => {
            format!(
                "{cause}; the server requires TLS, and DATABASE_URL has sslmode={}: set \
                 sslmode=require, or verify-full with sslrootcert",
                tls.mode
            )
        }
        _ => cause,
    }
}

/// Whether a configuration may use TLS: not under `sslmode=disable`, and not when every host is a
/// Unix socket (Postgres speaks no TLS there).
fn uses_tls(cfg: &DbConfig) -> bool {
    cfg.tls.mode != SslMode::Disable && cfg.pg.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)))
}

/// One dedicated connection (not pooled), its driver task spawned on the current runtime.
pub async fn connect(cfg: &DbConfig) -> Result<Client, DbError> {
    open(cfg, None).await
}

/// A dedicated connection that listens on `channel`: each notification Postgres delivers on it
/// sends a `()` on the receiver, which ends (returns `None`) when the connection is lost.
pub async fn listen(
    cfg: &DbConfig,
    channel: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<()>), DbError> {
    let (wake, woken) = mpsc::unbounded_channel();
    let client = open(cfg, Some(wake)).await?;
    let quoted = channel.replace('"', "\"\"");
    client
        .batch_execute(&format!("LISTEN \"{quoted}\""))
        .await?;
    Ok((client, woken))
}

/// A dedicated connection, TLS as `sslmode` says, its driver spawned (passing notifications on
/// to `wake` when given).
async fn open(cfg: &DbConfig, wake: Option<mpsc::UnboundedSender<()>>) -> Result<Client, DbError> {
    let connected = match uses_tls(cfg) {
        true => {
            let tls = tls::connector(&cfg.tls)?;
            cfg.pg.connect(tls).await.map(|(client, connection)| {
                tokio::spawn(drive(connection, wake));
                client
            })
        }
        false => cfg.pg.connect(NoTls).await.map(|(client, connection)| {
            tokio::spawn(drive(connection, wake));
            client
        }),
    };
    connected.map_err(|source| DbError::Connect {
        target: describe(&cfg.pg),
        cause: connect_cause(&source, &cfg.tls),
        source,
    })
}

/// Drives a dedicated connection until it ends, passing its notifications on to `wake`.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    wake: Option<mpsc::UnboundedSender<()>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => {
                if let Some(wake) = &wake {
                    let _ = wake.send(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "dedicated database connection ended");
                return;
            }
            None => return,
        }
    }
}

/// The session settings of every pooled connection, sent as SQL when it opens (so that they pass
/// through PgBouncer, which refuses the `options` startup parameter): each prepared statement
/// planned once (the ledger's lookup takes optional keys, NULL when absent; with the default plan
/// cache mode Postgres finds a NULL-folded custom plan cheaper and so re-plans on every execution,
/// about 160 µs of server CPU per event, measured with `pg_prepared_statements.custom_plans`), and
/// the lock and statement time-outs that keep one locked row (an app's transaction, a support
/// session, a DDL) from stalling the ledger's writes.
pub fn session_settings(cfg: &DbConfig) -> String {
    format!(
        "SET plan_cache_mode = force_generic_plan; SET lock_timeout = {}; \
         SET statement_timeout = {}",
        cfg.lock_timeout.as_millis(),
        cfg.statement_timeout().as_millis()
    )
}

/// A pool. Statements are prepared once per connection (`prepare_cached`) and planned once, and
/// every session gets the [`session_settings`].
pub fn pool(cfg: &DbConfig) -> Result<Pool, DbError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match uses_tls(cfg) {
        true => Manager::from_config(cfg.pg.clone(), tls::connector(&cfg.tls)?, manager_config),
        false => Manager::from_config(cfg.pg.clone(), NoTls, manager_config),
    };
    let settings = session_settings(cfg);
    Pool::builder(manager)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(Runtime::Tokio1)
        .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
            let settings = settings.clone();
            Box::pin(async move {
                client
                    .batch_execute(&settings)
                    .await
                    .map_err(deadpool_postgres::HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}
