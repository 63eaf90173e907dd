//! Order notifications: the daemon's deliverers of the transactional outbox. The ledger inserts
//! one `order_transitions` row per change of an order, in the change's transaction, and signals
//! `NOTIFY order_transitions` at its commit; here, `APP_NOTIFY_CONCURRENCY` workers, woken by
//! `LISTEN` (and by a poll, in case a signal is missed), each claim the next due row in a
//! transaction of their own (`FOR UPDATE SKIP LOCKED`: replicas share the work, and a row is never
//! in two deliveries at once), post it to the app, and record how it ended in the same
//! transaction. A row waits for every earlier row of its order; a failure retries with
//! exponential backoff and jitter until `APP_NOTIFY_MAX_AGE`, then the row is dead (alerted,
//! redeliverable). At least once: a crash between the app's 2xx and the commit delivers it again,
//! with the same `id`.
//!
//! # Layout
//! - this file: the workers, the wake-ups and the gauges.
//! - [`payload`]: the row, the body the app receives and its signature.
//! - [`deliver`]: one bounded HTTP attempt.
//! - [`store`]: the SQL: claim, record, backlog, redeliver, an order's notifications.

pub mod deliver;
pub mod payload;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::config::DbConfig;
use common::ledger::outbox::CHANNEL;
use deadpool_postgres::Pool;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::Reconciler;
use crate::config::NotifyConfig;
use crate::error::Error;
use crate::metrics::{NotifyOutcome, ReconcilerMetrics};
use deliver::{Answer, Deliverer};
use payload::Notification;
use store::Ended;

/// A worker with nothing to deliver looks again at least this often (a missed wake-up, a retry
/// falling due).
pub const POLL: Duration = Duration::from_secs(1);

/// How often the backlog gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// The first retry's delay, and the most any retry waits.
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(600);

/// The deliverers of one reconciler process.
pub struct Notifier {
    /// The workers' own pool: one connection per delivery in flight (the row's lock lives in its
    /// transaction).
    pool: Pool,
    db: DbConfig,
    config: NotifyConfig,
    deliverer: Deliverer,
    livemode: Option<bool>,
    metrics: ReconcilerMetrics,
    wake: Notify,
}

impl Notifier {
    /// `None` when `APP_NOTIFY_URL` is unset: transitions are recorded but not delivered.
    pub fn new(reconciler: &Reconciler) -> Result<Option<Arc<Self>>, Error> {
        let Some(config) = reconciler.config.notify.clone() else {
            return Ok(None);
        };
        let db = DbConfig {
            pool_size: config.concurrency,
            ..reconciler.config.db.clone()
        };
        Ok(Some(Arc::new(Self {
            pool: common::db::pool(&db)?,
            deliverer: Deliverer::new(&config).map_err(Error::NotifyClient)?,
            db,
            config,
            livemode: reconciler.config.expect_livemode,
            metrics: reconciler.metrics.clone(),
            wake: Notify::new(),
        })))
    }

