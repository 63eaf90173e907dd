//! Proxy benchmark: small GETs straight to a fake app vs through a running edge (alternating
//! rounds, same client), then 100 MB streamed down and up through the edge while its peak RSS is
//! read from /proc. Prints a table and writes JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use http::Request;
use http_body_util::{BodyExt, Empty};
use serde_json::json;
use tests::upstream::{Pattern, Upstream};

#[derive(Parser, Debug)]
#[command(about = "Small GETs direct vs through the edge, and the edge's RSS while streaming")]
struct Args {
    /// The edge's public address (started with UPSTREAM_URL pointing at --upstream-port).
    #[arg(long)]
    edge: SocketAddr,
    /// Pid of the edge, to read its RSS.
    #[arg(long)]
    edge_pid: u32,
    /// Port for the fake app (the edge's UPSTREAM_URL).
    #[arg(long)]
    upstream_port: u16,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 30_000)]
    requests: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 100)]
    stream_mb: u64,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let upstream = Upstream::start_on(args.upstream_port).await;
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    let (mut own_direct, mut own_proxied, mut edge_cpu) = (0u64, 0u64, 0u64);
    for _ in 0..args.rounds {
        let t0 = tests::process::cpu_ticks(std::process::id(), false);
        direct.push(load(upstream.addr, args.connections, args.requests).await?);
        let (t1, e1) = (
            tests::process::cpu_ticks(std::process::id(), false),
            tests::process::cpu_ticks(args.edge_pid, false),
        );
        proxied.push(load(args.edge, args.connections, args.requests).await?);
        let (t2, e2) = (
            tests::process::cpu_ticks(std::process::id(), false),
            tests::process::cpu_ticks(args.edge_pid, false),
        );
        own_direct += t1 - t0;
        own_proxied += t2 - t1;
        edge_cpu += e2 - e1;
    }
    let per_req = |ticks: u64| ticks as f64 * 1e6 / 100.0 / (args.rounds * args.requests) as f64;
    let rss_before = rss_kb(args.edge_pid, "VmRSS");
    let bytes = args.stream_mb * 1024 * 1024;
    let down = download(args.edge, bytes).await?;
    let up = upload(args.edge, bytes).await?;
    let peak = rss_kb(args.edge_pid, "VmHWM");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, p) = (median(&mut direct.clone()), median(&mut proxied.clone()));
    println!();
    println!("| round | direct req/s | through the edge req/s | ratio |");
    println!("|---|---:|---:|---:|");
    for (i, (a, b)) in direct.iter().zip(&proxied).enumerate() {
        println!("| {} | {a:.0} | {b:.0} | {:.2} |", i + 1, b / a);
    }
    println!();
    println!(
        "through the edge / direct: {:.2} (medians; target >= 0.70)",
        p / d
    );
    println!(
        "CPU per request: client + app {:.0} us direct, {:.0} us when proxied; the edge {:.0} us",
        per_req(own_direct),
        per_req(own_proxied),
        per_req(edge_cpu)
    );
    println!(
        "streamed {} MB down ({:.0} MB/s) and up ({:.0} MB/s) through the edge: RSS before {:.1} MB, peak {:.1} MB",
        args.stream_mb,
        down,
        up,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    if let Some(path) = args.json {
        let result = json!({"direct_rps": direct, "proxied_rps": proxied, "ratio_medians": p / d,
            "client_app_cpu_us_direct": per_req(own_direct), "client_app_cpu_us_proxied": per_req(own_proxied),
            "edge_cpu_us_per_request": per_req(edge_cpu),
            "stream_mb": args.stream_mb, "download_mb_s": down, "upload_mb_s": up,
            "edge_rss_before_mb": rss_before as f64 / 1024.0, "edge_peak_rss_mb": peak as f64 / 1024.0});
        std::fs::write(path, result.to_string()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `requests` GETs of `/` over `connections` keep-alive connections; returns req/s.
async fn load(addr: SocketAddr, connections: usize, requests: usize) -> Result<f64, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut sender = tests::http::keep_alive::<Empty<Bytes>>(addr).await?;
                let mut ok = 0usize;
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let req = Request::get("/")
                        .header("host", "shop.example")
                        .body(Empty::new())
                        .map_err(|e| e.to_string())?;
                    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                    let ok_status = resp.status().is_success();
                    resp.into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    ok += usize::from(ok_status);
                }
                Ok::<usize, String>(ok)
            })
        })
        .collect();
    let mut ok = 0;
    for w in workers {
        ok += w.await.map_err(|e| e.to_string())??;
    }
    if ok != requests {
        return Err(format!("{} of {requests} requests failed", requests - ok));
    }
    Ok(ok as f64 / started.elapsed().as_secs_f64())
}

async fn download(edge: SocketAddr, bytes: u64) -> Result<f64, String> {
    let mut sender = tests::http::keep_alive::<Empty<Bytes>>(edge).await?;
    let started = Instant::now();
    let req = Request::get(format!("/download?bytes={bytes}"))
        .header("host", "shop.example")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let mut body = sender
        .send_request(req)
        .await
        .map_err(|e| e.to_string())?
        .into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.map_err(|e| e.to_string())?.data_ref() {
            n += d.len() as u64;
        }
    }
    if n != bytes {
        return Err(format!("downloaded {n} of {bytes} bytes"));
    }
    Ok(bytes as f64 / 1048576.0 / started.elapsed().as_secs_f64())
}

async fn upload(edge: SocketAddr, bytes: u64) -> Result<f64, String> {
    let mut sender = tests::http::keep_alive::<Pattern>(edge).await?;
    let started = Instant::now();
    let req = Request::post("/upload")
        .header("host", "shop.example")
        .body(Pattern::new(bytes))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let seen = tests::http::json_body(resp.into_body()).await?;
    if seen["bytes"] != bytes {
        return Err(format!(
            "the app received {} of {bytes} bytes",
            seen["bytes"]
        ));
    }
    Ok(bytes as f64 / 1048576.0 / started.elapsed().as_secs_f64())
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix(" kB")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
