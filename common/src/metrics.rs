//! Every metric name, its help text, its label values and the histogram buckets, declared once.
//! Dashboards and alert rules may only use names from this file. Known label values are
//! registered at zero at start-up so that every series exists before its first event.

use std::sync::OnceLock;

use metrics::{
    Counter, Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ledger::{AnomalyKind, OrderStatus, TRANSITIONS};

/// Latency buckets in seconds: 1 ms to 10 s, dense where webhook latencies live (1–50 ms).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Edge metric names.
pub mod edge {
    pub const WEBHOOK_REQUESTS_TOTAL: &str = "edge_webhook_requests_total";
    pub const WEBHOOK_REQUEST_DURATION_SECONDS: &str = "edge_webhook_request_duration_seconds";
    pub const WEBHOOK_REQUESTS_IN_FLIGHT: &str = "edge_webhook_requests_in_flight";
    pub const WEBHOOK_SECRET_MATCHES_TOTAL: &str = "edge_webhook_secret_matches_total";
    pub const ORDER_TRANSITIONS_TOTAL: &str = "edge_order_transitions_total";
    pub const ORPHAN_EVENTS_TOTAL: &str = "edge_orphan_events_total";
    pub const ORDER_ANOMALIES_TOTAL: &str = "edge_order_anomalies_total";
    pub const DB_POOL_CONNECTIONS: &str = "edge_db_pool_connections";
    pub const PROXY_REQUESTS_TOTAL: &str = "edge_proxy_requests_total";
    pub const PROXY_REQUEST_DURATION_SECONDS: &str = "edge_proxy_request_duration_seconds";
    pub const LEDGER_BATCH_EVENTS: &str = "edge_ledger_batch_events";
    pub const LEDGER_BATCHES_SPLIT_TOTAL: &str = "edge_ledger_batches_split_total";
}

/// Group commit batch sizes (events per transaction), up to `EDGE_BATCH_MAX`'s ceiling.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
];

/// Every edge metric name.
pub const EDGE_NAMES: [&str; 12] = [
    edge::WEBHOOK_REQUESTS_TOTAL,
    edge::WEBHOOK_REQUEST_DURATION_SECONDS,
    edge::WEBHOOK_REQUESTS_IN_FLIGHT,
    edge::WEBHOOK_SECRET_MATCHES_TOTAL,
    edge::ORDER_TRANSITIONS_TOTAL,
    edge::ORPHAN_EVENTS_TOTAL,
    edge::ORDER_ANOMALIES_TOTAL,
    edge::DB_POOL_CONNECTIONS,
    edge::PROXY_REQUESTS_TOTAL,
    edge::PROXY_REQUEST_DURATION_SECONDS,
    edge::LEDGER_BATCH_EVENTS,
    edge::LEDGER_BATCHES_SPLIT_TOTAL,
];

/// Every reconciler metric name.
pub const RECONCILER_NAMES: [&str; 10] = [
    reconciler::RUNS_TOTAL,
    reconciler::RUN_DURATION_SECONDS,
    reconciler::LAST_SUCCESS_TIMESTAMP_SECONDS,
    reconciler::EVENTS_SEEN_TOTAL,
    reconciler::EVENTS_MISSING_TOTAL,
    reconciler::EVENTS_BACKFILLED_TOTAL,
    reconciler::MISSING_EVENT_AGE_SECONDS,
    reconciler::STRIPE_REQUESTS_TOTAL,
    reconciler::STRIPE_REQUEST_DURATION_SECONDS,
    reconciler::STRIPE_RATE_LIMITED_TOTAL,
];

/// Reconciler metric names.
pub mod reconciler {
    pub const RUNS_TOTAL: &str = "reconciler_runs_total";
    pub const RUN_DURATION_SECONDS: &str = "reconciler_run_duration_seconds";
    pub const LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "reconciler_last_success_timestamp_seconds";
    pub const EVENTS_SEEN_TOTAL: &str = "reconciler_events_seen_total";
    pub const EVENTS_MISSING_TOTAL: &str = "reconciler_events_missing_total";
    pub const EVENTS_BACKFILLED_TOTAL: &str = "reconciler_events_backfilled_total";
    pub const MISSING_EVENT_AGE_SECONDS: &str = "reconciler_missing_event_age_seconds";
    pub const STRIPE_REQUESTS_TOTAL: &str = "reconciler_stripe_requests_total";
    pub const STRIPE_REQUEST_DURATION_SECONDS: &str = "reconciler_stripe_request_duration_seconds";
    pub const STRIPE_RATE_LIMITED_TOTAL: &str = "reconciler_stripe_rate_limited_total";
}

