//! HTTP plumbing shared by every listener of both binaries: the accept loop (HTTP/1.1 and h2c on
//! one port, header-read time-outs, graceful drain bounded by a grace period), the response body
//! type and helpers, and the request id carried by every answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::telemetry::RequestId;

/// Errors a response body can fail with (proxied bodies can).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response.
pub type Body = BoxBody<Bytes, BoxError>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A JSON response with the given status.
pub fn json(status: http::StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The caller's `X-Request-Id` when it is one sane value, else a new id.
pub fn request_id<B>(req: &Request<B>) -> RequestId {
    let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => RequestId::from_header(Some(v.as_bytes())),
        _ => RequestId::generate(),
    }
}

/// Sets `X-Request-Id` on a response.
pub fn with_request_id(mut resp: Response<Body>, rid: &RequestId) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

/// Time-outs that stop a slow client from holding a connection for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A client must send its request headers within this time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A client must send its whole webhook body within this time, or gets 408 and is closed.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}
/// Largest request head (request line + headers) accepted; larger gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers accepted; more gets 431.
pub const MAX_HEADERS: usize = 100;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Serves `listener` until `stop` turns true, then drains for at most `grace`.
pub async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    limits: Limits,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let builder = builder(limits);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let service = service_fn(move |req| handler(req, peer));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection closed with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        listener = name,
        grace_secs = grace.as_secs(),
        "stopped accepting; draining"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "grace period over; closing the remaining connections"
        );
    }
}
