//! The example shop's notification endpoint: what an app behind the edge writes to act on
//! payments. It verifies each order notification's `Edge-Signature` (Stripe's scheme, the
//! edge's `APP_NOTIFY_SECRET`), deduplicates by the notification's `id`, and fulfils an order on
//! its first `order.paid` ("fulfilled order …" in its log). `scripts/dev.sh` runs it as
//! `shop-app`; the tests run it in process, switch its behaviour (500s, hangs, down) and read
//! what it received.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use common::config::Secret;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the shop answers, switchable while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Verifies, records, answers 200.
    #[default]
    Healthy,
    /// Answers 500 to this percentage of notifications (after nothing was recorded), else healthy.
    Failing { percent: u8 },
    /// Never answers this percentage of notifications (holds them open), else healthy.
    Hanging { percent: u8 },
}

/// One notification as the shop received it (signature verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub order_id: String,
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    /// Verified notifications, in the order they arrived (redeliveries included).
    received: Vec<Received>,
    seen: HashSet<String>,
    /// Orders fulfilled, and how many times (the dedup makes it once).
    fulfilled: HashMap<String, u32>,
    bad_signatures: u64,
    requests: u64,
}

/// A running shop endpoint.
pub struct Shop {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    secret: Secret,
    serving: Mutex<Option<JoinSet<()>>>,
}

/// The age past which a signature is refused, as the Stripe SDKs' default.
const TOLERANCE_SECS: u64 = 300;

impl Shop {
    /// Listens on 127.0.0.1:`port` (0: any) and verifies with `secret`.
    pub async fn start_on(port: u16, secret: &str) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let shop = Arc::new(Self {
            addr: listener.local_addr()?,
            state: Arc::default(),
            secret: Secret::new(secret.to_owned()),
            serving: Mutex::new(None),
        });
        shop.serve(listener);
        Ok(shop)
    }

    pub async fn start(secret: &str) -> Arc<Self> {
        Self::start_on(0, secret).await.expect("bind the shop")
    }

    /// `APP_NOTIFY_URL` for this shop.
    pub fn url(&self) -> String {
        format!("http://{}/stripe-edge/notifications", self.addr)
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let shop = self.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shop = shop.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shop = shop.clone();
                        async move { Ok::<_, Infallible>(shop.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.serving.lock().unwrap_or_else(PoisonError::into_inner) = Some(tasks);
    }

    /// The shop goes down: its listener closes and every open connection is cut.
    pub fn go_down(&self) {
        let tasks = self
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(tasks);
    }

    /// The shop comes back on the same address.
    pub async fn come_back(self: &Arc<Self>) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.with(|s| s.behaviour = behaviour);
    }

    /// Verified notifications received so far, redeliveries included.
    pub fn received(&self) -> Vec<Received> {
        self.with(|s| s.received.clone())
    }

    /// How many times each order was fulfilled.
    pub fn fulfilled(&self) -> HashMap<String, u32> {
        self.with(|s| s.fulfilled.clone())
    }

    /// Requests whose signature did not verify.
    pub fn bad_signatures(&self) -> u64 {
        self.with(|s| s.bad_signatures)
    }

    /// Requests received, whatever became of them.
    pub fn requests(&self) -> u64 {
        self.with(|s| s.requests)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let behaviour = self.with(|s| {
            s.requests += 1;
            s.behaviour
        });
        let header = req
            .headers()
            .get("edge-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
            return reply(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let now = chrono::Utc::now().timestamp();
        let verified = header.as_deref().is_some_and(|h| {
            common::stripe::signature::verify(
                h,
                &body,
                std::slice::from_ref(&self.secret),
                TOLERANCE_SECS,
                now,
            )
            .is_ok()
        });
        if !verified {
            self.with(|s| s.bad_signatures += 1);
            return reply(StatusCode::BAD_REQUEST, "bad signature");
        }
        let roll = (common::backoff::random_unit() * 100.0) as u8;
        match behaviour {
            Behaviour::Failing { percent } if roll < percent => {
                return reply(StatusCode::INTERNAL_SERVER_ERROR, "the shop is failing");
            }
            Behaviour::Hanging { percent } if roll < percent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            _ => {}
        }
        let Ok(n) = serde_json::from_slice::<Value>(&body) else {
            return reply(StatusCode::BAD_REQUEST, "not JSON");
        };
        let field = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
        let received = Received {
            id: field("id"),
            kind: field("type"),
            order_id: field("order_id"),
        };
        self.fulfil(received);
        reply(StatusCode::OK, "ok")
    }

    /// Records a notification; fulfils the order on its first `order.paid` (by `id`: a
    /// redelivery changes nothing).
    fn fulfil(&self, received: Received) {
        let first = self.with(|s| {
            s.received.push(received.clone());
            s.seen.insert(received.id.clone())
        });
        if !first || received.kind != "order.paid" {
            return;
        }
        self.with(|s| *s.fulfilled.entry(received.order_id.clone()).or_default() += 1);
        tracing::info!(
            order_id = %received.order_id,
            notification = %received.id,
            "fulfilled order {}",
            received.order_id
        );
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}
