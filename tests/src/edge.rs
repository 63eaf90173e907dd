//! Spawns a real edge in-process on port 0 against a fresh test database, optionally with its
//! Postgres traffic going through a [`FaultProxy`], and sends it signed webhooks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::stripe::signature;
use edge::Limits;
use edge::config::EdgeConfig;
use http::{Method, Request};
use http_body_util::Full;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fault_proxy::{FaultProxy, Target};
use crate::http::{Reply, request, send};
use crate::pg::{self, TestDb};

/// How to start a test edge.
#[derive(Default)]
pub struct EdgeBuilder {
    env: HashMap<String, String>,
    through_fault_proxy: bool,
    limits: Option<Limits>,
    db: Option<TestDb>,
}

/// A running edge and everything a test needs around it.
pub struct TestEdge {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub db: TestDb,
    /// The webhook secrets it accepts, in configuration order.
    pub secrets: Vec<String>,
    /// Present when built with [`EdgeBuilder::through_fault_proxy`].
    pub fault: Option<FaultProxy>,
    /// What the edge's handlers share (its group-commit queue, its pools).
    pub state: std::sync::Arc<edge::state::State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EdgeBuilder {
    /// Sets an environment variable of the edge's configuration.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Routes the edge's database connections through a fault proxy.
    pub fn through_fault_proxy(mut self) -> Self {
        self.through_fault_proxy = true;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Uses this database instead of a fresh migrated one.
    pub fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// The configuration the edge would get (exposed for start-up tests).
    pub async fn config(&mut self) -> (EdgeConfig, TestDb, Option<FaultProxy>, Vec<String>) {
        init_test_logging();
        let db = match self.db.take() {
            Some(db) => db,
            None => TestDb::new().await,
        };
        let fault = if self.through_fault_proxy {
            Some(FaultProxy::start(Target::postgres(db.server())).await)
        } else {
            None
        };
        let url = match &fault {
            Some(f) => pg::conninfo(&pg::via(&db.config, f.addr())),
            None => db.url(),
        };
        let secret = format!("whsec_test_{}", uuid::Uuid::new_v4().simple());
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_POOL_SIZE", "8"),
            ("EDGE_LISTEN", "127.0.0.1:0"),
            ("EDGE_ADMIN_LISTEN", "127.0.0.1:0"),
            ("STRIPE_WEBHOOK_SECRET", secret.as_str()),
            ("SHUTDOWN_GRACE_SECS", "5"),
            ("STRIPE_EXPECT_LIVEMODE", "any"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(self.env.clone());
        let config = EdgeConfig::from_source(&env).expect("test edge configuration");
        let secrets = config
            .webhook_secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        (config, db, fault, secrets)
    }

    pub async fn spawn(mut self) -> TestEdge {
        let (config, db, fault, secrets) = self.config().await;
        let app = match self.limits {
            Some(limits) => edge::App::build_with_limits(config, limits).await,
            None => edge::App::build(config).await,
        }
        .expect("edge starts");
        let public = app.public_addr();
        let admin = app.admin_addr();
        let state = app.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestEdge {
            public,
            admin,
            db,
            secrets,
            fault,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl TestEdge {
    pub fn builder() -> EdgeBuilder {
        EdgeBuilder::default()
    }

    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// A scenario driver that delivers to this edge with its first webhook secret.
    pub fn driver(&self, rates: sim::scenario::Rates, seed: u64) -> sim::scenario::Driver {
        sim::scenario::Driver::new(self.public, &self.secrets[0], rates, seed)
    }

    /// The `Stripe-Signature` of `body`, signed now with the first secret.
    pub fn sign(&self, body: &[u8]) -> String {
        signature::sign(&self.secrets[0], chrono::Utc::now().timestamp(), body)
    }

    /// POSTs `body` signed now with the first secret.
    pub async fn webhook(&self, body: &[u8]) -> Reply {
        self.webhook_with(body, &[("stripe-signature", self.sign(body).as_str())])
            .await
    }

    /// POSTs a JSON value signed now with the first secret.
    pub async fn webhook_json(&self, event: &serde_json::Value) -> Reply {
        self.webhook(event.to_string().as_bytes()).await
    }

    /// [`TestEdge::webhook_json`] from a task of its own, for deliveries that run concurrently.
    pub fn spawn_webhook_json(&self, event: &serde_json::Value) -> JoinHandle<Reply> {
        let body = Bytes::from(event.to_string());
        let req = webhook_request(
            self.public,
            body.clone(),
            &[("stripe-signature", &self.sign(&body))],
        );
        let public = self.public;
        tokio::spawn(async move { send(public, req).await.expect("webhook request") })
    }

    /// POSTs `body` with exactly these extra headers.
    pub async fn webhook_with(&self, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let req = webhook_request(self.public, Bytes::copy_from_slice(body), headers);
        send(self.public, req).await.expect("webhook request")
    }

    /// Asks the edge to shut down and waits until it has drained.
    pub async fn stop(mut self) {
        self.trigger_stop();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the edge's run loop has returned.
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.trigger_stop();
    }
}

/// A webhook delivery as Stripe sends it, with these extra headers.
fn webhook_request(
    public: SocketAddr,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut req = request(Method::POST, public, "/stripe/webhook")
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(body)).expect("request")
}

/// Captures the JSON logs (shown on stderr when `TEST_LOG` is set, e.g. `TEST_LOG=1 scripts/test.sh`).
pub fn init_test_logging() {
    crate::logs::capture();
}
