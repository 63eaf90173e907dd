//! HTTP plumbing shared by every listener of both binaries: the response body type and helpers,
//! the request id carried by every answer, and (in [`serve`]) the bounded accept loop, run on one
//! thread per core by [`threads`] for the edge's public listener.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

use crate::telemetry::RequestId;

mod aside;
pub mod coarse;
mod connected;
mod connections;
mod kept;
mod limits;
mod pace;
pub mod serve;
pub mod threads;

pub use connected::{Connected, Scheme};
pub use kept::Kept;
pub use serve::{Limits, Listening, ServeStats, serve};

/// Errors a response body can fail with (proxied bodies can).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response.
pub type Body = BoxBody<Bytes, BoxError>;

/// The client address a listener accepted a request from, kept in the request's extensions by
/// the admin listener (for limits per client, such as the support login's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A body that holds `guard` until it is finished or dropped: what must last as long as a response
/// streams (its request counted as in progress, a proxied request's in-flight slot).
pub fn guarded<G: Send + Sync + 'static>(body: Body, guard: G) -> Body {
    Guarded {
        body,
        _guard: guard,
    }
    .boxed()
}

struct Guarded<G> {
    body: Body,
    _guard: G,
}

impl<G> hyper::body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        // `Body` is `Unpin` (boxed), and so is `Guarded` whatever the guard.
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl<G> Unpin for Guarded<G> {}

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A JSON response with the given status.
pub fn json(status: http::StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Room for the usual answer up front: grown from empty, the buffer was moved five times.
    let mut body = Vec::with_capacity(256);
    // Plain structs and maps with string keys always serialize.
    if serde_json::to_writer(&mut body, value).is_err() {
        body.clear();
    }
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The JSON error body of every listener of both binaries:
/// `{"error":{"code","message"},"requestId"}`.
pub fn error(
    status: http::StatusCode,
    code: &str,
    message: &str,
    rid: &RequestId,
) -> Response<Body> {
    json(
        status,
        &serde_json::json!({
            "error": { "code": code, "message": message },
            "requestId": rid.as_str(),
        }),
    )
}

/// The caller's `X-Request-Id` when it is one sane value, else a new id.
pub fn request_id<B>(req: &Request<B>) -> RequestId {
    let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => RequestId::from_header(Some(v)),
        _ => RequestId::generate(),
    }
}

/// Sets `X-Request-Id` on a response.
pub fn with_request_id(mut resp: Response<Body>, rid: &RequestId) -> Response<Body> {
    resp.headers_mut().insert(X_REQUEST_ID, rid.header_value());
    resp
}