/// `outcome` of `edge_webhook_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Processed,
    Duplicate,
    InvalidSignature,
    InvalidPayload,
    TooLarge,
    StorageError,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 6] = [
        Self::Processed,
        Self::Duplicate,
        Self::InvalidSignature,
        Self::InvalidPayload,
        Self::TooLarge,
        Self::StorageError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidPayload => "invalid_payload",
            Self::TooLarge => "too_large",
            Self::StorageError => "storage_error",
        }
    }
}

/// `state` of `edge_db_pool_connections`.
pub const POOL_STATES: [&str; 4] = ["max", "open", "idle", "waiting"];
/// `status_class` of `edge_proxy_requests_total` (`error`: no answer from the app at all).
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// The HTTP status class label of a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The process-wide Prometheus recorder (installed on first use; one per process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(edge::LEDGER_BATCH_EVENTS.into()),
                    BATCH_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global: render an empty registry rather than fail.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Handles to every edge series, created once at start-up (known label values start at zero) and
/// shared by the handlers, so recording is a lookup-free atomic add.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    webhook_requests: Vec<Counter>,
    webhook_duration: Vec<Histogram>,
    pub webhook_in_flight: Gauge,
    secret_matches: Vec<Counter>,
    transitions: Vec<((OrderStatus, OrderStatus), Counter)>,
    pub orphans: Counter,
    anomalies: Vec<Counter>,
    pool: Vec<Gauge>,
    proxy_requests: Vec<Counter>,
    pub proxy_duration: Histogram,
    pub batch_events: Histogram,
    pub batches_split: Counter,
}

impl EdgeMetrics {
    /// Describes every edge metric and registers its series.
    pub fn register(secret_count: usize) -> Self {
        use edge::*;
        handle();
        describe_counter!(
            WEBHOOK_REQUESTS_TOTAL,
            Unit::Count,
            "Webhook requests by outcome."
        );
        describe_histogram!(
            WEBHOOK_REQUEST_DURATION_SECONDS,
            Unit::Seconds,
            "Webhook request latency, from first byte to answer, by outcome."
        );
        describe_gauge!(
            WEBHOOK_REQUESTS_IN_FLIGHT,
            Unit::Count,
            "Webhook requests being processed now."
        );
        describe_counter!(
            WEBHOOK_SECRET_MATCHES_TOTAL,
            Unit::Count,
            "Verified webhooks by the index of the secret (in STRIPE_WEBHOOK_SECRET) that matched."
        );
        describe_counter!(
            ORDER_TRANSITIONS_TOTAL,
            Unit::Count,
            "Order status changes made by webhooks."
        );
        describe_counter!(
            ORPHAN_EVENTS_TOTAL,
            Unit::Count,
            "Order events stored with no matching order."
        );
        describe_counter!(
            ORDER_ANOMALIES_TOTAL,
            Unit::Count,
            "Events kept but not applied: amount/currency mismatch or the wrong livemode."
        );
        describe_gauge!(
            DB_POOL_CONNECTIONS,
            Unit::Count,
            "Database pool connections by state."
        );
        describe_counter!(
            PROXY_REQUESTS_TOTAL,
            Unit::Count,
            "Proxied requests by upstream status class (error: the app did not answer)."
        );
        describe_histogram!(
            PROXY_REQUEST_DURATION_SECONDS,
            Unit::Seconds,
            "Time until the upstream app's response headers arrived."
        );
        describe_histogram!(
            LEDGER_BATCH_EVENTS,
            Unit::Count,
            "Webhook events per group-commit transaction."
        );
        describe_counter!(
            LEDGER_BATCHES_SPLIT_TOTAL,
            Unit::Count,
            "Group-commit batches that failed and were retried one event at a time."
        );
        let zero = |c: Counter| {
            c.increment(0);
            c
        };
        let m = Self {
            webhook_requests: WebhookOutcome::ALL
                .iter()
                .map(|o| zero(metrics::counter!(WEBHOOK_REQUESTS_TOTAL, "outcome" => o.as_str())))
                .collect(),
            webhook_duration: WebhookOutcome::ALL
                .iter()
                .map(|o| metrics::histogram!(WEBHOOK_REQUEST_DURATION_SECONDS, "outcome" => o.as_str()))
                .collect(),
            webhook_in_flight: metrics::gauge!(WEBHOOK_REQUESTS_IN_FLIGHT),
            secret_matches: (0..secret_count)
                .map(|i| {
                    zero(metrics::counter!(WEBHOOK_SECRET_MATCHES_TOTAL, "secret_index" => i.to_string()))
                })
                .collect(),
            transitions: TRANSITIONS
                .iter()
                .map(|&(from, to)| {
                    let c = metrics::counter!(ORDER_TRANSITIONS_TOTAL, "from" => from.as_str(), "to" => to.as_str());
                    ((from, to), zero(c))
                })
                .collect(),
            orphans: zero(metrics::counter!(ORPHAN_EVENTS_TOTAL)),
            anomalies: AnomalyKind::ALL
                .iter()
                .map(|k| zero(metrics::counter!(ORDER_ANOMALIES_TOTAL, "kind" => k.as_str())))
                .collect(),
            pool: POOL_STATES
                .iter()
                .map(|s| metrics::gauge!(DB_POOL_CONNECTIONS, "state" => *s))
                .collect(),
            proxy_requests: STATUS_CLASSES
                .iter()
                .map(|c| zero(metrics::counter!(PROXY_REQUESTS_TOTAL, "status_class" => *c)))
                .collect(),
            proxy_duration: metrics::histogram!(PROXY_REQUEST_DURATION_SECONDS),
            batch_events: metrics::histogram!(LEDGER_BATCH_EVENTS),
            batches_split: zero(metrics::counter!(LEDGER_BATCHES_SPLIT_TOTAL)),
        };
        m.webhook_in_flight.set(0.0);
        m
    }

