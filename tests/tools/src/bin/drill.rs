//! `drill`: the client side of `scripts/drill.sh`. It plays Stripe against the production topology
//! (HAProxy in front of several edges): `prepare` creates pending orders; `load` creates one
//! `checkout.session.completed` event per order in the simulator (Stripe's view) and delivers it,
//! signed, at a constant rate, retrying every non-2xx and connection error with backoff until a 2xx,
//! as Stripe does; `check` compares the ledger with the simulator's events and every order with
//! Stripe's view, optionally waiting until they agree.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use common::stripe::signature;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sim::objects::{Session, envelope};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(
    about = "Stripe's side of the topology drills: orders, a retrying webhook load, the final check"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Creates `count` pending orders for the sessions of `prefix`.
    Prepare {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: u64,
    },
    /// Creates and delivers one event per order of `prefix`, at `rate` a second; prints JSON.
    Load {
        /// The load balancer's address (host:port).
        #[arg(long)]
        target: String,
        #[arg(long)]
        sim: String,
        #[arg(long, env = "STRIPE_API_KEY")]
        api_key: String,
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
        secret: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// An event not answered 2xx within this many seconds is given up (counted as lost).
        #[arg(long, default_value_t = 120)]
        give_up_secs: u64,
    },
    /// Compares the ledger with the simulator's events of `prefix`, waiting up to `wait_secs` for
    /// them to agree; prints JSON.
    Check {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long)]
        sim: String,
        #[arg(long, env = "STRIPE_API_KEY")]
        api_key: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn session_id(prefix: &str, n: u64) -> String {
    format!("cs_test_drill_{prefix}_{n}")
}

fn event_id(prefix: &str, n: u64) -> String {
    format!("evt_drill_{prefix}_{n}")
}

