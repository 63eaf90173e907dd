//! A listener served on the caller's runtime (one socket), or by threads of its own: each thread
//! runs a single-threaded runtime and accepts on its own socket bound to the same address
//! (`SO_REUSEPORT`, the kernel spreads connections across them). There, a connection, its
//! handlers and the tasks they spawn (the proxy's upstream connections) stay on the thread that
//! accepted it: no work-stealing, no wake-up crossing threads. The connection cap and eviction
//! stay one for the listener ([`Capacity`]).

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

use super::serve::{Capacity, Limits, Listening, ServeStats, serve_within};
use super::{Body, Connected};

/// Pending connections each socket's kernel queue holds (as tokio's own `bind`).
const BACKLOG: i32 = 1024;

/// The sockets of one listener, all bound to the same address.
#[derive(Debug)]
pub enum Sockets {
    /// One socket that no other may share, served on the caller's runtime.
    Shared(std::net::TcpListener),
    /// One socket per serving thread, each with a runtime of its own.
    Threads(Vec<std::net::TcpListener>),
}

impl Sockets {
    /// `threads` sockets bound to `addr`, one per serving thread (when its port is 0, the first
    /// picks one and the others take the same); 0 threads: one socket that no other may share,
    /// served on the caller's runtime.
    pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Self> {
        if threads == 0 {
            let socket = std::net::TcpListener::bind(addr)?;
            socket.set_nonblocking(true)?;
            return Ok(Self::Shared(socket));
        }
        let first = reusable(addr)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(reusable(addr)?);
        }
        Ok(Self::Threads(sockets))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Shared(socket) => socket.local_addr(),
            Self::Threads(sockets) => match sockets.first() {
                Some(socket) => socket.local_addr(),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no socket")),
            },
        }
    }

    /// The threads of their own that will serve them (0: the caller's runtime).
    pub fn threads(&self) -> usize {
        match self {
            Self::Shared(_) => 0,
            Self::Threads(sockets) => sockets.len(),
        }
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
#[derive(Clone)]
pub struct Serving {
    pub name: &'static str,
    pub tls: Option<TlsAcceptor>,
    pub grace: Duration,
    pub limits: Limits,
    pub stats: Arc<ServeStats>,
}

impl Serving {
    fn listening(self, listener: tokio::net::TcpListener) -> Listening {
        Listening {
            name: self.name,
            listener,
            tls: self.tls,
            grace: self.grace,
            limits: self.limits,
            stats: self.stats,
        }
    }
}

/// Serves `sockets` until `stop` turns true (one thread each, or on the caller's runtime);
/// resolves once every thread has drained (each for at most the grace period) and ended.
pub async fn serve_sockets<H, F>(
    sockets: Sockets,
    serving: Serving,
    handler: H,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, Connected) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let capacity = Capacity::new(&serving.limits);
    let sockets = match sockets {
        Sockets::Shared(socket) => {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(listener) => {
                    serve_within(serving.listening(listener), capacity, handler, stop).await
                }
                Err(e) => tracing::error!(listener = serving.name, error = %e, "cannot listen"),
            }
            return;
        }
        Sockets::Threads(sockets) => sockets,
    };
    let mut ended = Vec::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        let serving = serving.clone();
        let (capacity, handler, stop) = (capacity.clone(), handler.clone(), stop.clone());
        let name = serving.name;
        let (done, end) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{n}"))
            .spawn(move || {
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
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(listener) => {
                            serve_within(serving.listening(listener), capacity, handler, stop)
                                .await
                        }
                        Err(e) => tracing::error!(listener = name, error = %e, "cannot listen"),
                    }
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
