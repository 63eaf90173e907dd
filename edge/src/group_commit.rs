//! Group commit: webhook handlers hand their verified events to writers. A writer commits whatever
//! arrived while its previous commit ran (capped at `EDGE_BATCH_MAX`) as one transaction and
//! answers every handler after that `COMMIT`. There is no waiting for a batch to fill: under light
//! load a batch is one event.
//!
//! Each writer owns one Postgres connection and pipelines it with two lanes that take turns: a
//! lane holds the turn from taking its batch until its `COMMIT` is sent, then the other lane takes
//! the next batch and sends it behind that `COMMIT`. Postgres starts on it while the first commit
//! is flushed and answered, so one backend stays busy, where two backends on separate connections
//! would each idle in turn and compete for the same pages.
//!
//! A batch that failed is retried by the ledger's write itself (`ledger::Sent::recorded`): an event
//! whose order stays locked elsewhere is answered 503 (Stripe retries it) and every other event
//! commits. The writers report their health to `/ready`: stalled with work in hand, or refused by
//! a read-only database.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::EdgeMetrics;
use common::admin::NotReady;
use common::ledger::{Applied, BatchEntry, BatchMeta, LedgerConnection, LedgerError, Source};
use common::stripe::event::StripeEvent;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Events waiting for a writer, beyond which handlers wait to enqueue (backpressure).
const QUEUE_CAPACITY: usize = 4096;

/// Lanes per writer connection: one sends its transaction while the other's commits.
const LANES: usize = 2;

/// The most connections one writer can hold at once: its line's connection, a lost one that a
/// lane still finishes with while the line opens its replacement, and one per lane for the
/// retries of a failed batch.
pub const CONNECTIONS_PER_WRITER: usize = 2 + LANES;

/// One verified event waiting for its commit.
struct Job {
    event: Arc<StripeEvent>,
    payload: String,
    request_id: String,
    reply: oneshot::Sender<Result<Applied, LedgerError>>,
}

impl Job {
    fn answer(self, result: Result<Applied, LedgerError>) {
        // The handler may be gone (client disconnected): the event is committed all the same,
        // and Stripe's retry will be answered as a duplicate.
        let _ = self.reply.send(result);
    }

    fn entry(&self) -> BatchEntry<'_> {
        BatchEntry {
            event: &self.event,
            payload: &self.payload,
            request_id: Some(&self.request_id),
        }
    }
}

/// What every writer needs.
struct Writer {
    pool: Pool,
    max_batch: usize,
    expect_livemode: Option<bool>,
    metrics: EdgeMetrics,
    health: Arc<Health>,
}

/// How the writers are doing, for `/ready`.
#[derive(Debug)]
struct Health {
    started: Instant,
    /// Lanes holding a batch now.
    working: AtomicUsize,
    /// When a batch last finished, or work last started after an idle spell (ms since `started`).
    progress_ms: AtomicU64,
    /// The last batch was refused because the database is read-only, and none has committed
    /// since.
    read_only: AtomicBool,
    /// A writer holding work for longer than this is stalled.
    stall_after: Duration,
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn batch_taken(&self) {
        if self.working.fetch_add(1, Ordering::AcqRel) == 0 {
            self.progress_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    fn batch_done(&self, read_only: bool) {
        self.progress_ms.store(self.now_ms(), Ordering::Release);
        self.read_only.store(read_only, Ordering::Release);
        self.working.fetch_sub(1, Ordering::AcqRel);
    }

    fn check(&self) -> Result<(), NotReady> {
        if self.read_only.load(Ordering::Acquire) {
            return Err(NotReady::ReadOnly);
        }
        let idle_for = self
            .now_ms()
            .saturating_sub(self.progress_ms.load(Ordering::Acquire));
        if self.working.load(Ordering::Acquire) > 0
            && Duration::from_millis(idle_for) > self.stall_after
        {
            return Err(NotReady::Component("writer_stalled"));
        }
        Ok(())
    }
}

/// One writer's connection. Its turn is held by a lane from taking a batch until that batch's
/// `COMMIT` is sent; it holds the connection, opened on first use and replaced once lost or left
/// mid-transaction by a lane that panicked or was cancelled.
#[derive(Default)]
struct Line {
    turn: tokio::sync::Mutex<Option<Arc<LedgerConnection>>>,
}

/// The handle handlers submit to; [`GroupCommit::shutdown`] finishes every queued event.
#[derive(Debug)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
    stop: watch::Sender<bool>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    pool: Pool,
    health: Arc<Health>,
}

impl GroupCommit {
    /// Starts `writers` writers on `pool`, which must allow [`CONNECTIONS_PER_WRITER`]
    /// connections per writer. A writer holding a batch for longer than `stall_after` makes
    /// [`GroupCommit::health`] report it stalled.
    pub fn start(
        pool: Pool,
        writers: usize,
        max_batch: usize,
        expect_livemode: Option<bool>,
        stall_after: Duration,
        metrics: EdgeMetrics,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let (stop, stopped) = watch::channel(false);
        let health = Arc::new(Health {
            started: Instant::now(),
            working: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(0),
            read_only: AtomicBool::new(false),
            stall_after,
        });
        let writer = Arc::new(Writer {
            pool: pool.clone(),
            max_batch: max_batch.max(1),
            expect_livemode,
            metrics,
            health: health.clone(),
        });
        let handles = (0..writers.max(1))
            .flat_map(|_| {
                let line = Arc::new(Line::default());
                (0..LANES).map(move |_| line.clone())
            })
            .map(|line| tokio::spawn(writer.clone().run(line, receiver.clone(), stopped.clone())))
            .collect();
        Self {
            queue,
            stop,
            writers: Mutex::new(handles),
            pool,
            health,
        }
    }