    /// Counts and times one webhook answer.
    pub fn webhook(&self, outcome: WebhookOutcome, seconds: f64) {
        let i = WebhookOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.webhook_requests[i].increment(1);
        self.webhook_duration[i].record(seconds);
    }

    pub fn secret_matched(&self, index: usize) {
        if let Some(c) = self.secret_matches.get(index) {
            c.increment(1);
        }
    }

    pub fn transition(&self, from: OrderStatus, to: OrderStatus) {
        if let Some((_, c)) = self.transitions.iter().find(|(k, _)| *k == (from, to)) {
            c.increment(1);
        }
    }

    pub fn anomaly(&self, kind: AnomalyKind) {
        let i = AnomalyKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.anomalies[i].increment(1);
    }

    /// Sets the pool gauges, in the order of [`POOL_STATES`].
    pub fn pool(&self, values: [usize; 4]) {
        for (gauge, v) in self.pool.iter().zip(values) {
            gauge.set(v as f64);
        }
    }

    /// Counts one proxied request by its status class label.
    pub fn proxied(&self, class: &str) {
        if let Some(i) = STATUS_CLASSES.iter().position(|c| *c == class) {
            self.proxy_requests[i].increment(1);
        }
    }
}

/// `trigger` of `reconciler_runs_total`.
pub const RUN_TRIGGERS: [&str; 3] = ["schedule", "manual", "cli"];
/// `outcome` of `reconciler_runs_total`.
pub const RUN_OUTCOMES: [&str; 3] = ["ok", "failed", "skipped"];
/// `endpoint` of the reconciler's Stripe request metrics.
pub const STRIPE_ENDPOINTS: [&str; 3] = [
    "events.list",
    "events.retrieve",
    "checkout.sessions.retrieve",
];

