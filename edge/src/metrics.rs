//! Every edge metric, declared once (name, help, kind, labels); dashboards and alert rules may
//! only use these names. Known label values start at zero, so every series exists before its
//! first event.

use crate::config::MAX_WEBHOOK_SECRETS;
use common::build::BuildInfo;
use common::ledger::money::{DisputeStatus, RefundStatus};
use common::ledger::status::DisputeDue;
use common::ledger::{AnomalyKind, OrderStatus, TRANSITIONS};
use common::metrics::{Label, LabelSet, StatusClass};
use common::stripe::signature::SignatureError;

common::label! {
    /// `outcome` of the webhook metrics.
    pub enum WebhookOutcome: "outcome" {
        Processed = "processed",
        Duplicate = "duplicate",
        InvalidSignature = "invalid_signature",
        InvalidPayload = "invalid_payload",
        TooLarge = "too_large",
        StorageError = "storage_error",
        /// The head or the body did not arrive in time.
        Timeout = "timeout",
        /// Refused for the body budget (503, Stripe retries).
        Overloaded = "overloaded",
    }
}

common::label! {
    /// `listener` of the connection metrics.
    pub enum Listener: "listener" {
        Public = "public",
        Admin = "admin",
    }
}

common::label! {
    /// What a reload re-read.
    pub enum Reloaded: "what" {
        WebhookSecrets = "webhook_secrets",
        TlsCertificate = "tls_certificate",
    }
}

common::label! {
    /// How a reload went.
    pub enum ReloadOutcome: "outcome" {
        Ok = "ok",
        Failed = "failed",
    }
}

common::label! {
    /// `reason` of `edge_connections_closed_total`.
    pub enum CloseReason: "reason" {
        /// No complete request head within EDGE_HEADER_TIMEOUT_SECS of accept.
        HeadTimeout = "head_timeout",
        /// A keep-alive connection with no request in progress, idle too long.
        Idle = "idle",
        /// Idle the longest when a new connection arrived at EDGE_MAX_CONNECTIONS (a connection
        /// whose every response is stuck on its peer counts as idle).
        Evicted = "evicted",
        /// Every response in progress stuck on the peer (a flow-control window kept at zero, a
        /// download never read) for the stall time-out.
        Stalled = "stalled",
    }
}

common::label! {
    /// `pool` of the database pool gauges.
    pub enum PoolName: "pool" {
        /// The group-commit writers' connections (every webhook write).
        Writer = "writer",
        /// Readiness probes and the reconcile status read.
        Admin = "admin",
    }
}

common::label! {
    /// `state` of the database pool gauges.
    pub enum PoolState: "state" {
        Max = "max",
        Open = "open",
        Idle = "idle",
        Waiting = "waiting",
    }
}

/// `secret_index` of `edge_webhook_secret_matches_total`: the position of the secret that
/// verified a delivery in `STRIPE_WEBHOOK_SECRET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretIndex(pub usize);

impl SecretIndex {
    /// The indexes of `count` configured secrets.
    pub fn first(count: usize) -> Vec<Self> {
        (0..count.min(MAX_WEBHOOK_SECRETS)).map(Self).collect()
    }
}

impl Label for SecretIndex {
    const KEY: &'static str = "secret_index";
    const COUNT: usize = MAX_WEBHOOK_SECRETS;
    fn index(self) -> usize {
        self.0
    }
    fn all() -> Vec<Self> {
        Self::first(MAX_WEBHOOK_SECRETS)
    }
    fn value(self) -> String {
        self.0.to_string()
    }
}

/// `from` and `to` of `edge_order_transitions_total`: an order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub OrderStatus);

impl Label for Status {
    const KEY: &'static str = "status";
    const COUNT: usize = OrderStatus::ALL.len();
    fn index(self) -> usize {
        self.0 as usize
    }
    fn all() -> Vec<Self> {
        OrderStatus::ALL.into_iter().map(Self).collect()
    }
    fn value(self) -> String {
        self.0.as_str().to_owned()
    }
}

/// An order transition, labelled `from` and `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition(pub OrderStatus, pub OrderStatus);

impl Transition {
    /// The transitions the state machine can make.
    pub fn possible() -> Vec<Self> {
        TRANSITIONS.iter().map(|&(f, t)| Self(f, t)).collect()
    }
}

impl LabelSet for Transition {
    const SLOTS: usize = OrderStatus::ALL.len() * OrderStatus::ALL.len();
    fn slot(self) -> usize {
        Status(self.0).index() * <Status as Label>::COUNT + Status(self.1).index()
    }
    fn values() -> Vec<Self> {
        Self::possible()
    }
    fn pairs(self) -> Vec<(&'static str, String)> {
        vec![
            ("from", self.0.as_str().to_owned()),
            ("to", self.1.as_str().to_owned()),
        ]
    }
}

