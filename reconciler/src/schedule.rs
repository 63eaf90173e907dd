//! The daemon (`reconciler run`): a pass at start-up and then on `RECONCILE_SCHEDULE`
//! (tokio-cron-scheduler, UTC, seconds field), sweeps on `SWEEP_SCHEDULE` when set, never two at
//! once in one process, the order notifications' deliverers and the admin listener alongside, and
//! a shutdown that stops between pages and lets the deliveries in flight end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use common::admin::{AdminServer, Readiness};
use common::http::{Limits, ServeStats};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::Reconciler;
use crate::admin::AdminRoutes;
use crate::error::Error;
use crate::notify::Notifier;
use crate::runs::Trigger;
use crate::slot::PassSlot;

/// A daemon with its admin listener bound.
pub struct Daemon {
    reconciler: Arc<Reconciler>,
    listener: TcpListener,
}

impl Daemon {
    pub async fn bind(reconciler: Reconciler) -> Result<Self, Error> {
        let addr = reconciler.config.admin_listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self {
            reconciler: Arc::new(reconciler),
            listener,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Runs until `shutdown` resolves: the pass in flight stops after its current page, then the
    /// admin listener drains.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let grace = self.reconciler.config.shutdown_grace;
        let (stop_passes, stop) = watch::channel(false);
        let slot = PassSlot::default();
        let routes = Arc::new(AdminRoutes {
            reconciler: self.reconciler.clone(),
            slot: slot.clone(),
            stop: stop.clone(),
            flights: Arc::default(),
            support: Arc::new(crate::support::Support::new(self.reconciler.clone())?),
        });
        let admin = AdminServer::start(
            self.listener,
            self.reconciler.pool.clone(),
            routes,
            Arc::new(Readiness::new(&self.reconciler.config.db.tls)),
            Limits::default(),
            Arc::new(ServeStats::default()),
        )
        .await;
        let mut scheduler = schedule(&self.reconciler, &slot, &stop).await?;
        let notifier = Notifier::new(&self.reconciler)?.map(|n| tokio::spawn(n.run(stop.clone())));
        tracing::info!(
            schedule = self.reconciler.config.schedule.as_str(),
            version = common::build::VERSION,
            revision = common::build::REVISION,
            built = common::build::DATE,
            "reconciler running"
        );
        let first = {
            let (reconciler, slot, stop) = (self.reconciler.clone(), slot.clone(), stop.clone());
            tokio::spawn(async move { scheduled_pass(&reconciler, &slot, &stop).await })
        };

        shutdown.await;
        tracing::info!("shutdown requested: stopping after the page in flight");
        admin.start_draining();
        let _ = stop_passes.send(true);
        let _ = scheduler.shutdown().await;
        let _ = tokio::time::timeout(grace, async {
            let _ = first.await;
            slot.free().await;
            if let Some(notifier) = notifier {
                let _ = notifier.await;
            }
        })
        .await;
        admin.stop().await;
        tracing::info!("reconciler stopped");
        Ok(())
    }
}

/// The scheduler, started: a pass on every tick of `RECONCILE_SCHEDULE`, a sweep on every tick
/// of `SWEEP_SCHEDULE`.
async fn schedule(
    reconciler: &Arc<Reconciler>,
    slot: &PassSlot,
    stop: &watch::Receiver<bool>,
) -> Result<JobScheduler, Error> {
    let scheduler = JobScheduler::new().await?;
    let expression = reconciler.config.schedule.as_str();
    let job = {
        let (reconciler, slot, stop) = (reconciler.clone(), slot.clone(), stop.clone());
        Job::new_async(expression, move |_, _| {
            let (reconciler, slot, stop) = (reconciler.clone(), slot.clone(), stop.clone());
            Box::pin(async move { scheduled_pass(&reconciler, &slot, &stop).await })
        })?
    };
    scheduler.add(job).await?;
    if let Some(sweeps) = &reconciler.config.sweep_schedule {
        let (reconciler, slot, stop) = (reconciler.clone(), slot.clone(), stop.clone());
        let job = Job::new_async(sweeps.as_str(), move |_, _| {
            let (reconciler, slot, stop) = (reconciler.clone(), slot.clone(), stop.clone());
            Box::pin(async move { scheduled_sweep(&reconciler, &slot, &stop).await })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    Ok(scheduler)
}

/// Runs a sweep of `SWEEP_LOOKBACK` unless a pass or a sweep is running in this process (across
/// replicas, the pass lock makes one run at a time; the others record `skipped`).
async fn scheduled_sweep(reconciler: &Reconciler, slot: &PassSlot, stop: &watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    let Some(_taken) = slot.try_take() else {
        tracing::warn!("a pass or a sweep is still running; this sweep is skipped");
        return;
    };
    let (from, to) = crate::sweep::scheduled_window(reconciler, Utc::now());
    reconciler.sweep(Trigger::Schedule, from, to, stop).await;
}

/// Runs the pass of the current tick unless one is already running in this process (a slow pass
/// must not pile up behind the next tick). Across replicas, the tick's pass runs once: a replica
/// that finds it already done records `skipped`.
async fn scheduled_pass(reconciler: &Reconciler, slot: &PassSlot, stop: &watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    let Some(_taken) = slot.try_take() else {
        tracing::warn!("the previous pass is still running; this tick is skipped");
        return;
    };
    let tick = reconciler.config.schedule.tick(Utc::now());
    reconciler.pass_of_tick(Trigger::Schedule, tick, stop).await;
}
