//! The connection the ledger writes on, and the two stages of a batch on it: `BEGIN` with the
//! lock-and-insert statement, then the order updates with `COMMIT`, sent without waiting for its
//! answer (a [`PendingCommit`]). The connection guard never lets a half-written transaction back
//! into the pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::Poll;

use deadpool_postgres::{GenericClient, Object, Pool};
use tokio_postgres::Statement;

use super::money::{self, MoneyChange};
use super::params::{Columns, Writes};
use super::plan::{Found, Plan};
use super::{Applied, BatchEntry, BatchMeta, LedgerError, OrderBusy, sql};

type Sending<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// How a batch treats an order whose row another transaction has locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Locking {
    /// Wait for it (up to the session's `lock_timeout`).
    Wait,
    /// Leave its events out of the batch, answered [`OrderBusy`]: the retry of a batch that timed
    /// out waiting, so that every other event commits at once.
    SkipLocked,
}

/// A pooled connection the ledger writes on. It is marked from `BEGIN` until its `COMMIT` or
/// `ROLLBACK` is sent: dropped while marked (its writer panicked or was cancelled mid-way), it is
/// closed instead of going back to the pool, so that Postgres rolls the transaction back and
/// nobody can ever send a `COMMIT` for someone else's half-written batch.
#[derive(Debug)]
pub struct LedgerConnection {
    client: Option<Object>,
    open: AtomicBool,
    /// The batch statements prepared on `client`.
    kept: KeptStatements,
    /// Where the retries of a failed batch take their connections.
    pub(super) pool: Pool,
}

impl LedgerConnection {
    /// A connection from `pool`.
    pub async fn get(pool: &Pool) -> Result<Self, LedgerError> {
        Ok(Self {
            client: Some(pool.get().await?),
            open: AtomicBool::new(false),
            kept: KeptStatements::default(),
            pool: pool.clone(),
        })
    }

    /// Open, and no transaction of an earlier writer left on it.
    pub fn is_usable(&self) -> bool {
        !self.open.load(Ordering::Acquire) && self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Marks the connection to be closed rather than reused (a read-only session, say).
    pub fn discard(&self) {
        self.open.store(true, Ordering::Release);
    }

    fn client(&self) -> Result<&Object, LedgerError> {
        self.client
            .as_ref()
            .ok_or(LedgerError::Stopped("connection already released"))
    }

    /// Sends a batch in a transaction of its own and returns once its `COMMIT` is sent. On an
    /// error before the `COMMIT`, the transaction is rolled back (the connection stays usable
    /// only if that worked) and the error returned.
    pub(super) async fn send_batch<'a>(
        &'a self,
        entries: &[BatchEntry<'_>],
        meta: BatchMeta,
        locking: Locking,
    ) -> Result<PendingCommit<'a>, LedgerError> {
        if entries.is_empty() {
            return Ok(PendingCommit::done(Vec::new()));
        }
        let client = self.client()?;
        self.open.store(true, Ordering::Release);
        let opened = async {
            // Polled in order: BEGIN is sent first, then the statement, in one round trip.
            let (begin, plan) = tokio::join!(
                client.batch_execute("BEGIN"),
                lock_and_insert(client, Some(&self.kept), entries, meta, locking)
            );
            begin?;
            let plan = plan?;
            if plan.interleaved && entries.len() > 1 {
                return Err(LedgerError::Interleaved);
            }
            let writes = plan.writes();
            let statements = Statements::prepare(client, Some(&self.kept), &writes).await?;
            Ok::<_, LedgerError>(((plan.applied, plan.event_ids), writes, statements))
        };
        let (applied, writes, statements) = match opened.await {
            Ok(opened) => opened,
            Err(e) => {
                self.rollback(client).await;
                return Err(e);
            }
        };
        let mut written: Sending<'a, Vec<MoneyChange>> = Box::pin(statements.send(client, writes));
        let mut commit: Sending<'a, ()> = Box::pin(async move {
            client.batch_execute("COMMIT").await?;
            Ok(())
        });
        // Each statement is sent on its future's first poll: the updates, then COMMIT.
        let written_now = poll_once(written.as_mut()).await;
        if let Poll::Ready(Err(e)) = written_now {
            // Nothing was sent (the parameters did not encode): no COMMIT for half a batch; the
            // COMMIT future is dropped unpolled, so it sends nothing.
            drop(commit);
            self.rollback(client).await;
            return Err(e);
        }
        let commit_now = poll_once(commit.as_mut()).await;
        self.open.store(false, Ordering::Release);
        Ok(PendingCommit {
            written: Stage::of(written, written_now),
            commit: Stage::of(commit, commit_now),
            applied,
        })
    }

    /// Ends a transaction that failed before its `COMMIT` was sent; the connection stays marked
    /// (and so is closed) unless the `ROLLBACK` worked.
    async fn rollback(&self, client: &Object) {
        if client.batch_execute("ROLLBACK").await.is_ok() {
            self.open.store(false, Ordering::Release);
        }
    }
}

impl Drop for LedgerConnection {
    fn drop(&mut self) {
        if *self.open.get_mut()
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

/// The answers of a batch as folded (one per entry), and each entry's event id.
type Answers = (Vec<Result<Applied, OrderBusy>>, Vec<String>);

/// A batch whose `COMMIT` has been sent.
pub(super) struct PendingCommit<'a> {
    written: Stage<'a, Vec<MoneyChange>>,
    commit: Stage<'a, ()>,
    applied: Answers,
}

impl PendingCommit<'_> {
    fn done(applied: Vec<Result<Applied, OrderBusy>>) -> Self {
        Self {
            written: Stage::Done(Ok(Vec::new())),
            commit: Stage::Done(Ok(())),
            applied: (applied, Vec::new()),
        }
    }

