//! The accept loop of every listener: HTTP/1.1 and h2c on one port, every resource an
//! unauthenticated peer can hold bounded, and a graceful drain bounded by a grace period.
//!
//! - **Connections are capped** (`Limits::max_connections`). At the cap, a newly accepted
//!   connection makes room by closing the connection idle the longest (no request in progress: one
//!   that never sent a head, or a keep-alive one between requests); when every connection is busy,
//!   it waits for one to end, and the kernel's backlog holds the rest. So idle connections, however
//!   many, never keep a webhook out. A failed accept (out of file descriptors) backs off, is
//!   counted, and is logged at most once a second.
//! - **A deadline from accept to the first complete request head** (`header_read_timeout`),
//!   protocol detection included: a connection that sends nothing, or 16 bytes of an HTTP/2
//!   preface, is closed when it passes. On HTTP/1, each later head must be complete within the
//!   same time of the last answer, so an HTTP/1 keep-alive connection idle that long is closed.
//! - **An idle keep-alive time-out** (`idle_timeout`): an h2 connection with no request in
//!   progress (a response body still streaming counts as in progress) is closed once idle that
//!   long.
//! - Those deadlines are one timer per connection, armed again only when it fires: a request
//!   arms no timer of its own.
//! - **A stall time-out** (`stall_timeout`): a connection whose every request in progress is a
//!   response that its peer does not take (an h2 flow-control window kept at zero, an HTTP/1
//!   download never read) is closed once stuck that long, and counts as idle at the cap after a
//!   second of it: a slow reader cannot keep a connection, a stream or a slot for ever.
//! - h2: at most [`MAX_STREAMS`] concurrent streams per connection and a bounded header list.
//! - **Requests can be paced** (`Limits::requests_per_second`, the admin listeners): past the rate,
//!   a request waits its turn before its handler runs, so a flood of probes costs its sender time
//!   rather than costing the webhooks CPU.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::Body;
use super::aside::Aside;
use super::connected::{Connected, Scheme};
pub use super::connections::Capacity;
use super::connections::{Activity, Expired, OpenConnections, Registered, Watched};
pub use super::limits::Limits;
use super::pace::Pacer;

/// Largest request head (request line + headers) accepted; larger gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most request headers accepted; more gets 431. It is hyper's own limit, which the builder
/// leaves unset on purpose: set, even to the same number, hyper fills a header array of that
/// size on every request head it parses. Pinned by an integration test
/// (`bad_input::oversized_or_numerous_headers_are_refused`).
pub const MAX_HEADERS: usize = 100;
/// Concurrent h2 streams per connection.
pub const MAX_STREAMS: u32 = 32;
/// The first pause after a failed `accept`; it doubles while accepts keep failing.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause after failed accepts.
const ACCEPT_ERROR_PAUSE_MAX: Duration = Duration::from_secs(1);
/// A connection asked to close (idle, or draining) that has not within this is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// At the cap with no connection idle, how often a waiting accept looks for one again (one asked
/// to close has this long to go before the next is asked).
const EVICT_RETRY: Duration = Duration::from_millis(1100);

/// What a listener did, read by the metrics at scrape time.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Failed accepts (typically: out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Connections closed because no request head arrived in time.
    pub head_timeouts: AtomicU64,
    /// Keep-alive connections closed for being idle.
    pub idle_closed: AtomicU64,
    /// Idle connections closed at the cap to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed because every response in progress was stuck on the peer for
    /// `stall_timeout` (a flow-control window kept at zero, a download never read).
    pub stalled_closed: AtomicU64,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The head deadlines are the connection's own timer ([`Activity::deadline`]): hyper's
        // would arm a boxed timer for every request head.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A bound listener and how it serves.
pub struct Listening {
    /// For the logs: `public`, `admin`.
    pub name: &'static str,
    pub listener: TcpListener,
    /// HTTPS (h2 and http/1.1 by ALPN) with this acceptor, else plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// The longest drain once stopped.
    pub grace: Duration,
    pub limits: Limits,
    /// What the listener did, read by the metrics at scrape time.
    pub stats: Arc<ServeStats>,
}

