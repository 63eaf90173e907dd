//! The admin listener of both binaries, written once: one router for `GET /metrics`, `/live` and
//! `/ready` plus the routes the binary adds ([`Routes`]), one error body, one readiness
//! ([`Readiness`] and the binary's own reasons), and one lifecycle ([`AdminServer`]): the first
//! database probe before serving, then the probe, the exporter's upkeep and the paced listener in
//! the background, `/ready` turning 503 while the binary drains, and a bounded drain at the end.

mod readiness;

pub use readiness::{NotReady, PROBE_EVERY, READY_TIMEOUT, Readiness};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::http::{Body, Limits, Listening, ServeStats, error, full, request_id, with_request_id};
use crate::telemetry::RequestId;

/// Requests per second an admin listener starts (probes, scrapes, support calls): far above what
/// Prometheus and the orchestrator ask, and low enough that a flood of `/ready` cannot take the
/// CPU the webhooks need. Past it, requests wait their turn.
pub const REQUESTS_PER_SECOND: u32 = 1000;

/// Open connections an admin listener accepts (scrapes, probes, support); also what the edge keeps
/// free of public connections for it.
pub const MAX_CONNECTIONS: usize = 64;

/// The admin listener's own drain once the binary has drained (scrapes and probes are short).
pub const GRACE: Duration = Duration::from_secs(2);

/// What a binary adds to its admin listener.
pub trait Routes: Send + Sync + 'static {
    /// The binary's own reasons not to be ready (beyond draining and the database probe).
    fn not_ready(&self) -> Result<(), NotReady> {
        Ok(())
    }

    /// Refreshes the gauges read at scrape time; `ready` is what `/ready` answers now.
    fn before_scrape(&self, ready: bool);

    /// Answers every path other than `/metrics`, `/live` and `/ready`; [`not_found`] for a path
    /// the binary does not serve.
    fn handle(
        &self,
        req: Request<Incoming>,
        rid: &RequestId,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// The routes every admin listener answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Live,
    Ready,
    MethodNotAllowed,
    /// The binary's.
    Other,
}

impl Route {
    fn of(method: &Method, path: &str) -> Self {
        let readable = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/metrics" if readable => Self::Metrics,
            "/live" if readable => Self::Live,
            "/ready" if readable => Self::Ready,
            "/metrics" | "/live" | "/ready" => Self::MethodNotAllowed,
            _ => Self::Other,
        }
    }
}

/// 404 for a path no route serves.
pub fn not_found(rid: &RequestId) -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not_found", "no such route", rid)
}

/// 405 with `Allow`.
pub fn method_not_allowed(allow: &'static str, rid: &RequestId) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
        rid,
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// What the admin handler shares: the binary's routes and the readiness.
struct Admin<R> {
    routes: Arc<R>,
    readiness: Arc<Readiness>,
}

impl<R: Routes> Admin<R> {
    /// Ready = not draining, the binary's parts ready, and the database (as last probed, at most
    /// a second ago) answers, has a current schema and accepts writes. No query per call.
    fn readiness(&self) -> Result<i32, NotReady> {
        if self.readiness.is_draining() {
            return Err(NotReady::Draining);
        }
        self.routes.not_ready()?;
        self.readiness.database()
    }

    async fn answer(&self, req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        match Route::of(req.method(), req.uri().path()) {
            Route::Metrics => {
                self.routes.before_scrape(self.readiness().is_ok());
                let mut resp = Response::new(full(crate::metrics::render()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            Route::Live => crate::http::json(StatusCode::OK, &json!({ "status": "live" })),
            Route::Ready => {
                let state = self.readiness();
                if let Err(why) = state
                    && why != NotReady::Draining
                {
                    tracing::warn!(reason = why.reason(), "not ready");
                }
                let cause = match state {
                    Err(NotReady::Database | NotReady::ReadOnly) => self.readiness.database_cause(),
                    _ => None,
                };
                readiness::answer(state, cause)
            }
            Route::MethodNotAllowed => method_not_allowed("GET", rid),
            Route::Other => self.routes.handle(req, rid).await,
        }
    }
}

/// A running admin listener with its database probe and the metrics exporter's upkeep.
pub struct AdminServer {
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
    probe: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl AdminServer {
    /// Probes the database once (so `/ready` is right from the first request), then serves
    /// `listener` with `routes` (at most [`MAX_CONNECTIONS`], paced at [`REQUESTS_PER_SECOND`],
    /// the time-outs of `limits`), keeps `readiness` probed every [`PROBE_EVERY`] and runs the
    /// exporter's upkeep. `stats` counts what the listener does.
    pub async fn start<R: Routes>(
        listener: TcpListener,
        pool: Pool,
        routes: Arc<R>,
        readiness: Arc<Readiness>,
        limits: Limits,
        stats: Arc<ServeStats>,
    ) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        readiness.probe(&pool).await;
        let probe = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.probe_forever(pool).await }
        });
        let admin = Arc::new(Admin {
            routes,
            readiness: readiness.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let listening = Listening {
            name: "admin",
            listener,
            tls: None,
            grace: GRACE,
            limits: Limits {
                max_connections: MAX_CONNECTIONS,
                requests_per_second: Some(REQUESTS_PER_SECOND),
                ..limits
            },
            stats,
        };
        let serve = tokio::spawn(crate::http::serve(
            listening,
            move |mut req: Request<Incoming>, connected: crate::http::Connected| {
                req.extensions_mut()
                    .insert(crate::http::Peer(connected.peer));
                let admin = admin.clone();
                async move {
                    let rid = request_id(&req);
                    let span = tracing::info_span!("request", requestId = %rid);
                    let resp = admin.answer(req, &rid).instrument(span).await;
                    Ok(with_request_id(resp, &rid))
                }
            },
            stopped,
        ));
        Self {
            addr,
            readiness,
            stop,
            serve,
            probe,
            upkeep: tokio::spawn(crate::metrics::upkeep()),
        }
    }

    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What `/ready` answers from (the last probe, draining).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// From now on `/ready` answers 503: the binary is draining.
    pub fn start_draining(&self) {
        self.readiness.start_draining();
    }

    /// Stops accepting, drains for at most [`GRACE`], then stops the probe and the upkeep.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.serve.await;
        self.probe.abort();
        self.upkeep.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(Route::of(&Method::HEAD, "/ready"), Route::Ready);
        assert_eq!(Route::of(&Method::POST, "/live"), Route::MethodNotAllowed);
        assert_eq!(Route::of(&Method::GET, "/stripe/webhook"), Route::Other);
        assert_eq!(Route::of(&Method::POST, "/reconcile/run"), Route::Other);
    }
}
