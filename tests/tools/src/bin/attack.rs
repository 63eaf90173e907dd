//! An attacker with nothing but bandwidth, and a Stripe that keeps delivering meanwhile: the
//! scenarios of `scripts/bench/attack.sh`, each printing one JSON line.
//!
//! - `idle`: N connections that send nothing (or 16 bytes of the HTTP/2 preface), held until the
//!   edge closes them: how many it closed, and when the last went.
//! - `trickle`: N HTTP/1 connections each trickling a body of B bytes (a well-formed, in-tolerance
//!   but wrong signature), or with `--h2` one h2c connection with N such streams: the answers.
//! - `webhooks`: signed webhooks, one every interval for a while: every status, the slowest.
//! - `ready-flood`: `/ready` as fast as C connections can: requests per second.
//! - `bad-signature`: C keep-alive connections sending bodies of B bytes with a wrong signature
//!   as fast as they can: requests per second and the edge's CPU per request (from `/proc`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use common::stripe::signature;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use sim::objects::{Session, session_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Attack scenarios against an edge, and a Stripe delivering meanwhile")]
struct Cli {
    /// The edge's public address.
    #[arg(long)]
    addr: SocketAddr,
    /// The webhook's path (the Node peer's is /webhook).
    #[arg(long, default_value = "/stripe/webhook")]
    path: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    Idle {
        #[arg(long)]
        connections: usize,
        /// Send 16 bytes of the HTTP/2 preface, then nothing.
        #[arg(long)]
        preface: bool,
        /// Give up waiting for the edge to close them after this many seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    Trickle {
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value_t = 1_048_576)]
        bytes: usize,
        /// Bytes sent per step, and the pause between steps (ms).
        #[arg(long, default_value_t = 4096)]
        step: usize,
        #[arg(long, default_value_t = 100)]
        every_ms: u64,
        /// One h2c connection carrying `connections` streams.
        #[arg(long)]
        h2: bool,
    },
    Webhooks {
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
        secret: String,
        #[arg(long, default_value_t = 200)]
        every_ms: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    ReadyFlood {
        /// The admin listener.
        #[arg(long)]
        admin: SocketAddr,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    BadSignature {
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The edge's pid, for its CPU time.
        #[arg(long)]
        pid: Option<u32>,
    },
}

fn wrong_signature() -> String {
    format!("t={},v1={}", chrono::Utc::now().timestamp(), "0".repeat(64))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let out = match cli.scenario {
        Scenario::Idle {
            connections,
            preface,
            wait,
        } => idle(cli.addr, connections, preface, wait).await,
        Scenario::Trickle {
            connections,
            bytes,
            step,
            every_ms,
            h2,
        } => {
            let every = Duration::from_millis(every_ms);
            match h2 {
                false => trickle(cli.addr, connections, bytes, step, every).await,
                true => trickle_h2(cli.addr, connections, bytes, step, every).await,
            }
        }
        Scenario::Webhooks {
            secret,
            every_ms,
            seconds,
        } => webhooks(cli.addr, &secret, every_ms, seconds).await,
        Scenario::ReadyFlood {
            admin,
            connections,
            seconds,
        } => ready_flood(admin, connections, seconds).await,
        Scenario::BadSignature {
            connections,
            bytes,
            seconds,
            pid,
        } => bad_signature(cli.addr, &cli.path, connections, bytes, seconds, pid).await,
    };
    println!("{out}");
}

async fn idle(addr: SocketAddr, n: usize, preface: bool, wait: u64) -> serde_json::Value {
    let mut conns = Vec::with_capacity(n);
    let mut refused = 0usize;
    for _ in 0..n {
        match TcpStream::connect(addr).await {
            Ok(mut c) => {
                if preface {
                    let _ = c.write_all(b"PRI * HTTP/2.0\r\n").await;
                }
                conns.push(c);
            }
            Err(_) => refused += 1,
        }
    }
    let opened = Instant::now();
    let closed = Arc::new(AtomicUsize::new(0));
    let last_ms = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let (closed, last_ms) = (closed.clone(), last_ms.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let read = tokio::time::timeout(Duration::from_secs(wait), async {
                    loop {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                if read.is_ok() {
                    closed.fetch_add(1, Ordering::Relaxed);
                    last_ms.fetch_max(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    json!({"scenario": "idle", "preface": preface, "connections": n, "refused": refused,
        "closed_by_edge": closed.load(Ordering::Relaxed),
        "last_closed_after_s": last_ms.load(Ordering::Relaxed) as f64 / 1000.0})
}

/// The status code of an answer's first bytes.
fn first_status(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_owned()
}

/// The first line of an answer (or how the connection ended).
async fn status_of(c: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await {
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(n)) => first_status(&buf[..n]),
        Ok(Err(_)) => "reset".into(),
        Err(_) => "no answer".into(),
    }
}

async fn trickle(
    addr: SocketAddr,
    n: usize,
    bytes: usize,
    step: usize,
    every: Duration,
) -> serde_json::Value {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let Ok(mut c) = TcpStream::connect(addr).await else {
                    return "refused".to_owned();
                };
                let head = format!(
                    "POST /stripe/webhook HTTP/1.1\r\nHost: edge\r\nStripe-Signature: {}\r\nContent-Length: {bytes}\r\n\r\n",
                    wrong_signature()
                );
                if c.write_all(head.as_bytes()).await.is_err() {
                    return "reset".to_owned();
                }
                let chunk = vec![b'x'; step];
                let mut sent = 0;
                let mut early = [0u8; 256];
                while sent < bytes {
                    let n = step.min(bytes - sent);
                    if c.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    // Answered early (503, 408, 400)?
                    match c.try_read(&mut early) {
                        Ok(0) => return "closed".to_owned(),
                        Ok(got) => return first_status(&early[..got]),
                        Err(_) => {}
                    }
                    tokio::time::sleep(every).await;
                }
                status_of(&mut c).await
            })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let s = t.await.unwrap_or_else(|_| "panic".into());
        *answers.entry(s).or_default() += 1;
    }
    json!({"scenario": "trickle", "h2": false, "connections": n, "bytes": bytes, "answers": answers})
}

/// A request body sent `step` bytes at a time.
struct Trickled {
    left: usize,
    step: usize,
    every: Duration,
    next: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Trickled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        if self.next.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        let n = self.step.min(self.left);
        self.left -= n;
        let at = tokio::time::Instant::now() + self.every;
        self.next.as_mut().reset(at);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b'x';
            n
        ])))))
    }
}

