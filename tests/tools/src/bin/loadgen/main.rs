//! Load generator: sends unique signed `checkout.session.completed` events for pre-created orders
//! over N keep-alive connections, prints req/s and p50/p99, and checks that the ledger holds
//! exactly one row per 2xx (and that every such order is paid).
//!
//! Closed loop by default (each connection sends its next request when the last is answered: the
//! maximum rate). With `--rate R`, open loop: request i is due at start + i/R whatever happened to
//! the others, and its latency is counted from that due time, so a stall shows in every request it
//! delays (no coordinated omission). The N connections are then a pool: a request due while all
//! are busy waits for one, and that wait is part of its latency ([`schedule`]). The client is a
//! few system calls per request ([`wire`]), so that on a shared machine it takes little from the
//! server it measures.

mod schedule;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::stripe::signature;
use schedule::Schedule;
use serde_json::json;
use sim::objects::{Session, envelope};
use wire::{Failure, Target};

#[derive(Parser, Debug)]
#[command(about = "Sends unique signed checkout.session.completed events and checks the ledger")]
struct Args {
    /// The edge's public address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Webhook secret (the first one the edge accepts).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
    secret: String,
    /// Database of the edge, to create orders and check the ledger.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Total requests (one unique event each).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Distinguishes this run's ids from other runs in the same database.
    #[arg(long, default_value = "run")]
    label: String,
    /// Write the result as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// The webhook route of the server under test.
    #[arg(long, default_value = "/stripe/webhook")]
    path: String,
    /// Whose `orders` table to fill: ours, or the Node peer's (`tests/peer/node-express`).
    #[arg(long, value_enum, default_value_t = Schema::Edge)]
    schema: Schema,
    /// The server process under test: its CPU time while the clock runs is reported per request.
    #[arg(long)]
    app_pid: Option<u32>,
    /// The Postgres postmaster: its CPU time and its children's while the clock runs is reported
    /// per request (the set-up and the ledger check are outside the window).
    #[arg(long)]
    postmaster_pid: Option<u32>,
    /// Open loop: requests are due at this constant rate (per second); latency counts from the
    /// due time.
    #[arg(long)]
    rate: Option<f64>,
    /// HTTPS: the PEM file of the CA that signed the server's certificate (for `localhost`).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
}

/// CPU time (user + system, in clock ticks) of the processes whose time a run reports.
#[derive(Clone, Copy, Default)]
struct CpuTicks {
    app: u64,
    postgres: u64,
    loadgen: u64,
}

impl CpuTicks {
    fn now(args: &Args) -> Self {
        Self {
            app: args
                .app_pid
                .map_or(0, |pid| tests::process::cpu_ticks(pid, false)),
            postgres: args.postmaster_pid.map_or(0, |pid| {
                tests::process::cpu_ticks(pid, true)
                    + children(pid)
                        .map(|c| tests::process::cpu_ticks(c, false))
                        .sum::<u64>()
            }),
            loadgen: tests::process::cpu_ticks(std::process::id(), false),
        }
    }
}

/// The live children of a process, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> impl Iterator<Item = u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    tasks
        .into_iter()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
}

/// The two `orders` tables the generator knows. Both have `stripe_session_id` and `status`, and
/// both ledgers have `payment_events.stripe_event_id`, so the checks are the same.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Schema {
    Edge,
    Peer,
}

impl Schema {
    fn insert_orders(self) -> &'static str {
        match self {
            Self::Edge => {
                "INSERT INTO orders (id, stripe_session_id, amount_total, currency)
                 SELECT gen_random_uuid(), 'cs_test_' || $1 || '_' || g, 2000, 'eur'
                 FROM generate_series(1, $2::int) AS g"
            }
            Self::Peer => {
                "INSERT INTO orders (stripe_session_id, amount_cents, currency)
                 SELECT 'cs_test_' || $1 || '_' || g, 2000, 'eur'
                 FROM generate_series(1, $2::int) AS g"
            }
        }
    }
}

