//! The proxy's connections to the app: each is driven in the task of the client connection that
//! uses it (no task of its own, so no wake-up crosses threads and no pool lock is taken per
//! request), and a finished one waits for that client connection's next request. Idle ones are
//! bounded in all ([`MAX_IDLE`]) and close with their client connection.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
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

/// The half of a connection to the app that reads and writes it.
type Connection = http1::Connection<TokioIo<TcpStream>, Stalling>;

/// One HTTP/1.1 connection to the app.
pub(super) struct Upstream {
    send: http1::SendRequest<Stalling>,
    /// `None` once the connection has ended.
    conn: Option<Pin<Box<Connection>>>,
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
        Ok(Self {
            send,
            conn: Some(Box::pin(conn)),
        })
    }

    /// Moves the connection on (reads the answer, writes the request body) in the caller's task.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut()
            && conn.as_mut().poll(cx).is_ready()
        {
            self.conn = None;
        }
    }

    /// Whether a request can go on it now; false when the app has closed it.
    pub(super) async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.drive(cx);
            self.send.poll_ready(cx).map(|ready| ready.is_ok())
        })
        .await
    }

    /// Sends `req` and waits for the answer's head, driving the connection meanwhile. The request
    /// comes back in the error when it never left.
    pub(super) async fn send(
        &mut self,
        req: Request<Stalling>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Stalling>>> {
        let mut answer = pin!(self.send.try_send_request(req));
        poll_fn(|cx| {
            self.drive(cx);
            answer.as_mut().poll(cx)
        })
        .await
    }

    fn reusable(&self) -> bool {
        self.conn.is_some() && !self.send.is_closed()
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

/// The app's answer body, driving its connection as the client takes it; once finished, the
/// connection goes back to its home.
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
        if let Some(upstream) = this.upstream.as_mut() {
            upstream.drive(cx);
        }
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