    /// Delivers until `stop` turns true; then lets the attempts in flight end (each is bounded by
    /// `APP_NOTIFY_TIMEOUT_SECS`).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            url = %redacted(&self.config.url),
            concurrency = self.config.concurrency,
            "delivering order notifications"
        );
        let mut helpers = JoinSet::new();
        helpers.spawn(self.clone().listen());
        helpers.spawn(self.clone().gauges());
        let mut workers = JoinSet::new();
        for _ in 0..self.config.concurrency {
            workers.spawn(self.clone().work(stop.clone()));
        }
        let _ = stop.wait_for(|stopped| *stopped).await;
        helpers.abort_all();
        self.wake.notify_waiters();
        while workers.join_next().await.is_some() {}
    }

    /// One worker: the next due notification, or a wait for a wake-up, until stopped.
    async fn work(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.deliver_next().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "order notifications: cannot claim or record"),
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Claims, delivers and records one notification; `false` when none is due.
    pub async fn deliver_next(&self) -> Result<bool, Error> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(notification) = store::claim(&tx, self.livemode).await? else {
            tx.commit().await?;
            return Ok(false);
        };
        let (answer, took) = self.deliverer.attempt(&notification).await;
        self.metrics.notify_duration.record((), took.as_secs_f64());
        let ended = self.ended(&notification, answer);
        store::record(&tx, notification.row_id, &ended).await?;
        tx.commit().await?;
        log(&notification, &ended, took);
        self.metrics.notifications.inc(match ended {
            Ended::Delivered => NotifyOutcome::Delivered,
            Ended::Retry { .. } => NotifyOutcome::Retried,
            Ended::Dead { .. } => NotifyOutcome::Dead,
        });
        Ok(true)
    }

    /// What an answer means for the row: acknowledged, another attempt later, or dead when it
    /// has been queued for `APP_NOTIFY_MAX_AGE`.
    fn ended(&self, n: &Notification, answer: Answer) -> Ended {
        match answer {
            Answer::Acknowledged => Ended::Delivered,
            Answer::Failed(error) => {
                let age = (Utc::now() - n.queued_at).to_std().unwrap_or_default();
                if age >= self.config.max_age {
                    Ended::Dead { error }
                } else {
                    let retry = u32::try_from(n.attempts + 1).unwrap_or(u32::MAX);
                    Ended::Retry {
                        after: common::backoff::delay(RETRY_BASE, RETRY_CAP, retry),
                        error,
                    }
                }
            }
        }
    }

    /// Wakes the workers on every `NOTIFY order_transitions`, reconnecting when the listening
    /// connection is lost (the workers' poll covers the gap).
    async fn listen(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            match common::db::listen(&self.db, CHANNEL).await {
                Ok((_client, mut woken)) => {
                    failures = 0;
                    self.wake.notify_waiters();
                    while woken.recv().await.is_some() {
                        self.wake.notify_waiters();
                    }
                    tracing::warn!("order notifications: the LISTEN connection was lost");
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "order notifications: cannot LISTEN; polling");
                }
            }
            let pause =
                common::backoff::delay(Duration::from_secs(1), Duration::from_secs(30), failures);
            tokio::time::sleep(pause).await;
        }
    }

    /// Refreshes the backlog gauges every few seconds.
    async fn gauges(self: Arc<Self>) {
        let mut tick = tokio::time::interval(GAUGES_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let backlog = match self.pool.get().await {
                Ok(client) => store::backlog(&**client, self.livemode).await,
                Err(e) => {
                    tracing::debug!(error = %e, "order notification gauges: no connection");
                    continue;
                }
            };
            match backlog {
                Ok(b) => {
                    self.metrics.notify_lag.set((), b.lag_seconds);
                    self.metrics.notify_pending.set((), b.pending as f64);
                    self.metrics.notify_dead.set((), b.dead as f64);
                }
                Err(e) => tracing::debug!(error = %e, "order notification gauges"),
            }
        }
    }
}

fn log(n: &Notification, ended: &Ended, took: Duration) {
    let id = n.id();
    let attempt = n.attempts + 1;
    let ms = took.as_millis() as u64;
    match ended {
        Ended::Delivered => tracing::info!(
            notification = %id, order_id = %n.order_id, kind = %n.kind, attempt, ms,
            "order notification delivered"
        ),
        Ended::Retry { after, error } => tracing::warn!(
            notification = %id, order_id = %n.order_id, kind = %n.kind, attempt, ms,
            retry_in_secs = after.as_secs(), error = %error,
            "order notification not acknowledged; retrying"
        ),
        Ended::Dead { error } => tracing::error!(
            notification = %id, order_id = %n.order_id, kind = %n.kind, attempt, ms,
            error = %error,
            "order notification dead: not acknowledged within APP_NOTIFY_MAX_AGE; redeliver it once the app is fixed"
        ),
    }
}

/// The URL without its user information or query (either may carry a credential).
fn redacted(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}