struct Totals {
    ok: usize,
    failed: usize,
    latencies_us: Vec<u32>,
    /// Open loop: (the request's index, its latency in µs), for the per-second timeline.
    by_index: Vec<(usize, u32)>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let pg: tokio_postgres::Config = args.database_url.parse().map_err(|e| format!("{e}"))?;
    let db = tests::pg::connect(&pg)
        .await
        .map_err(|e| common::error::chain(&e))?;
    let prefix = format!("load_{}_{}", args.label, uuid::Uuid::new_v4().simple());
    db.execute(
        args.schema.insert_orders(),
        &[&prefix, &(args.requests as i32)],
    )
    .await
    .map_err(|e| common::error::chain(&e))?;
    let requests = signed_requests(&args, &prefix);
    let cpu_before = CpuTicks::now(&args);
    let started = Instant::now();
    let mut totals = send_all(&args, requests).await?;
    let elapsed = started.elapsed();
    let cpu_after = CpuTicks::now(&args);
    let ledger = Ledger::read(&db, &prefix).await?;
    report(
        &args,
        &mut totals,
        elapsed,
        (cpu_before, cpu_after),
        &ledger,
    )
}

/// Every request's bytes, built and signed before the clock starts.
fn signed_requests(args: &Args, prefix: &str) -> Vec<Vec<u8>> {
    let now = chrono::Utc::now().timestamp();
    let host = args.addr.to_string();
    (1..=args.requests)
        .map(|i| {
            let mut session = Session::new(format!("cs_test_{prefix}_{i}"));
            session.created = now - 30;
            let event = envelope(
                &format!("evt_{prefix}_{i}"),
                "checkout.session.completed",
                now - 5,
                false,
                session.object(),
            );
            let body = event.to_string();
            let header = signature::sign(&args.secret, now, body.as_bytes());
            wire::post(&host, &args.path, &header, body.as_bytes())
        })
        .collect()
}

/// Sends every request over the connections, closed loop, or open loop at `--rate`.
async fn send_all(args: &Args, requests: Vec<Vec<u8>>) -> Result<Totals, String> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let tls = match &args.tls_ca {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            Some(tests::tls::client_config(&pem, &[b"http/1.1"])?)
        }
        None => None,
    };
    let target = Target {
        addr: args.addr,
        tls,
    };
    // Every connection is open before the first request is due.
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(target.connect().await?);
    }
    // Open loop: requests are released at the rate; closed loop: no schedule.
    let schedule = args.rate.map(|rate| Schedule::start(rate, args.requests));
    let workers: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            tokio::spawn(worker(
                target.clone(),
                connection,
                requests.clone(),
                next.clone(),
                schedule.clone(),
            ))
        })
        .collect();
    let mut totals = Totals {
        ok: 0,
        failed: 0,
        latencies_us: Vec::with_capacity(args.requests),
        by_index: Vec::new(),
    };
    for w in workers {
        let t = w.await.map_err(|e| e.to_string())??;
        totals.ok += t.ok;
        totals.failed += t.failed;
        totals.latencies_us.extend(t.latencies_us);
        totals.by_index.extend(t.by_index);
    }
    Ok(totals)
}

/// What the ledger holds of this run.
struct Ledger {
    rows: i64,
    paid: i64,
}

impl Ledger {
    async fn read(db: &tokio_postgres::Client, prefix: &str) -> Result<Self, String> {
        let count = |sql: &'static str| async move {
            db.query_one(sql, &[&prefix])
                .await
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| common::error::chain(&e))
        };
        Ok(Self {
            rows: count(
                "SELECT count(*) FROM payment_events WHERE stripe_event_id LIKE 'evt_' || $1 || '\\_%'",
            )
            .await?,
            paid: count(
                "SELECT count(*) FROM orders WHERE stripe_session_id LIKE 'cs_test_' || $1 || '\\_%' AND status = 'paid'",
            )
            .await?,
        })
    }
}

