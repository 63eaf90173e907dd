//! The pass lock: a Postgres advisory lock held on a dedicated session, so that one pass runs at a
//! time across replicas. Released at the end of the pass, or with the session when the guard is
//! dropped (a panic, a cancelled pass) or the process dies.

use common::config::DbConfig;
use common::db;
use tokio_postgres::Client;

use crate::error::Error;

/// Advisory lock key held by the running pass.
const PASS_LOCK_KEY: i64 = 0x5354_5249_5045_0002;

/// The pass lock, held.
pub(crate) struct PassLock {
    session: Client,
}

impl PassLock {
    /// The lock, or `None` when another session holds it.
    pub(crate) async fn try_acquire(db: &DbConfig) -> Result<Option<Self>, Error> {
        let session = db::connect(db).await?;
        let acquired: bool = session
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PASS_LOCK_KEY])
            .await?
            .get(0);
        Ok(acquired.then_some(Self { session }))
    }

    /// Releases the lock now, so that the next pass (here or in another replica) can start at
    /// once. Dropping the guard releases it too, when the server sees the session end.
    pub(crate) async fn release(self) {
        let _ = self
            .session
            .execute("SELECT pg_advisory_unlock($1)", &[&PASS_LOCK_KEY])
            .await;
    }
}
