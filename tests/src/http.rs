//! A minimal HTTP/1.1 test client (one connection per request) and raw-socket helpers for the
//! hostile-input tests.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub use sim::client::{Reply, request, send};

/// A response body collected and read as JSON.
pub async fn json_body<B>(body: B) -> Result<Value, String>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = request(Method::GET, addr, path)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(addr, req).await.expect("GET")
}

/// `method path` with no body, and `Authorization: Bearer <token>` when a token is given (the
/// admin routes).
pub async fn bearer(addr: SocketAddr, method: Method, path: &str, token: Option<&str>) -> Reply {
    let mut req = request(method, addr, path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(addr, req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("reply")
}

/// Reads from `stream` until the peer closes it or `within` passes; returns what arrived and
/// whether the peer closed.
pub async fn read_until_closed(
    stream: &mut TcpStream,
    within: std::time::Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads from `stream` until `needle` has arrived (or `within` passes).
pub async fn read_until(
    stream: &mut TcpStream,
    needle: &[u8],
    within: std::time::Duration,
) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    while !out.windows(needle.len()).any(|w| w == needle) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err(format!("timed out; got {}", String::from_utf8_lossy(&out))),
            Ok(Ok(0)) => return Err(format!("closed; got {}", String::from_utf8_lossy(&out))),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(out)
}

/// Polls `check` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A keep-alive HTTP/1.1 connection, retried for up to 10 s while the server starts.
pub async fn keep_alive<B>(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A TCP connection with `TCP_NODELAY`, retried for up to 10 s while the server starts.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(format!("connect {addr}: {e}"));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
