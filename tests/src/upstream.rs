//! A fake upstream app: a real HTTP/1.1 server on port 0 that records every request it receives
//! (over a channel), counts the connections it accepted, and answers by path:
//! - `/status/<code>`: that status with a small body;
//! - `/stall`: never answers;
//! - `/download?bytes=N`: streams N pattern bytes;
//! - `/upload`: reads the body as a stream and answers `{"bytes":n,"sum":s}`;
//! - `/close`: 200, then closes the connection (`Connection: close`);
//! - `/node`: 200 `hello from upstream` with the hop-by-hop headers that Node's HTTP server sends
//!   on every answer (`Connection: keep-alive`, `Keep-Alive`);
//! - anything else: 200 `hello from upstream`, with hop-by-hop headers the edge must remove,
//!   among them one that `Connection` names.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// A running fake app.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// On a given loopback port (benchmarks, where the edge is told the port first).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let (tx, seen) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, tx.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The next request the upstream received.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the upstream received a request in time")
            .expect("upstream running")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process ends, forgetting what it saw (a long benchmark).
    pub async fn serve_forgetting(mut self) {
        while self.seen.recv().await.is_some() {}
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type UpBody = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Result<Response<UpBody>, Infallible> {
    let _ = seen.send(Seen {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let full = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
        *r.status_mut() = status;
        r
    };
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::IM_A_TEAPOT);
        let mut r = full(status, "app says no");
        r.headers_mut()
            .insert("x-app-error", "yes".parse().expect("header"));
        return Ok(r);
    }
    match path.as_str() {
        "/stall" => std::future::pending().await,
        "/close" => {
            let mut r = full(StatusCode::OK, "closing");
            r.headers_mut()
                .insert("connection", "close".parse().expect("header"));
            Ok(r)
        }
        "/download" => {
            let bytes = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok(Response::new(Pattern::new(bytes).boxed()))
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut n, mut sum) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                    sum = data.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
                }
            }
            let body = format!("{{\"bytes\":{n},\"sum\":{sum}}}");
            Ok(Response::new(Full::new(Bytes::from(body)).boxed()))
        }
        "/node" => {
            let mut r = full(StatusCode::OK, "hello from upstream");
            let h = r.headers_mut();
            h.insert("connection", "keep-alive".parse().expect("header"));
            h.insert("keep-alive", "timeout=5".parse().expect("header"));
            h.insert("x-app", "kept".parse().expect("header"));
            Ok(r)
        }
        _ => {
            let mut r = full(StatusCode::OK, "hello from upstream");
            let h = r.headers_mut();
            h.insert("connection", "x-upstream-hop".parse().expect("header"));
            h.insert(
                "x-upstream-hop",
                "must not reach the client".parse().expect("header"),
            );
            h.insert("keep-alive", "timeout=5".parse().expect("header"));
            h.insert("x-app", "kept".parse().expect("header"));
            Ok(r)
        }
    }
}

/// A body of `remaining` bytes (`i % 251`), produced 64 KiB at a time, never held whole.
pub struct Pattern {
    remaining: u64,
    offset: u64,
}

impl Pattern {
    pub const CHUNK: usize = 64 * 1024;

    pub fn new(bytes: u64) -> Self {
        Self {
            remaining: bytes,
            offset: 0,
        }
    }

    /// The sum of the bytes of a pattern of `bytes` bytes (what `/upload` reports).
    pub fn sum(bytes: u64) -> u64 {
        let (cycles, rest) = (bytes / 251, bytes % 251);
        cycles * (250 * 251 / 2) + rest * rest.saturating_sub(1) / 2
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(Self::CHUNK as u64);
        let start = self.offset;
        let chunk: Vec<u8> = (start..start + n).map(|i| (i % 251) as u8).collect();
        self.remaining -= n;
        self.offset += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}