    /// Queues one verified event and waits for the commit that contains it.
    pub async fn record(
        &self,
        event: Arc<StripeEvent>,
        payload: String,
        request_id: &str,
    ) -> Result<Applied, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            event,
            payload,
            request_id: request_id.to_owned(),
            reply,
        };
        if self.queue.send(job).await.is_err() {
            return Err(LedgerError::Stopped("the edge is shutting down"));
        }
        // A dropped reply means a writer panicked: the event's fate is unknown, so Stripe retries.
        answer
            .await
            .unwrap_or(Err(LedgerError::Stopped("the ledger writer stopped")))
    }

    /// Stops taking events, commits every queued one, and waits for the writers to finish.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handles = match self.writers.lock() {
            Ok(mut handles) => std::mem::take(&mut *handles),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for handle in handles {
            let _ = handle.await;
        }
        self.pool.close();
    }

    /// Whether every writer is still running. One can only end early by panicking; its events
    /// are then answered with 5xx, and `/ready` reports it so that the process gets replaced.
    pub fn all_running(&self) -> bool {
        match self.writers.lock() {
            Ok(handles) => handles.iter().all(|h| !h.is_finished()),
            Err(_) => false,
        }
    }

    /// The writers' part of readiness: all running, none stalled with work in hand, and the
    /// database not refusing their writes.
    pub fn health(&self) -> Result<(), NotReady> {
        if !self.all_running() {
            return Err(NotReady::Component("ledger_writer"));
        }
        self.health.check()
    }

    /// Events waiting for a writer (not yet in a transaction).
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The writers' pool (its size and use are exported with the request pool's).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Writer {
    async fn run(
        self: Arc<Self>,
        line: Arc<Line>,
        queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            // The turn first, so that the batch holds everything that arrived until the
            // connection is free for it.
            let mut turn = line.turn.lock().await;
            let batch = {
                let mut queue = queue.lock().await;
                let next = tokio::select! {
                    job = queue.recv() => Some(job),
                    _ = stopped.wait_for(|stop| *stop) => None,
                };
                let first = match next {
                    Some(job) => job,
                    None => {
                        // No new events; the queued ones are still committed.
                        queue.close();
                        queue.recv().await
                    }
                };
                let Some(first) = first else { break };
                let mut batch = Vec::with_capacity(self.max_batch.min(64));
                batch.push(first);
                while batch.len() < self.max_batch {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                batch
            };
            let conn = match self.connection(&mut turn).await {
                Ok(conn) => conn,
                Err(e) => {
                    drop(turn);
                    for job in batch {
                        job.answer(Err(e.clone()));
                    }
                    continue;
                }
            };
            self.commit(conn, batch, turn).await;
        }
    }

    /// The line's connection, replaced by a new one from the pool if it was lost or left in a
    /// transaction.
    async fn connection(
        &self,
        slot: &mut Option<Arc<LedgerConnection>>,
    ) -> Result<Arc<LedgerConnection>, LedgerError> {
        match slot {
            Some(conn) if conn.is_usable() => Ok(conn.clone()),
            _ => {
                *slot = None;
                let conn = Arc::new(LedgerConnection::get(&self.pool).await?);
                *slot = Some(conn.clone());
                Ok(conn)
            }
        }
    }

    /// Commits one batch on `conn`, passing `turn` on once its `COMMIT` is sent, and answers each
    /// of its handlers.
    async fn commit<T>(&self, conn: Arc<LedgerConnection>, batch: Vec<Job>, turn: T) {
        self.health.batch_taken();
        self.metrics.batch_events.record_value(batch.len() as f64);
        let entries: Vec<BatchEntry<'_>> = batch.iter().map(Job::entry).collect();
        let sent = conn.send(&entries, self.meta()).await;
        drop(turn);
        let recorded = sent.recorded().await;
        self.metrics
            .commit_duration
            .record_value(recorded.commit_time.as_secs_f64());
        if recorded.split {
            self.metrics.batches_split.increment(1);
        }
        drop(entries);
        let read_only = recorded
            .answers
            .iter()
            .any(|a| a.as_ref().is_err_and(LedgerError::is_read_only));
        self.health.batch_done(read_only);
        for (job, answer) in batch.into_iter().zip(recorded.answers) {
            if matches!(answer, Err(LedgerError::OrderBusy)) {
                self.metrics.events_busy.increment(1);
            }
            job.answer(answer);
        }
    }

    fn meta(&self) -> BatchMeta {
        BatchMeta {
            source: Source::Webhook,
            expect_livemode: self.expect_livemode,
        }
    }
}
