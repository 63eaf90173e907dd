//! Whether a pooler between the binaries and Postgres keeps sessions. Through PgBouncer in session
//! mode everything works as on a direct connection. In transaction (or statement) mode, a client's
//! consecutive statements may run on different server connections: the ledger's prepared
//! statements (PgBouncer before 1.21 does not carry them across), the session settings, the
//! reconciler's advisory lock and `LISTEN` would all break, so the binaries refuse to start there,
//! naming what needs session mode.
//!
//! The check: a first session runs a statement and lets its transaction end; a second session then
//! opens a transaction and holds it; the first runs a statement again. Directly or in session mode,
//! each session keeps its own backend: the first sees the same backend twice, the second another
//! one. In transaction mode, the first session's backend went back to the pooler when its statement
//! ended: the second takes it (PgBouncer hands out the connection released last), or the first gets
//! another one for its next statement.

use super::{DbError, connect};
use crate::config::DbConfig;

/// What needs sessions that last: named in the refusal.
const NEEDS_SESSIONS: &str = "the ledger's prepared statements, the session settings \
    (lock_timeout, statement_timeout), the reconciler's pass lock and LISTEN";

/// Refuses a pooler that does not keep sessions. Runs first, before any prepared statement
/// (which such a pooler would break with an error of its own), in the simple query protocol.
pub async fn check(cfg: &DbConfig) -> Result<(), DbError> {
    let first = connect(cfg).await?;
    let second = connect(cfg).await?;
    let before = backend(&first).await?;
    second.batch_execute("BEGIN").await?;
    let held = backend(&second).await?;
    let after = backend(&first).await?;
    second.batch_execute("ROLLBACK").await?;
    if held == before || after != before {
        return Err(DbError::PoolerMode(NEEDS_SESSIONS));
    }
    Ok(())
}

/// The backend a session's next statement runs on.
async fn backend(client: &tokio_postgres::Client) -> Result<String, DbError> {
    let messages = client.simple_query("SELECT pg_backend_pid()").await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default())
}
