//! The ledger's one write. A batch is written in two round trips: `BEGIN` with the lock-and-insert
//! statement, then the order updates with `COMMIT`. [`LedgerConnection::send`] returns once that
//! `COMMIT` is on the wire, as a [`Sent`] batch: a caller sharing the connection (the edge's
//! pipelined writer) hands it on between the two awaits, and Postgres starts on the next
//! transaction while this one's commit record is flushed. [`Sent::recorded`] then waits for the
//! `COMMIT` and, when the batch failed on a statement, records its events again: without the
//! events of orders locked elsewhere when it timed out on a lock, else one event per transaction,
//! so that one event that cannot be written never keeps the others out. [`record`] is the same
//! write for a caller with no connection of its own.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::connection::{LedgerConnection, Locking, PendingCommit};
use super::{Applied, BatchEntry, BatchMeta, LedgerError};

impl LedgerConnection {
    /// The ledger's one write: sends `entries` in a transaction of their own and returns once its
    /// `COMMIT` is on the wire; [`Sent::recorded`] brings the answers.
    pub async fn send<'a>(&'a self, entries: &'a [BatchEntry<'a>], meta: BatchMeta) -> Sent<'a> {
        let started = Instant::now();
        Sent {
            first: self.send_batch(entries, meta, Locking::Wait).await,
            conn: self,
            entries,
            meta,
            started,
        }
    }
}

/// A batch whose `COMMIT` is on the wire (or that failed before it).
pub struct Sent<'a> {
    first: Result<PendingCommit<'a>, LedgerError>,
    conn: &'a LedgerConnection,
    entries: &'a [BatchEntry<'a>],
    meta: BatchMeta,
    started: Instant,
}

/// What a write did.
#[derive(Debug)]
pub struct Recorded {
    /// One answer per entry, in order.
    pub answers: Vec<Result<Applied, LedgerError>>,
    /// Why the batch's own transaction failed, when it did; its events were then retried as
    /// [`Sent::recorded`] says.
    pub failure: Option<LedgerError>,
    /// The batch was retried one event per transaction.
    pub split: bool,
    /// From sending the batch until its `COMMIT` was answered (or it failed), retries excluded:
    /// the database's share of the write.
    pub commit_time: Duration,
}

impl Recorded {
    /// Every entry's [`Applied`], or the first error.
    pub fn applied(self) -> Result<Vec<Applied>, LedgerError> {
        self.answers.into_iter().collect()
    }

    fn failed(n: usize, error: LedgerError) -> Self {
        Self {
            answers: vec![Err(error.clone()); n],
            failure: Some(error),
            split: false,
            commit_time: Duration::ZERO,
        }
    }
}

impl Sent<'_> {
    /// Waits for the `COMMIT`. A batch that failed on a statement is recorded again on
    /// connections from the pool: without the events of orders locked elsewhere when it timed out
    /// on a lock, else (more than one event) one event per transaction. Every retry skips locked
    /// orders, so that no event waits for a lock twice; an event left out is answered
    /// [`LedgerError::OrderBusy`].
    pub async fn recorded(self) -> Recorded {
        let n = self.entries.len();
        let first = match self.first {
            Ok(pending) => pending.committed_each().await,
            Err(e) => Err(e),
        };
        let commit_time = self.started.elapsed();
        let error = match first {
            Ok(answers) => {
                return Recorded {
                    answers: answers.into_iter().map(|a| a.map_err(Into::into)).collect(),
                    failure: None,
                    split: false,
                    commit_time,
                };
            }
            Err(e) => e,
        };
        if error.is_read_only() {
            // A read-only session stays read-only: the next batch gets a new one.
            self.conn.discard();
        }
        let (answers, split) = match error.is_statement_failure() {
            true => retry(&self.conn.pool, self.entries, self.meta, error.clone()).await,
            false => (vec![Err(error.clone()); n], false),
        };
        Recorded {
            answers,
            failure: Some(error),
            split,
            commit_time,
        }
    }
}

/// Records a batch in a transaction of its own on a connection from `pool`, as
/// [`LedgerConnection::send`] then [`Sent::recorded`] do.
pub async fn record(pool: &Pool, entries: &[BatchEntry<'_>], meta: BatchMeta) -> Recorded {
    if entries.is_empty() {
        return Recorded {
            answers: Vec::new(),
            failure: None,
            split: false,
            commit_time: Duration::ZERO,
        };
    }
    match LedgerConnection::get(pool).await {
        Ok(conn) => conn.send(entries, meta).await.recorded().await,
        Err(e) => Recorded::failed(entries.len(), e),
    }
}

/// The retries of a batch that failed on a statement (see [`Sent::recorded`]); whether it was
/// split.
async fn retry(
    pool: &Pool,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
    mut error: LedgerError,
) -> (Vec<Result<Applied, LedgerError>>, bool) {
    if error.is_timeout() {
        tracing::warn!(
            error = %error,
            events = entries.len(),
            "batch timed out waiting for a lock; recording the events whose orders are free"
        );
        match skipping_locked(pool, entries, meta).await {
            Ok(answers) => return (answers, false),
            Err(e) if e.is_statement_failure() => error = e,
            Err(e) => return (vec![Err(e); entries.len()], false),
        }
    }
    if entries.len() == 1 {
        return (vec![Err(error)], false);
    }
    tracing::warn!(error = %error, events = entries.len(), "batch failed; recording its events one at a time");
    let mut answers = Vec::with_capacity(entries.len());
    for entry in entries {
        let one = skipping_locked(pool, std::slice::from_ref(entry), meta).await;
        answers.push(one.and_then(|mut a| a.pop().unwrap_or(Err(LedgerError::OrderBusy))));
    }
    (answers, true)
}

/// One transaction on a connection of its own that leaves out the events of orders locked
/// elsewhere.
async fn skipping_locked(
    pool: &Pool,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
    let conn = LedgerConnection::get(pool).await?;
    let answers = conn
        .send_batch(entries, meta, Locking::SkipLocked)
        .await?
        .committed_each()
        .await?;
    Ok(answers.into_iter().map(|a| a.map_err(Into::into)).collect())
}
