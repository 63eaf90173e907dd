//! Postgres plumbing: the deadpool pool, the embedded refinery migrations (applied under an advisory
//! lock so concurrent `migrate` runs are safe, listed by `migrate --status`, shown by `--dry-run`),
//! and the start-up schema check with its compatibility range.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, NoTls};

use crate::config::DbConfig;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary, fixed key of the advisory lock that serialises `migrate` runs.
const MIGRATION_LOCK_KEY: i64 = 0x5354_5249_5045_0001;
/// How long a request waits for a pooled connection before the answer is 503.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database failure at start-up or in a one-off command.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database {target}: {}", connect_cause(.source))]
    Connect {
        /// Where: hosts, port, database and user (never the password).
        target: String,
        source: tokio_postgres::Error,
    },
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
    /// The process exit status for this failure: 69 when the database cannot be reached, 78 when
    /// the schema does not fit the build, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Connect { .. } | Self::Unavailable { .. } => crate::EXIT_UNAVAILABLE,
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

/// Why a connection failed, as an operator can act on it: the server's refusal (a password, a
/// missing database, a `pg_hba.conf` rule that wants TLS) or the network's (refused, unknown host).
fn connect_cause(e: &tokio_postgres::Error) -> String {
    let cause = crate::error::postgres(e);
    match e.as_db_error() {
        Some(db) if db.code().code() == "28000" && db.message().contains("no encryption") => {
            format!(
                "{cause}; the server requires TLS, and this build connects without it \
                 (terminate TLS in a local proxy such as PgBouncer, or allow non-TLS connections \
                 from the edge's network)"
            )
        }
        _ => cause,
    }
}

/// The highest migration version embedded in this build.
pub fn required_schema_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Number of embedded migrations (a guard against an empty folder compiling silently).
pub fn embedded_migration_count() -> usize {
    embedded::migrations::runner().get_migrations().len()
}

/// One dedicated connection (not pooled), its driver task spawned on the current runtime.
pub async fn connect(cfg: &DbConfig) -> Result<Client, DbError> {
    let (client, connection) = cfg
        .pg
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect {
            target: describe(&cfg.pg),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "dedicated database connection ended");
        }
    });
    Ok(client)
}

/// Applies every pending migration under an advisory lock; returns the versions applied. A schema
/// newer than this build that still supports it (a rollback after a newer build migrated) has
/// nothing to apply; one that no longer supports it is refused ([`DbError::SchemaTooNew`]).
pub async fn migrate(cfg: &DbConfig) -> Result<Vec<(i32, String)>, DbError> {
    let mut client = connect(cfg).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = match schema_version(&client).await {
        Ok(have) if have > required_schema_version() => match check_schema(&client).await {
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(e),
        },
        Ok(_) => embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map(|report| {
                report
                    .applied_migrations()
                    .iter()
                    .map(|m| (m.version(), m.name().to_owned()))
                    .collect()
            })
            .map_err(DbError::from),
        Err(e) => Err(e.into()),
    };
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

/// The schema version recorded in the database (0 when never migrated).
pub async fn schema_version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await?;
    Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
}

/// Refuses a schema older than this build needs, and a newer one that does not list this build as
/// compatible (`schema_compatibility.oldest_build_schema`, see `migrations/V4`). So migrations run
/// first, and the binaries already running keep working on the newer schema while the new ones
/// roll out, as long as the migration is additive.
pub async fn check_schema(client: &Client) -> Result<i32, DbError> {
    let have = schema_version(client).await?;
    let need = required_schema_version();
    if have < need {
        return Err(DbError::SchemaOutdated { have, need });
    }
    if have > need {
        let oldest: i32 = client
            .query_one("SELECT oldest_build_schema FROM schema_compatibility", &[])
            .await?
            .get(0);
        if need < oldest {
            return Err(DbError::SchemaTooNew { have, need, oldest });
        }
    }
    Ok(have)
}

/// One migration as `migrate --status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i32,
    pub name: String,
    pub state: MigrationState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Applied, at this time (as refinery recorded it), with the SQL this build embeds.
    Applied { on: String },
    /// Applied, but its SQL differs from this build's (edited after it ran).
    Changed { on: String },
    /// Embedded in this build and not applied yet.
    Pending,
    /// Applied by a newer build.
    Newer { on: String },
}

/// Every migration this build embeds or the database has applied, in version order.
pub async fn migration_status(cfg: &DbConfig) -> Result<Vec<MigrationStatus>, DbError> {
    let client = connect(cfg).await?;
    let mut applied = std::collections::BTreeMap::new();
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if exists {
        for row in client
            .query(
                "SELECT version, name, applied_on, checksum FROM refinery_schema_history",
                &[],
            )
            .await?
        {
            let version: i32 = row.get(0);
            let name: String = row.get(1);
            let on: String = row.get(2);
            let checksum: String = row.get(3);
            applied.insert(version, (name, on, checksum));
        }
    }
    let mut out = Vec::new();
    for m in embedded::migrations::runner().get_migrations() {
        let state = match applied.remove(&m.version()) {
            Some((_, on, checksum)) if checksum == m.checksum().to_string() => {
                MigrationState::Applied { on }
            }
            Some((_, on, _)) => MigrationState::Changed { on },
            None => MigrationState::Pending,
        };
        out.push(MigrationStatus {
            version: m.version(),
            name: m.name().to_owned(),
            state,
        });
    }
    for (version, (name, on, _)) in applied {
        out.push(MigrationStatus {
            version,
            name,
            state: MigrationState::Newer { on },
        });
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// The SQL of an embedded migration.
pub fn migration_sql(version: i32) -> Option<&'static str> {
    static RUNNER: std::sync::OnceLock<refinery::Runner> = std::sync::OnceLock::new();
    RUNNER
        .get_or_init(embedded::migrations::runner)
        .get_migrations()
        .iter()
        .find(|m| m.version() == version)
        .and_then(|m| m.sql())
}

/// Session setting of every pooled connection: plan each prepared statement once. The ledger's
/// lookup takes optional keys (NULL when absent); with the default plan cache mode Postgres finds a
/// NULL-folded custom plan cheaper and so re-plans on every execution (about 160 µs of server CPU
/// per event, measured with `pg_prepared_statements.custom_plans`).
pub const POOL_SESSION_OPTIONS: &str = "-c plan_cache_mode=force_generic_plan";

/// The session settings of every pooled connection: [`POOL_SESSION_OPTIONS`], and the lock and
/// statement time-outs that keep one locked row (an app's transaction, a support session, a DDL)
/// from stalling the ledger's writes.
pub fn session_options(cfg: &DbConfig) -> String {
    format!(
        "{POOL_SESSION_OPTIONS} -c lock_timeout={} -c statement_timeout={}",
        cfg.lock_timeout.as_millis(),
        cfg.statement_timeout().as_millis()
    )
}

/// A pool. Statements are prepared once per connection (`prepare_cached`) and planned once, and
/// every session has the [`session_options`].
pub fn pool(cfg: &DbConfig) -> Result<Pool, DbError> {
    let mut pg = cfg.pg.clone();
    let ours = session_options(cfg);
    let options = match pg.get_options() {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {ours}"),
        _ => ours,
    };
    pg.options(options);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_embedded() {
        assert_eq!(super::embedded_migration_count(), 5);
        assert_eq!(super::required_schema_version(), 5);
        assert!(
            super::migration_sql(4)
                .is_some_and(|sql| sql.contains("CREATE TABLE schema_compatibility"))
        );
    }
}