/// Open loop: per second of the schedule (by due time), the requests due, their p99 and maximum
/// latency, and how many took over 25 ms: shows whether a tail is spread out or a few stalls.
fn timeline(rate: Option<f64>, by_index: &[(usize, u32)]) -> serde_json::Value {
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        return serde_json::Value::Null;
    };
    let mut seconds: Vec<Vec<u32>> = Vec::new();
    for &(i, latency) in by_index {
        let s = (i as f64 / rate) as usize;
        if seconds.len() <= s {
            seconds.resize_with(s + 1, Vec::new);
        }
        seconds[s].push(latency);
    }
    let rows = seconds.into_iter().enumerate().map(|(s, mut l)| {
        l.sort_unstable();
        let at = |p: f64| {
            l.get(((l.len().max(1) - 1) as f64 * p) as usize)
                .map_or(0.0, |v| *v as f64 / 1000.0)
        };
        json!({
            "second": s,
            "requests": l.len(),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
            "over_25ms": l.iter().filter(|v| **v > 25_000).count(),
        })
    });
    serde_json::Value::Array(rows.collect())
}

/// Prints the run's line, writes its JSON, and fails unless the ledger holds exactly one row per
/// 2xx and every such order is paid.
fn report(
    args: &Args,
    totals: &mut Totals,
    elapsed: Duration,
    (cpu_before, cpu_after): (CpuTicks, CpuTicks),
    ledger: &Ledger,
) -> Result<(), String> {
    // Clock ticks per second: 100 on Linux (`getconf CLK_TCK`).
    let per_request = |before: u64, after: u64| {
        after.saturating_sub(before) as f64 * 10_000.0 / args.requests.max(1) as f64
    };
    totals.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &totals.latencies_us;
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    let rps = totals.ok as f64 / elapsed.as_secs_f64();
    let rows_ok = ledger.rows as usize == totals.ok && ledger.paid as usize == totals.ok;
    let result = json!({
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "target_rate": args.rate,
        "connections": args.connections,
        "requests": args.requests,
        "ok": totals.ok,
        "failed": totals.failed,
        "seconds": elapsed.as_secs_f64(),
        "rps": rps,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": pct(1.0),
        "ledger_rows": ledger.rows,
        "orders_paid": ledger.paid,
        "rows_checked": rows_ok,
        "app_cpu_us_per_req": per_request(cpu_before.app, cpu_after.app),
        "pg_cpu_us_per_req": per_request(cpu_before.postgres, cpu_after.postgres),
        "loadgen_cpu_us_per_req": per_request(cpu_before.loadgen, cpu_after.loadgen),
        "timeline": timeline(args.rate, &totals.by_index),
    });
    println!(
        "loadgen c={:<3} requests={} ok={} failed={} {:.0} req/s p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms ledger_rows={} paid={} rows_checked={}",
        args.connections,
        args.requests,
        totals.ok,
        totals.failed,
        rps,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        ledger.rows,
        ledger.paid,
        if rows_ok { "ok" } else { "MISMATCH" }
    );
    if let Some(path) = &args.json {
        std::fs::write(path, result.to_string()).map_err(|e| e.to_string())?;
    }
    if rows_ok && totals.failed == 0 {
        Ok(())
    } else {
        Err("ledger check failed".into())
    }
}

/// One connection's loop: takes the next request (the next index, or the next one released by
/// the schedule), sends it, and counts its answer and latency.
async fn worker(
    target: Target,
    mut connection: wire::Connection,
    requests: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
    schedule: Option<Schedule>,
) -> Result<Totals, String> {
    let mut totals = Totals {
        ok: 0,
        failed: 0,
        latencies_us: Vec::new(),
        by_index: Vec::new(),
    };
    loop {
        let (i, due) = match &schedule {
            Some(schedule) => match schedule.next().await {
                Some(next) => next,
                None => break,
            },
            None => (next.fetch_add(1, Ordering::Relaxed), Instant::now()),
        };
        let Some(request) = requests.get(i) else {
            break;
        };
        match connection.exchange(request).await {
            Ok(answer) => {
                let latency = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
                totals.latencies_us.push(latency);
                if schedule.is_some() {
                    totals.by_index.push((i, latency));
                }
                if (200..300).contains(&answer.status) {
                    totals.ok += 1
                } else {
                    totals.failed += 1
                }
                if answer.close {
                    connection = target.connect().await?;
                }
            }
            Err(Failure::Io(e)) => {
                if totals.failed == 0 {
                    eprintln!("loadgen: request {i} failed on its connection: {e}");
                }
                totals.failed += 1;
                connection = target.connect().await?;
            }
            Err(Failure::Protocol(e)) => return Err(format!("request {i}: {e}")),
        }
    }
    Ok(totals)
}
