//! Every reconciler metric, declared once (name, help, kind, labels); dashboards and alert rules
//! may only use these names. Known label values start at zero.

use common::build::BuildInfo;
use common::ledger::money::{DisputeStatus, MoneySeen, RefundStatus};
use common::metrics::StatusClass;

use crate::runs::{RunStatus, Trigger};

common::label! {
    /// `endpoint` of the Stripe request metrics.
    pub enum Endpoint: "endpoint" {
        EventsList = "events.list",
        EventsRetrieve = "events.retrieve",
        SessionsRetrieve = "checkout.sessions.retrieve",
        SessionsList = "checkout.sessions.list",
        RefundsList = "refunds.list",
        DisputesList = "disputes.list",
    }
}

common::label! {
    /// What support did from the support page (`action` of `reconciler_support_actions_total`).
    pub enum SupportAction: "action" {
        Reconcile = "reconcile",
        Redeliver = "redeliver",
    }
}

common::label! {
    /// The object list a sweep read (`list` of the sweep counters).
    pub enum SweepList: "list" {
        CheckoutSessions = "checkout_sessions",
        Refunds = "refunds",
        Disputes = "disputes",
    }
}

impl From<crate::stripe_api::ObjectList> for SweepList {
    fn from(list: crate::stripe_api::ObjectList) -> Self {
        use crate::stripe_api::ObjectList;
        match list {
            ObjectList::CheckoutSessions => Self::CheckoutSessions,
            ObjectList::Refunds => Self::Refunds,
            ObjectList::Disputes => Self::Disputes,
        }
    }
}

common::label! {
    /// How a delivery attempt of an order notification ended.
    pub enum NotifyOutcome: "outcome" {
        Delivered = "delivered",
        Retried = "retried",
        Dead = "dead",
    }
}

common::declare_metrics! {
    /// Handles to every reconciler series, created once at start-up.
    pub struct ReconcilerMetrics() {
        /// Reconcile passes by trigger and outcome.
        runs: Counters<(Trigger, RunStatus)> = "reconciler_runs_total", Count, for RunStatus::outcomes();
        /// Duration of reconcile passes.
        run_duration: Histograms<()> = "reconciler_run_duration_seconds", Seconds;
        /// Unix time of the end of the last successful window pass.
        last_success: Gauges<()> = "reconciler_last_success_timestamp_seconds", Seconds;
        /// Events listed from Stripe.
        events_seen: Counters<()> = "reconciler_events_seen_total", Count;
        /// Listed events the ledger lacked.
        events_missing: Counters<()> = "reconciler_events_missing_total", Count;
        /// Missing events recorded by the reconciler.
        events_backfilled: Counters<()> = "reconciler_events_backfilled_total", Count;
        /// Object-level sweeps by trigger and outcome.
        sweep_runs: Counters<(Trigger, RunStatus)> = "reconciler_sweep_runs_total", Count, for RunStatus::outcomes();
        /// Duration of sweeps.
        sweep_duration: Histograms<()> = "reconciler_sweep_duration_seconds", Seconds;
        /// Unix time of the end of the last successful sweep.
        sweep_last_success: Gauges<()> = "reconciler_sweep_last_success_timestamp_seconds", Seconds;
        /// Pages of objects a sweep listed, by list (one Stripe request each).
        sweep_pages: Counters<SweepList> = "reconciler_sweep_pages_total", Count;
        /// Objects whose state their order lacked, applied by a sweep, by list.
        sweep_objects_applied: Counters<SweepList> = "reconciler_sweep_objects_applied_total", Count;
        /// Actions taken from the support page, by action.
        support_actions: Counters<SupportAction> = "reconciler_support_actions_total", Count;
        /// Refund events backfilled (or swept) to their order, by the refund's status.
        refunds: Counters<RefundStatus> = "reconciler_refunds_total", Count;
        /// Dispute events backfilled to their order, by the dispute's status.
        disputes: Counters<DisputeStatus> = "reconciler_disputes_total", Count;
        /// Seconds of Stripe's event history in windows not scanned yet, as of the last pass: 0
        /// when caught up; a backlog larger than one pass drains across passes.
        backlog: Gauges<()> = "reconciler_backlog_seconds", Seconds;
        /// Age of each missing event when found: how late the webhook path was.
        missing_event_age: Histograms<()> = "reconciler_missing_event_age_seconds", Seconds;
        /// Requests to Stripe by endpoint and status class (error: no answer).
        stripe_requests: Counters<(Endpoint, StatusClass)> = "reconciler_stripe_requests_total", Count;
        /// Stripe request latency by endpoint.
        stripe_duration: Histograms<Endpoint> = "reconciler_stripe_request_duration_seconds", Seconds;
        /// Stripe answers 429 (rate limited) by endpoint; each was retried with backoff.
        stripe_rate_limited: Counters<Endpoint> = "reconciler_stripe_rate_limited_total", Count;
        /// Order notification attempts by how they ended.
        notifications: Counters<NotifyOutcome> = "reconciler_app_notifications_total", Count;
        /// Age of the oldest order notification not yet acknowledged by the app (0 when none).
        notify_lag: Gauges<()> = "reconciler_app_notify_lag_seconds", Seconds;
        /// Order notifications waiting for delivery (retrying included).
        notify_pending: Gauges<()> = "reconciler_app_notify_pending", Count;
        /// Dead order notifications (not acknowledged within APP_NOTIFY_MAX_AGE, not redelivered).
        notify_dead: Gauges<()> = "reconciler_app_notify_dead", Count;
        /// Duration of each delivery attempt to the app.
        notify_duration: Histograms<()> = "reconciler_app_notify_duration_seconds", Seconds;
        /// 1 when /ready answers 200, else 0.
        ready: Gauges<()> = "reconciler_ready", Count;
        /// The build running: always 1, labelled with its version and git revision.
        build_info: Gauges<BuildInfo> = "reconciler_build_info", Count;
    }
}

impl ReconcilerMetrics {
    /// Counts and times one Stripe request.
    pub fn stripe_request(&self, endpoint: Endpoint, class: StatusClass, seconds: f64) {
        self.stripe_requests.inc((endpoint, class));
        self.stripe_duration.record(endpoint, seconds);
    }
}

impl ReconcilerMetrics {
    /// Counts the refund or dispute an applied event carried.
    pub fn money(&self, seen: Option<MoneySeen>) {
        match seen {
            Some(MoneySeen::Refund(status)) => self.refunds.inc(status),
            Some(MoneySeen::Dispute(status)) => self.disputes.inc(status),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_carry_the_reconciler_prefix() {
        for n in super::ReconcilerMetrics::NAMES {
            assert!(n.starts_with("reconciler_"), "{n}");
        }
    }
}
