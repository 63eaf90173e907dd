//! The embedded refinery migrations: applied under an advisory lock (concurrent `migrate` runs are
//! safe), listed by `migrate --status`, shown by `--dry-run`, and the start-up schema check with
//! its compatibility range.

use tokio_postgres::Client;

use super::{DbError, connect};
use crate::config::DbConfig;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Arbitrary, fixed key of the advisory lock that serialises `migrate` runs.
const MIGRATION_LOCK_KEY: i64 = 0x5354_5249_5045_0001;

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

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_embedded() {
        assert_eq!(super::embedded_migration_count(), 9);
        assert_eq!(super::required_schema_version(), 9);
        assert!(
            super::migration_sql(4)
                .is_some_and(|sql| sql.contains("CREATE TABLE schema_compatibility"))
        );
    }
}
