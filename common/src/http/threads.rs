//! A listener served by one thread per core: each thread runs a single-threaded runtime and accepts
//! on its own socket bound to the same address (`SO_REUSEPORT`, the kernel spreads connections
//! across them). A connection, its handlers and what they drive (the proxy's upstream
//! connections) stay on the thread that accepted it: no work-stealing, no wake-up crossing
//! threads. The connection cap and eviction stay one for the listener ([`Capacity`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::Body;
use super::serve::{Capacity, Limits, Listening, ServeStats, serve_within};

/// Pending connections each socket's kernel queue holds (as tokio's own `bind`).
const BACKLOG: i32 = 1024;

/// The sockets of one listener, all bound to the same address.
#[derive(Debug)]
pub struct Sockets(Vec<std::net::TcpListener>);

impl Sockets {
    /// Binds `threads` (at least one) sockets to `addr`; when its port is 0, the first picks one
    /// and the others take the same.
    pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Self> {
        let first = reusable(addr)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads.max(1) {
            sockets.push(reusable(addr)?);
        }
        Ok(Self(sockets))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.0.first() {
            Some(socket) => socket.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no socket")),
        }
    }

    /// The threads that will serve them.
    pub fn threads(&self) -> usize {
        self.0.len()
    }
}

/// A listening socket that others may bind to the same address, non-blocking for tokio.
fn reusable(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// How every thread of a listener serves (see [`Listening`]).
pub struct Serving {
    pub name: &'static str,
    pub tls: Option<TlsAcceptor>,
    pub grace: Duration,
    pub limits: Limits,
    pub stats: Arc<ServeStats>,
}

/// The number of threads to serve a listener with: one per core the process may use.
pub fn per_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Serves `sockets`, one thread each, until `stop` turns true; resolves once every thread has
/// drained (each for at most the grace period) and ended.
pub async fn serve_threads<H, F>(
    sockets: Sockets,
    serving: Serving,
    handler: H,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let capacity = Capacity::new(&serving.limits);
    let mut ended = Vec::new();
    for (n, socket) in sockets.0.into_iter().enumerate() {
        let listening = (
            socket,
            serving.tls.clone(),
            serving.stats.clone(),
            capacity.clone(),
        );
        let (handler, stop) = (handler.clone(), stop.clone());
        let (name, grace, limits) = (serving.name, serving.grace, serving.limits);
        let (done, end) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{n}"))
            .spawn(move || {
                let (socket, tls, stats, capacity) = listening;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(listener = name, error = %e, "cannot start a serving thread");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(socket) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(listener = name, error = %e, "cannot listen");
                            return;
                        }
                    };
                    let listening = Listening {
                        name,
                        listener,
                        tls,
                        grace,
                        limits,
                        stats,
                    };
                    serve_within(listening, capacity, handler, stop).await;
                });
                // The connections still open past the grace period end with the runtime.
                drop(runtime);
                drop(done);
            });
        match thread {
            Ok(_) => ended.push(end),
            Err(e) => tracing::error!(listener = name, error = %e, "cannot start a serving thread"),
        }
    }
    for end in ended {
        let _ = end.await;
    }
}
