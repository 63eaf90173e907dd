//! The floor of the proxy's fixed stack: a reverse proxy with hyper 1.x's HTTP/1 server and client
//! and nothing else, laid out as the edge's public listener is (one single-threaded runtime per
//! thread, each accepting on its own `SO_REUSEPORT` socket). Each client connection gets its own
//! kept upstream connection, and each request is passed on with one `X-Forwarded-For` added.
//! There is no routing, request id, hop-by-hop filtering, cap, deadline, metric or log.
//! `scripts/bench/proxy.sh` runs it beside the edge, nginx and HAProxy (`BENCH_FLOOR=1`): what the
//! edge spends above it is the edge's own work, and what it spends above nginx is hyper and tokio's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use common::http::threads::Sockets;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "A bare hyper reverse proxy: the floor of the edge's proxy stack")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream app's address.
    #[arg(long)]
    upstream: SocketAddr,
    /// Serving threads, one socket and one single-threaded runtime each.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The upstream's body as it is, or the empty body of a 502.
type Body = Either<Incoming, Empty<Bytes>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let Sockets::Threads(sockets) = Sockets::bind(args.listen, args.threads.max(1))? else {
        return Err("expected one socket per thread".into());
    };
    let upstream = args.upstream;
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|socket| std::thread::spawn(move || serve(socket, upstream)))
        .collect();
    for thread in threads {
        if let Ok(Err(e)) = thread.join() {
            return Err(e.to_string().into());
        }
    }
    Ok(())
}

/// Accepts on `socket` for ever on a runtime of this thread's own.
fn serve(socket: std::net::TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(socket)?;
        loop {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let kept = Arc::new(Mutex::new(None::<SendRequest<Incoming>>));
                let forwarded = HeaderValue::from_str(&peer.ip().to_string()).ok();
                let service = hyper::service::service_fn(move |req| {
                    let kept = kept.clone();
                    let forwarded = forwarded.clone();
                    async move { Ok::<_, Infallible>(forward(req, &kept, forwarded, upstream).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Passes one request on over this connection's upstream connection, opened on first use.
async fn forward(
    mut req: Request<Incoming>,
    kept: &Mutex<Option<SendRequest<Incoming>>>,
    forwarded: Option<HeaderValue>,
    upstream: SocketAddr,
) -> Response<Body> {
    if let Some(value) = forwarded {
        req.headers_mut().append(X_FORWARDED_FOR, value);
    }
    let mut slot = kept.lock().await;
    let sender = match slot.as_mut() {
        Some(sender) if !sender.is_closed() => sender,
        _ => match connect(upstream).await {
            Ok(sender) => slot.insert(sender),
            Err(_) => return bad_gateway(),
        },
    };
    if sender.ready().await.is_err() {
        *slot = None;
        return bad_gateway();
    }
    match sender.send_request(req).await {
        Ok(resp) => resp.map(Either::Left),
        Err(_) => {
            *slot = None;
            bad_gateway()
        }
    }
}

async fn connect(
    upstream: SocketAddr,
) -> Result<SendRequest<Incoming>, Box<dyn std::error::Error>> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Either::Right(Empty::new()));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