/// Handles to every reconciler series, created once at start-up.
#[derive(Debug, Clone)]
pub struct ReconcilerMetrics {
    runs: Vec<((&'static str, &'static str), Counter)>,
    pub run_duration: Histogram,
    pub last_success: Gauge,
    pub events_seen: Counter,
    pub events_missing: Counter,
    pub events_backfilled: Counter,
    pub missing_event_age: Histogram,
    stripe_requests: Vec<((&'static str, &'static str), Counter)>,
    stripe_duration: Vec<(&'static str, Histogram)>,
    stripe_rate_limited: Vec<(&'static str, Counter)>,
}

impl ReconcilerMetrics {
    pub fn register() -> Self {
        use reconciler::*;
        handle();
        describe_counter!(
            RUNS_TOTAL,
            Unit::Count,
            "Reconcile passes by trigger and outcome."
        );
        describe_histogram!(
            RUN_DURATION_SECONDS,
            Unit::Seconds,
            "Duration of reconcile passes."
        );
        describe_gauge!(
            LAST_SUCCESS_TIMESTAMP_SECONDS,
            Unit::Seconds,
            "Unix time of the end of the last successful window pass."
        );
        describe_counter!(EVENTS_SEEN_TOTAL, Unit::Count, "Events listed from Stripe.");
        describe_counter!(
            EVENTS_MISSING_TOTAL,
            Unit::Count,
            "Listed events the ledger lacked."
        );
        describe_counter!(
            EVENTS_BACKFILLED_TOTAL,
            Unit::Count,
            "Missing events recorded by the reconciler."
        );
        describe_histogram!(
            MISSING_EVENT_AGE_SECONDS,
            Unit::Seconds,
            "Age of each missing event when found: how late the webhook path was."
        );
        describe_counter!(
            STRIPE_REQUESTS_TOTAL,
            Unit::Count,
            "Requests to Stripe by endpoint and status class (error: no answer)."
        );
        describe_histogram!(
            STRIPE_REQUEST_DURATION_SECONDS,
            Unit::Seconds,
            "Stripe request latency by endpoint."
        );
        describe_counter!(
            STRIPE_RATE_LIMITED_TOTAL,
            Unit::Count,
            "Stripe answers 429 (rate limited) by endpoint; each was retried with backoff."
        );
        let zero = |c: Counter| {
            c.increment(0);
            c
        };
        let mut runs = Vec::new();
        for t in RUN_TRIGGERS {
            for o in RUN_OUTCOMES {
                runs.push((
                    (t, o),
                    zero(metrics::counter!(RUNS_TOTAL, "trigger" => t, "outcome" => o)),
                ));
            }
        }
        let mut stripe_requests = Vec::new();
        for e in STRIPE_ENDPOINTS {
            for c in STATUS_CLASSES {
                let counter =
                    metrics::counter!(STRIPE_REQUESTS_TOTAL, "endpoint" => e, "status_class" => c);
                stripe_requests.push(((e, c), zero(counter)));
            }
        }
        Self {
            runs,
            run_duration: metrics::histogram!(RUN_DURATION_SECONDS),
            last_success: metrics::gauge!(LAST_SUCCESS_TIMESTAMP_SECONDS),
            events_seen: zero(metrics::counter!(EVENTS_SEEN_TOTAL)),
            events_missing: zero(metrics::counter!(EVENTS_MISSING_TOTAL)),
            events_backfilled: zero(metrics::counter!(EVENTS_BACKFILLED_TOTAL)),
            missing_event_age: metrics::histogram!(MISSING_EVENT_AGE_SECONDS),
            stripe_requests,
            stripe_duration: STRIPE_ENDPOINTS
                .iter()
                .map(|e| {
                    (
                        *e,
                        metrics::histogram!(STRIPE_REQUEST_DURATION_SECONDS, "endpoint" => *e),
                    )
                })
                .collect(),
            stripe_rate_limited: STRIPE_ENDPOINTS
                .iter()
                .map(|e| {
                    (
                        *e,
                        zero(metrics::counter!(STRIPE_RATE_LIMITED_TOTAL, "endpoint" => *e)),
                    )
                })
                .collect(),
        }
    }

    pub fn run(&self, trigger: &str, outcome: &str) {
        if let Some((_, c)) = self.runs.iter().find(|(k, _)| *k == (trigger, outcome)) {
            c.increment(1);
        }
    }

    /// Counts a 429 from Stripe.
    pub fn rate_limited(&self, endpoint: &str) {
        if let Some((_, c)) = self
            .stripe_rate_limited
            .iter()
            .find(|(e, _)| *e == endpoint)
        {
            c.increment(1);
        }
    }

    pub fn stripe_request(&self, endpoint: &str, class: &str, seconds: f64) {
        if let Some((_, c)) = self
            .stripe_requests
            .iter()
            .find(|(k, _)| *k == (endpoint, class))
        {
            c.increment(1);
        }
        if let Some((_, h)) = self.stripe_duration.iter().find(|(e, _)| *e == endpoint) {
            h.record(seconds);
        }
    }
}

/// Renders the Prometheus text exposition.
pub fn render() -> String {
    handle().render()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_carry_their_binary_prefix() {
        for n in super::EDGE_NAMES {
            assert!(n.starts_with("edge_"), "{n}");
        }
        for n in super::RECONCILER_NAMES {
            assert!(n.starts_with("reconciler_"), "{n}");
        }
    }
}