/// Serves `listening` until `stop` turns true, then drains for at most its grace period.
pub async fn serve<H, F>(listening: Listening, handler: H, stop: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>, Connected) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let capacity = Capacity::new(&listening.limits);
    serve_within(listening, capacity, handler, stop).await;
}

/// [`serve`] within a connection cap shared with other listeners on the same address.
pub async fn serve_within<H, F>(
    listening: Listening,
    capacity: Capacity,
    handler: H,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, Connected) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let Listening {
        name,
        listener,
        tls,
        grace,
        limits,
        stats,
    } = listening;
    let mut accepting = Accepting {
        name,
        listener,
        stop,
        limits,
        stats,
        slots: capacity.slots,
        open: capacity.open,
        failures: AcceptFailures::default(),
    };
    let builder = Arc::new(builder());
    let pacer = limits
        .requests_per_second
        .map(|rate| Arc::new(Pacer::new(rate)));
    while let Some((stream, peer)) = accepting.next().await {
        let Some(permit) = accepting.room().await else {
            break;
        };
        let connection = Connection {
            builder: builder.clone(),
            limits,
            stats: accepting.stats.clone(),
            stop: accepting.stop.clone(),
            pacer: pacer.clone(),
            tls: tls.clone(),
        };
        let handler = handler.clone();
        accepting.stats.open.fetch_add(1, Ordering::Relaxed);
        // Registered before its task first runs, so that a burst of connections accepted at the
        // cap can already make room by closing the ones accepted just before them.
        let activity = Arc::new(Activity::new());
        let registered = Registered {
            id: accepting.open.register(activity.clone()),
            open: accepting.open.clone(),
        };
        tokio::spawn(async move {
            connection
                .run(stream, peer, handler, activity, registered)
                .await;
            connection.stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    accepting.drain(grace).await;
}

/// The accept side of a listener: its connection slots and its open connections.
struct Accepting {
    name: &'static str,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
    limits: Limits,
    stats: Arc<ServeStats>,
    /// One permit per open connection (`Limits::max_connections`).
    slots: Arc<Semaphore>,
    open: Arc<OpenConnections>,
    failures: AcceptFailures,
}

impl Accepting {
    /// The next accepted connection; `None` once `stop` turns true. A failed accept (out of file
    /// descriptors) is counted and backed off.
    async fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stopped(&mut self.stop) => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.failures.reset();
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let pause = self.failures.next(self.name, &e);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// A slot for a new connection. At the cap, the connection idle the longest is asked to
    /// close, and the slot is the first one freed; while none is idle, that is asked again every
    /// [`EVICT_RETRY`] (a connection becomes idle when its responses get stuck on its peer).
    /// `None` once `stop` turns true.
    async fn room(&mut self) -> Option<OwnedSemaphorePermit> {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Some(permit);
            }
            if self.open.evict_longest_idle() {
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                biased;
                _ = stopped(&mut self.stop) => return None,
                permit = self.slots.clone().acquire_owned() => return permit.ok(),
                _ = tokio::time::sleep(EVICT_RETRY) => {}
            }
        }
    }

    /// Stops accepting, then waits at most `grace` for the open connections to finish.
    async fn drain(self, grace: Duration) {
        drop(self.listener);
        tracing::info!(
            listener = self.name,
            grace_secs = grace.as_secs(),
            "stopped accepting; draining"
        );
        let every = u32::try_from(self.limits.max_connections.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.slots.acquire_many(every))
            .await
            .is_err()
        {
            tracing::warn!(
                listener = self.name,
                "grace period over; closing the remaining connections"
            );
        }
    }
}

/// Failed accepts in a row: the pause before the next, and a log line at most once a second.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl AcceptFailures {
    fn reset(&mut self) {
        self.in_a_row = 0;
    }

    fn next(&mut self, listener: &'static str, e: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(listener, error = %e, failures = self.unlogged, "accept failed");
            self.unlogged = 0;
            self.last_logged = Some(Instant::now());
        }
        ACCEPT_ERROR_PAUSE
            .saturating_mul(1 << self.in_a_row.min(6).saturating_sub(1))
            .min(ACCEPT_ERROR_PAUSE_MAX)
    }
}

