//! The proxy's connections to the app: each is a task of its own on the runtime of the client
//! connection that opened it (on a serving thread, that thread), woken only when its socket is
//! ready; a finished one waits for that client connection's next request (no pool lock is taken
//! per request). Idle ones are bounded in all ([`MAX_IDLE`]) and close with their client
//! connection: dropping the last handle of a connection ends its task.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::http::Kept;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Stalling;
use crate::routes::BoxError;

/// Idle upstream connections kept at most, over every client connection.
pub(super) const MAX_IDLE: usize = 256;
/// Idle upstream connections one client connection keeps at most (its concurrent h2 streams).
const MAX_IDLE_PER_CLIENT: usize = common::http::serve::MAX_STREAMS as usize;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connecting to the app took longer than [`CONNECT_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("connecting to the app took longer than {0:?}")]
pub struct ConnectTimeout(Duration);

/// One HTTP/1.1 connection to the app: the handle that sends on it (its task reads and writes).
pub(super) struct Upstream {
    send: http1::SendRequest<Stalling>,
}

impl Upstream {
    /// Opens a connection to `address` (`host:port`).
    pub(super) async fn connect(address: &str) -> Result<Self, BoxError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ConnectTimeout(CONNECT_TIMEOUT))??;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        // It ends when the app closes it, or once this handle is dropped and nothing is in
        // flight on it (an answer dropped half-read closes it).
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection to the app ended with an error");
            }
        });
        Ok(Self { send })
    }

    /// Whether a request can go on it now; false when the app has closed it.
    pub(super) async fn ready(&mut self) -> bool {
        self.send.ready().await.is_ok()
    }

    /// Sends `req` and waits for the answer's head. The request comes back in the error when it
    /// never left.
    pub(super) async fn send(
        &mut self,
        req: Request<Stalling>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Stalling>>> {
        self.send.try_send_request(req).await
    }

    fn reusable(&self) -> bool {
        !self.send.is_closed()
    }
}

/// Where a finished upstream connection waits: the idle set of the client connection it served.
#[derive(Clone)]
pub(super) struct Home {
    kept: Kept,
    idle: Arc<AtomicUsize>,
}

/// A client connection's idle upstream connections.
#[derive(Default)]
struct IdleSet(Vec<Parked>);

/// An idle upstream connection, counted in the proxy's total while it waits.
struct Parked {
    upstream: Option<Upstream>,
    idle: Arc<AtomicUsize>,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.idle.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Home {
    /// The home of a request's connection; `idle` counts every idle upstream connection.
    pub(super) fn new(kept: Kept, idle: Arc<AtomicUsize>) -> Self {
        Self { kept, idle }
    }

    /// An idle connection of this client connection, if it has one.
    pub(super) fn take(&self) -> Option<Upstream> {
        self.kept
            .with(|set: &mut IdleSet| set.0.pop())
            .and_then(|mut parked| parked.upstream.take())
    }

    /// Keeps `upstream` for the next request, unless it has ended or too many wait already.
    fn park(&self, upstream: Upstream) {
        if !upstream.reusable() {
            return;
        }
        if self.idle.fetch_add(1, Ordering::Relaxed) >= MAX_IDLE {
            self.idle.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let parked = Parked {
            upstream: Some(upstream),
            idle: self.idle.clone(),
        };
        self.kept.with(|set: &mut IdleSet| {
            if set.0.len() < MAX_IDLE_PER_CLIENT {
                set.0.push(parked);
            }
        });
    }
}

/// The app's answer body; once finished, its connection goes back to its home.
pub(super) struct Answer {
    body: Incoming,
    upstream: Option<Upstream>,
    home: Option<Home>,
}

impl Answer {
    pub(super) fn new(body: Incoming, upstream: Upstream, home: Home) -> Self {
        Self {
            body,
            upstream: Some(upstream),
            home: Some(home),
        }
    }

    fn go_home(&mut self) {
        if let (Some(upstream), Some(home)) = (self.upstream.take(), self.home.take()) {
            home.park(upstream);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // Dropped before its end (the client went away, the response was given up): the rest of
        // the answer is still on the connection, which closes with it.
        if self.body.is_end_stream() {
            self.go_home();
        }
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // A server that knows the length stops asking after the last byte: finished then.
        if matches!(frame, Poll::Ready(None)) || this.body.is_end_stream() {
            this.go_home();
        }
        frame
    }

    // `is_end_stream` stays false: the caller polls to the end, where the connection is parked.

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