    /// Waits for the `COMMIT`; one answer per entry, in order: applied, or left out because
    /// its order is locked elsewhere.
    pub(super) async fn committed_each(
        self,
    ) -> Result<Vec<Result<Applied, OrderBusy>>, LedgerError> {
        let written = self.written.finish().await;
        let commit = self.commit.finish().await;
        // A failed update turns the pipelined COMMIT into a rollback: report the update's error.
        let changes = written?;
        commit?;
        let (mut applied, event_ids) = self.applied;
        money::merge(&mut applied, &event_ids, &changes);
        Ok(applied)
    }
}

/// A statement already sent: its answer, or the future that will bring it.
enum Stage<'a, T> {
    Done(Result<T, LedgerError>),
    Waiting(Sending<'a, T>),
}

impl<'a, T> Stage<'a, T> {
    fn of(future: Sending<'a, T>, first_poll: Poll<Result<T, LedgerError>>) -> Self {
        match first_poll {
            Poll::Ready(result) => Self::Done(result),
            Poll::Pending => Self::Waiting(future),
        }
    }

    async fn finish(self) -> Result<T, LedgerError> {
        match self {
            Self::Done(result) => result,
            Self::Waiting(future) => future.await,
        }
    }
}

/// Polls a future once, so that whatever it sends on its first poll is sent now.
async fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(move |cx| match future.take() {
        Some(f) => Poll::Ready(f.poll(cx)),
        None => Poll::Pending,
    })
    .await
}

/// The statements prepared on one connection, by their text. The pool's cache finds a statement
/// by hashing its whole text (kilobytes for the lock-and-insert) into a key it allocates, on
/// every batch: here a batch compares lengths first, and the texts are a handful.
#[derive(Debug, Default)]
pub(super) struct KeptStatements(Mutex<Vec<(&'static str, Statement)>>);

impl KeptStatements {
    fn get(&self, sql: &str) -> Option<Statement> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter()
            .find(|(text, _)| text.len() == sql.len() && *text == sql)
            .map(|(_, statement)| statement.clone())
    }

    fn keep(&self, sql: &'static str, statement: &Statement) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !kept.iter().any(|(text, _)| *text == sql) {
            kept.push((sql, statement.clone()));
        }
    }
}

/// `sql` prepared on `client`: from `kept` when it is there (and then kept there).
async fn prepared<C: GenericClient>(
    client: &C,
    kept: Option<&KeptStatements>,
    sql: &'static str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = kept.and_then(|kept| kept.get(sql)) {
        return Ok(statement);
    }
    let statement = client.prepare_cached(sql).await?;
    if let Some(kept) = kept {
        kept.keep(sql, &statement);
    }
    Ok(statement)
}

/// Runs the lock-and-insert statement for the entries and folds its rows (no I/O when empty).
async fn lock_and_insert<C: GenericClient>(
    client: &C,
    kept: Option<&KeptStatements>,
    entries: &[BatchEntry<'_>],
    meta: BatchMeta,
    locking: Locking,
) -> Result<Plan, LedgerError> {
    let columns = Columns::new(entries, meta.source);
    let rows = match entries.is_empty() {
        true => Vec::new(),
        false => {
            let statement = match locking {
                Locking::Wait => sql::LOCK_AND_INSERT,
                Locking::SkipLocked => sql::LOCK_AND_INSERT_SKIP_LOCKED,
            };
            let stmt = prepared(client, kept, statement).await?;
            client.query(&stmt, &columns.insert_params()).await?
        }
    };
    let found: Vec<Found> = rows
        .iter()
        .map(|row| Found::read(row, 1, row.get(0), true))
        .collect();
    Ok(Plan::fold(entries, &columns, &found, meta.expect_livemode))
}

/// The prepared statements that a batch's writes need.
pub(super) struct Statements {
    update: Option<Statement>,
    link: Option<Statement>,
    money: Option<Statement>,
}

impl Statements {
    /// Prepares what `writes` needs. This must finish before [`Statements::send`] is pipelined
    /// with a `COMMIT`: a statement still being prepared would reach the server after the
    /// `COMMIT`, outside the transaction.
    /// `kept`: the connection's own prepared statements, when it has them.
    pub(super) async fn prepare<C: GenericClient>(
        client: &C,
        kept: Option<&KeptStatements>,
        writes: &Writes,
    ) -> Result<Self, LedgerError> {
        Ok(Self {
            update: match writes.updates_orders() {
                true => Some(prepared(client, kept, sql::UPDATE_ORDERS).await?),
                false => None,
            },
            link: match writes.links_events() {
                true => Some(prepared(client, kept, sql::LINK_EVENTS).await?),
                false => None,
            },
            money: match writes.applies_money() {
                true => Some(prepared(client, kept, sql::APPLY_MONEY).await?),
                false => None,
            },
        })
    }

    /// The set-based `UPDATE` of the changed orders, the late links and the money snapshots, all
    /// sent on the first poll, in that order; the status changes the money made.
    pub(super) async fn send<C: GenericClient>(
        self,
        client: &C,
        writes: Writes,
    ) -> Result<Vec<MoneyChange>, LedgerError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let updated = async {
            match &self.update {
                Some(stmt) => client.execute(stmt, &writes.update_params()).await,
                None => Ok(0),
            }
        };
        let linked = async {
            match &self.link {
                Some(stmt) => client.execute(stmt, &writes.link_params()).await,
                None => Ok(0),
            }
        };
        let money = async {
            match &self.money {
                Some(stmt) => client.query(stmt, &writes.money_params()).await,
                None => Ok(Vec::new()),
            }
        };
        let (updated, linked, money) = tokio::join!(updated, linked, money);
        updated?;
        linked?;
        Ok(money?.iter().filter_map(MoneyChange::read).collect())
    }
}