/// What, besides the connection itself, ended a connection's wait.
enum Signal {
    /// The listener is stopping.
    Stop,
    /// Asked to close to make room at the connection cap.
    Evict,
    /// Its deadline (head, idle, stall, or the end of its grace once asked to close).
    Deadline,
}

/// One accepted connection and what bounds it.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    stats: Arc<ServeStats>,
    stop: watch::Receiver<bool>,
    pacer: Option<Arc<Pacer>>,
    tls: Option<TlsAcceptor>,
}

impl Connection {
    /// Serves the connection, after its TLS handshake on an HTTPS listener. The handshake counts
    /// against the head deadline, and the connection counts as idle during it (it may be closed
    /// to make room at the cap).
    async fn run<H, F>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: H,
        activity: Arc<Activity>,
        registered: Registered,
    ) where
        H: Fn(Request<Incoming>, Connected) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    {
        let Some(acceptor) = &self.tls else {
            return self
                .serve(stream, Scheme::Http, peer, handler, activity, registered)
                .await;
        };
        let deadline = activity.head_deadline(&self.limits);
        let mut stop = self.stop.clone();
        let handshake = tokio::select! {
            accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => accepted,
            _ = activity.evict.notified() => return,
            _ = stopped(&mut stop) => return,
        };
        match handshake {
            Ok(Ok(tls)) => {
                self.serve(tls, Scheme::Https, peer, handler, activity, registered)
                    .await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => {
                self.stats.head_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn serve<I, H, F>(
        &self,
        io: I,
        scheme: Scheme,
        peer: SocketAddr,
        handler: H,
        activity: Arc<Activity>,
        _registered: Registered,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, Connected) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    {
        let service = {
            let activity = activity.clone();
            let pacer = self.pacer.clone();
            let connected = Connected::new(peer, scheme);
            service_fn(move |req: Request<Incoming>| {
                let guard = activity.request_started(req.version());
                // Boxed once here: the handler's future is kilobytes (3.4 kB for the edge's
                // public listener), and unboxed it was copied whole several times per request,
                // the last into hyper's slot for it. The response body is not boxed again.
                let answer = Box::pin(handler(req, connected.clone()));
                let pacer = pacer.clone();
                async move {
                    if let Some(pacer) = pacer {
                        pacer.turn().await;
                    }
                    let resp = answer.await?;
                    Ok::<_, Infallible>(resp.map(|body| Watched::new(body, guard)))
                }
            })
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stop = self.stop.clone();
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            let deadline = match closing {
                Some(at) => at,
                None => activity.deadline(&self.limits),
            };
            // What else ends or closes the connection, polled only when it fired: the
            // connection wakes this task several times per request.
            let open = closing.is_none();
            let signal = Aside::new(async {
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop), if open => Signal::Stop,
                    _ = activity.evict.notified(), if open => Signal::Evict,
                    _ = tokio::time::sleep_until(deadline) => Signal::Deadline,
                }
            });
            let signal = tokio::select! {
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                    return;
                }
                signal = signal => signal,
            };
            match signal {
                Signal::Stop => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(
                        tokio::time::Instant::now() + self.limits.idle_timeout.max(CLOSE_GRACE),
                    );
                }
                Signal::Evict => {
                    if !activity.any_request.load(Ordering::Acquire) {
                        return; // never sent a head: nothing to finish
                    }
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                Signal::Deadline => {
                    if closing.is_some() {
                        return; // asked to close and did not: drop it
                    }
                    match activity.expired(&self.limits) {
                        Some(Expired::NoRequest) => {
                            self.stats.head_timeouts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Some(Expired::Idle) => {
                            self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                        Some(Expired::Stalled) => {
                            // Its responses are stuck on the peer: they are dropped with it.
                            self.stats.stalled_closed.fetch_add(1, Ordering::Relaxed);
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                        None => {}
                    }
                }
            }
        }
    }
}