async fn trickle_h2(
    addr: SocketAddr,
    n: usize,
    bytes: usize,
    step: usize,
    every: Duration,
) -> serde_json::Value {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return json!({"scenario": "trickle", "h2": true, "error": "refused"});
    };
    let Ok((sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        return json!({"scenario": "trickle", "h2": true, "error": "handshake"});
    };
    tokio::spawn(conn);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                let req = http::Request::post(format!("http://{addr}/stripe/webhook"))
                    .header("stripe-signature", wrong_signature())
                    .header("content-length", bytes.to_string())
                    .body(Trickled {
                        left: bytes,
                        step,
                        every,
                        next: Box::pin(tokio::time::sleep(Duration::ZERO)),
                    });
                let Ok(req) = req else {
                    return "bad request".to_owned();
                };
                if sender.ready().await.is_err() {
                    return "connection gone".to_owned();
                }
                match sender.send_request(req).await {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(_) => "reset".into(),
                }
            })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let s = t.await.unwrap_or_else(|_| "panic".into());
        *answers.entry(s).or_default() += 1;
    }
    json!({"scenario": "trickle", "h2": true, "streams": n, "bytes": bytes, "answers": answers})
}

async fn webhooks(
    addr: SocketAddr,
    secret: &str,
    every_ms: u64,
    seconds: u64,
) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut slowest = Duration::ZERO;
    let mut sent = 0;
    while Instant::now() < end {
        let event = session_event(
            "checkout.session.completed",
            &Session::new(format!("cs_test_attack_{}", uuid::Uuid::new_v4().simple())),
        );
        let body = event.to_string();
        let sig = signature::sign(secret, chrono::Utc::now().timestamp(), body.as_bytes());
        let started = Instant::now();
        let status = match post(addr, &body, &sig).await {
            Ok(s) => s.to_string(),
            Err(e) => e,
        };
        slowest = slowest.max(started.elapsed());
        *statuses.entry(status).or_default() += 1;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
    json!({"scenario": "webhooks", "sent": sent, "statuses": statuses,
        "slowest_ms": slowest.as_secs_f64() * 1000.0})
}

async fn post(addr: SocketAddr, body: &str, sig: &str) -> Result<u16, String> {
    let stream = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post("/stripe/webhook")
        .header("host", addr.to_string())
        .header("stripe-signature", sig)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// Requests sent by `connections` keep-alive connections as fast as they are answered until
/// `end`: how many were answered, and how many of those with 400.
async fn flood<M>(addr: SocketAddr, connections: usize, end: Instant, make: M) -> (u64, u64)
where
    M: Fn() -> Option<http::Request<Full<Bytes>>> + Clone + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (done, refused, make) = (done.clone(), refused.clone(), make.clone());
            tokio::spawn(async move {
                let Ok(stream) = TcpStream::connect(addr).await else {
                    return;
                };
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    return;
                };
                tokio::spawn(conn);
                while Instant::now() < end {
                    let Some(req) = make() else {
                        return;
                    };
                    if sender.ready().await.is_err() {
                        return;
                    }
                    match sender.send_request(req).await {
                        Ok(resp) => {
                            if resp.status() == 400 {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = resp.into_body().collect().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (
        done.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

async fn ready_flood(admin: SocketAddr, connections: usize, seconds: u64) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(seconds);
    let (done, _) = flood(admin, connections, end, move || {
        http::Request::get("/ready")
            .header("host", admin.to_string())
            .body(Full::new(Bytes::new()))
            .ok()
    })
    .await;
    json!({"scenario": "ready-flood", "requests": done,
        "per_second": done as f64 / seconds as f64})
}

async fn bad_signature(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    bytes: usize,
    seconds: u64,
    pid: Option<u32>,
) -> serde_json::Value {
    let body = Bytes::from(vec![b'x'; bytes]);
    let ticks_before = pid.map(|p| tests::process::cpu_ticks(p, false));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let path = path.to_owned();
    let (n, refused) = flood(addr, connections, end, move || {
        http::Request::post(path.as_str())
            .header("host", addr.to_string())
            .header("stripe-signature", wrong_signature())
            .body(Full::new(body.clone()))
            .ok()
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let tck = 100.0; // USER_HZ on Linux
    let cpu_us = match (
        ticks_before,
        pid.map(|p| tests::process::cpu_ticks(p, false)),
    ) {
        (Some(a), Some(b)) if n > 0 => Some((b - a) as f64 / tck * 1e6 / n as f64),
        _ => None,
    };
    json!({"scenario": "bad-signature", "bytes": bytes, "connections": connections,
        "requests": n, "answered_400": refused,
        "per_second": n as f64 / elapsed, "edge_cpu_us_per_request": cpu_us})
}