#[tokio::main]
async fn main() -> Result<(), String> {
    match Args::parse().command {
        Command::Prepare {
            database_url,
            prefix,
            count,
        } => prepare(&database_url, &prefix, count).await,
        Command::Load {
            target,
            sim,
            api_key,
            secret,
            prefix,
            count,
            rate,
            give_up_secs,
        } => {
            let load = Load {
                client: Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(20))
                    .build_http(),
                target,
                sim,
                api_key,
                secret,
                prefix,
                give_up: Duration::from_secs(give_up_secs),
                stats: Stats::default(),
                errors: Mutex::new(BTreeMap::new()),
                started: Instant::now(),
            };
            let report = Arc::new(load).run(count, rate).await;
            println!("{report}");
            Ok(())
        }
        Command::Check {
            database_url,
            sim,
            api_key,
            prefix,
            wait_secs,
        } => {
            let report = check(&database_url, &sim, &api_key, &prefix, wait_secs).await?;
            println!("{report}");
            Ok(())
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let pg: tokio_postgres::Config = url.parse().map_err(|e| format!("DATABASE_URL: {e}"))?;
    tests::pg::connect(&pg)
        .await
        .map_err(|e| common::error::chain(&e))
}

async fn prepare(url: &str, prefix: &str, count: u64) -> Result<(), String> {
    let db = connect(url).await?;
    let count = i64::try_from(count).map_err(|_| "count too large")?;
    db.execute(
        "INSERT INTO orders (id, stripe_session_id, amount_total, currency)
         SELECT gen_random_uuid(), 'cs_test_drill_' || $1 || '_' || n, 2000, 'eur'
         FROM generate_series(1, $2::bigint) n",
        &[&prefix, &count],
    )
    .await
    .map_err(|e| common::error::chain(&e))?;
    Ok(())
}

#[derive(Default)]
struct Stats {
    /// Events whose delivery ended in a 2xx.
    acknowledged: AtomicU64,
    /// Delivery attempts, first ones and retries.
    attempts: AtomicU64,
    /// Attempts answered other than 2xx, or not answered: what a client sees.
    client_errors: AtomicU64,
    /// Events never answered 2xx before the give-up deadline.
    given_up: AtomicU64,
    /// Milliseconds after the start of the first and the last failed attempt (u64::MAX: none).
    first_error_ms: AtomicU64,
    last_error_ms: AtomicU64,
}

struct Load {
    client: HttpClient,
    target: String,
    sim: String,
    api_key: String,
    secret: String,
    prefix: String,
    give_up: Duration,
    stats: Stats,
    /// Failed attempts by what they were (a status code or the connection error).
    errors: Mutex<BTreeMap<String, u64>>,
    started: Instant,
}

impl Load {
    async fn run(self: Arc<Self>, count: u64, rate: u64) -> Value {
        self.stats.first_error_ms.store(u64::MAX, Ordering::Relaxed);
        let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(u32::MAX);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 1..=count {
            tick.tick().await;
            let load = self.clone();
            tasks.spawn(async move { load.deliver(n).await });
        }
        while tasks.join_next().await.is_some() {}
        let s = &self.stats;
        let first = s.first_error_ms.load(Ordering::Relaxed);
        let last = s.last_error_ms.load(Ordering::Relaxed);
        let errors = self.errors.lock().await.clone();
        json!({
            "prefix": self.prefix,
            "sent": count,
            "acknowledged": s.acknowledged.load(Ordering::Relaxed),
            "attempts": s.attempts.load(Ordering::Relaxed),
            "retries": s.attempts.load(Ordering::Relaxed).saturating_sub(count),
            "client_errors": s.client_errors.load(Ordering::Relaxed),
            "errors": errors,
            "given_up": s.given_up.load(Ordering::Relaxed),
            "first_error_s": (first != u64::MAX).then(|| first as f64 / 1000.0),
            "last_error_s": (first != u64::MAX).then(|| last as f64 / 1000.0),
            "seconds": self.started.elapsed().as_secs_f64(),
        })
    }

    /// Creates event `n` in Stripe's view, then delivers it until a 2xx or the give-up deadline.
    async fn deliver(&self, n: u64) {
        let created = chrono::Utc::now().timestamp();
        let mut session = Session::new(session_id(&self.prefix, n));
        session.created = created - 60;
        session.amount_total = Some(2000);
        session.currency = Some("eur");
        session.payment_intent = Some(format!("pi_drill_{}_{n}", self.prefix));
        let mut object = session.object();
        object["status"] = json!("complete");
        object["payment_status"] = json!("paid");
        let event = envelope(
            &event_id(&self.prefix, n),
            "checkout.session.completed",
            created,
            false,
            object,
        );
        let body = Bytes::from(event.to_string());
        let deadline = Instant::now() + self.give_up;
        // Stripe's view first: the event exists whether or not its delivery succeeds.
        while self.record_in_sim(&body).await.is_err() {
            if Instant::now() > deadline {
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            match self.post(&body).await {
                Ok(status) if status.is_success() => {
                    self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(status) => self.failed(status.as_u16().to_string()).await,
                Err(e) => self.failed(e).await,
            }
            if Instant::now() + backoff > deadline {
                self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn failed(&self, what: String) {
        let at = self.started.elapsed().as_millis() as u64;
        self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.first_error_ms.fetch_min(at, Ordering::Relaxed);
        self.stats.last_error_ms.fetch_max(at, Ordering::Relaxed);
        *self.errors.lock().await.entry(what).or_default() += 1;
    }

    async fn record_in_sim(&self, body: &Bytes) -> Result<(), String> {
        let req = Request::post(format!("{}/_sim/events", self.sim))
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    }

    async fn post(&self, body: &Bytes) -> Result<StatusCode, String> {
        let header = signature::sign(&self.secret, chrono::Utc::now().timestamp(), body);
        let req = Request::post(format!("http://{}/stripe/webhook", self.target))
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await;
        let resp = match answer {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(format!("connection: {}", error_kind(&e))),
            Err(_) => return Err("timeout".to_owned()),
        };
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok(status)
    }
}

/// A short, stable name for a client error (for the error counts).
fn error_kind(e: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Every event id of `prefix` the simulator holds, through Stripe's own list API.
async fn sim_events(sim: &str, api_key: &str, prefix: &str) -> Result<HashSet<String>, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let wanted = format!("evt_drill_{prefix}_");
    let mut ids = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{sim}/v1/events?limit=100");
        if let Some(a) = &after {
            url.push_str(&format!("&starting_after={a}"));
        }
        let req = Request::get(url)
            .header("authorization", format!("Bearer {api_key}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let page = tests::http::json_body(resp.into_body()).await?;
        let data = page["data"].as_array().ok_or("a list without data")?;
        for event in data {
            if let Some(id) = event["id"].as_str()
                && id.starts_with(&wanted)
            {
                ids.insert(id.to_owned());
            }
        }
        after = data
            .last()
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned);
        if page["has_more"] != json!(true) || after.is_none() {
            return Ok(ids);
        }
    }
}

/// The ledger against Stripe's view: lost (Stripe has it, the ledger does not), extra (the other
/// way), doubled (more than one row), orders whose status is not `paid` although their session's
/// event is stored, and the events the reconciler backfilled (and when the last one was).
async fn compare(
    db: &tokio_postgres::Client,
    stripe: &HashSet<String>,
    prefix: &str,
) -> Result<Value, String> {
    let pattern = format!("evt_drill_{prefix}_%");
    let rows = db
        .query(
            "SELECT stripe_event_id, count(*) FROM payment_events
             WHERE stripe_event_id LIKE $1 GROUP BY 1",
            &[&pattern],
        )
        .await
        .map_err(|e| common::error::chain(&e))?;
    let mut ledger = HashSet::new();
    let mut doubled = 0u64;
    for row in rows {
        let id: String = row.get(0);
        if row.get::<_, i64>(1) > 1 {
            doubled += 1;
        }
        ledger.insert(id);
    }
    let lost = stripe.difference(&ledger).count();
    let extra = ledger.difference(stripe).count();
    let sessions = format!("cs_test_drill_{prefix}_%");
    let not_paid: i64 = db
        .query_one(
            "SELECT count(*) FROM orders o
             WHERE o.stripe_session_id LIKE $1 AND o.status <> 'paid'
               AND EXISTS (SELECT 1 FROM payment_events e
                           WHERE e.stripe_event_id = 'evt_drill_' || $2 || '_' ||
                                 substring(o.stripe_session_id from '[0-9]+$'))",
            &[&sessions, &prefix],
        )
        .await
        .map_err(|e| common::error::chain(&e))?
        .get(0);
    let backfill = db
        .query_one(
            "SELECT count(*), extract(epoch FROM max(received_at))::float8 FROM payment_events
             WHERE stripe_event_id LIKE $1 AND source <> 'webhook'",
            &[&pattern],
        )
        .await
        .map_err(|e| common::error::chain(&e))?;
    Ok(json!({
        "backfilled": backfill.get::<_, i64>(0),
        "last_backfill_at_unix": backfill.get::<_, Option<f64>>(1),
        "stripe_events": stripe.len(),
        "ledger_events": ledger.len(),
        "lost": lost,
        "extra": extra,
        "doubled": doubled,
        "orders_not_paid": not_paid,
    }))
}

async fn check(
    url: &str,
    sim: &str,
    api_key: &str,
    prefix: &str,
    wait_secs: u64,
) -> Result<Value, String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(wait_secs);
    let stripe = sim_events(sim, api_key, prefix).await?;
    loop {
        // The database may be failing over: reconnect on every round.
        let result = match connect(url).await {
            Ok(db) => compare(&db, &stripe, prefix).await,
            Err(e) => Err(e),
        };
        let whole = matches!(&result, Ok(r) if r["lost"] == 0 && r["extra"] == 0
            && r["doubled"] == 0 && r["orders_not_paid"] == 0);
        if whole || Instant::now() >= deadline {
            let mut report = match result {
                Ok(r) => r,
                Err(e) => json!({ "error": e }),
            };
            report["whole"] = json!(whole);
            report["seconds_until_whole"] = json!(whole.then(|| started.elapsed().as_secs_f64()));
            report["whole_at_unix"] = json!(whole.then(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            }));
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