common::declare_metrics! {
    /// Handles to every edge series, created once at start-up and shared by the handlers, so
    /// that recording is a lookup-free atomic add.
    pub struct EdgeMetrics() {
        /// Webhook requests by outcome.
        webhook_requests: Counters<WebhookOutcome> = "edge_webhook_requests_total", Count;
        /// Webhook request latency, from first byte to answer, by outcome.
        webhook_duration: Histograms<WebhookOutcome> = "edge_webhook_request_duration_seconds", Seconds;
        /// Webhook requests being processed now.
        webhook_in_flight: Gauges<()> = "edge_webhook_requests_in_flight", Count;
        /// Webhooks refused for their signature, by reason: no_match and too_old are what
        /// Stripe's own deliveries fail with (a wrong secret, a clock off); the others are junk.
        signature_failures: Counters<SignatureError> = "edge_webhook_signature_failures_total", Count;
        /// Verified webhooks by the index of the secret (in STRIPE_WEBHOOK_SECRET) that matched.
        secret_matches: Counters<SecretIndex> = "edge_webhook_secret_matches_total", Count;
        /// Configuration re-read on SIGHUP (and, for the certificate, when its files change), by
        /// what and outcome: a failed reload keeps what was in force.
        reloads: Counters<(Reloaded, ReloadOutcome)> = "edge_config_reloads_total", Count;
        /// When the public listener's TLS certificate expires (unix time; EDGE_TLS_CERT_FILE, as
        /// of the last load). Absent without HTTPS.
        tls_expiry: Gauges<()> = "edge_tls_certificate_expiry_timestamp_seconds", Seconds;
        /// Webhook secrets in force (STRIPE_WEBHOOK_SECRET), as of the last (re)load.
        secrets_active: Gauges<()> = "edge_webhook_secrets_active", Count;
        /// Order status changes made by webhooks.
        transitions: Counters<Transition> = "edge_order_transitions_total", Count;
        /// Refund events applied to their order, by the refund's status.
        refunds: Counters<RefundStatus> = "edge_refunds_total", Count;
        /// Dispute events applied to their order, by the dispute's status.
        disputes: Counters<DisputeStatus> = "edge_disputes_total", Count;
        /// Order events stored with no matching order.
        orphans: Counters<()> = "edge_orphan_events_total", Count;
        /// Events kept but not applied: amount/currency mismatch or the wrong livemode.
        anomalies: Counters<AnomalyKind> = "edge_order_anomalies_total", Count;
        /// Database pool connections by pool and state.
        pool: Gauges<(PoolName, PoolState)> = "edge_db_pool_connections", Count;
        /// Proxied requests by upstream status class (error: the app did not answer).
        proxy_requests: Counters<StatusClass> = "edge_proxy_requests_total", Count;
        /// Time until the upstream app's response headers arrived.
        proxy_duration: Histograms<()> = "edge_proxy_request_duration_seconds", Seconds;
        /// Proxied requests in flight now (each holds an upstream connection until its answer has
        /// streamed back).
        proxy_in_flight: Gauges<()> = "edge_proxy_requests_in_flight", Count;
        /// EDGE_PROXY_MAX_INFLIGHT: past it, proxied requests are answered 503.
        proxy_in_flight_limit: Gauges<()> = "edge_proxy_inflight_limit", Count;
        /// Proxied responses given up because the client did not read them for the stall
        /// time-out: their slot and upstream connection were freed.
        proxy_stalled: Counters<()> = "edge_proxy_responses_stalled_total", Count;
        /// Webhook events per group-commit transaction.
        batch_events: Histograms<()> = "edge_ledger_batch_events", Count;
        /// Time from sending a group-commit batch to Postgres until its `COMMIT` answered (the
        /// database's share of a webhook's latency: statements, lock waits and the WAL flush).
        commit_duration: Histograms<()> = "edge_ledger_commit_duration_seconds", Seconds;
        /// Group-commit batches that failed and were retried one event at a time.
        batches_split: Counters<()> = "edge_ledger_batches_split_total", Count;
        /// Webhook events answered 503 because another transaction held their order's row lock
        /// past EDGE_LOCK_TIMEOUT_MS (Stripe retries them).
        events_busy: Counters<()> = "edge_ledger_order_busy_total", Count;
        /// Connections open now, by listener.
        connections_open: Gauges<Listener> = "edge_connections_open", Count;
        /// The most connections each listener accepts at once (EDGE_MAX_CONNECTIONS).
        connection_limit: Gauges<Listener> = "edge_connection_limit", Count;
        /// Failed accepts (typically: out of file descriptors), by listener.
        accept_errors: Counters<Listener> = "edge_accept_errors_total", Count;
        /// Connections closed by the edge's time-outs, by listener and reason.
        connections_closed: Counters<(Listener, CloseReason)> = "edge_connections_closed_total", Count;
        /// Webhook body bytes held now against EDGE_BODY_BUDGET_BYTES.
        body_budget_used: Gauges<()> = "edge_body_budget_used_bytes", Bytes;
        /// EDGE_BODY_BUDGET_BYTES.
        body_budget: Gauges<()> = "edge_body_budget_bytes", Bytes;
        /// 1 when /ready answers 200, else 0.
        ready: Gauges<()> = "edge_ready", Count;
        /// The build running: always 1, labelled with its version and git revision.
        build_info: Gauges<BuildInfo> = "edge_build_info", Count;
        /// Unix time of the end of the last successful reconcile window pass, read from
        /// reconcile_runs (so it is known however the reconciler runs: daemon or cron).
        reconcile_last_success: Gauges<()> = "edge_reconcile_last_success_timestamp_seconds", Seconds;
        /// Open disputes (needing a response or under review) by when their evidence is due,
        /// read from the database every 15 s.
        disputes_open: Gauges<DisputeDue> = "edge_disputes_open", Count;
    }
}

impl EdgeMetrics {
    /// Counts and times one webhook answer.
    pub fn webhook(&self, outcome: WebhookOutcome, seconds: f64) {
        self.webhook_requests.inc(outcome);
        self.webhook_duration.record(outcome, seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_edge_prefix() {
        for n in EdgeMetrics::NAMES {
            assert!(n.starts_with("edge_"), "{n}");
        }
    }

    #[test]
    fn transitions_index_distinctly() {
        let mut seen: Vec<usize> = Transition::possible().iter().map(|t| t.slot()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), TRANSITIONS.len());
        assert!(seen.iter().all(|&i| i < Transition::SLOTS));
    }
}
