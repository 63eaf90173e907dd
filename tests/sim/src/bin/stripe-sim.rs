//! `stripe-sim`: the Stripe API simulator as a process for the local stack. Optionally plays a
//! scenario first: creates orders and Checkout Sessions, and delivers their webhooks to an edge as
//! Stripe would, dropping and duplicating some. Then serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use sim::scenario::{Deliveries, Driver, Ending, Rates};
use sim::server::StripeSim;

#[derive(Parser, Debug)]
#[command(
    about = "A Stripe API simulator (events, checkout sessions) that can play a checkout scenario"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: SocketAddr,
    /// The secret key clients must present.
    #[arg(long, env = "STRIPE_API_KEY")]
    api_key: String,
    /// Play this many checkouts against --edge before serving.
    #[arg(long, default_value_t = 0)]
    scenario: usize,
    /// The edge to deliver webhooks to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    edge: SocketAddr,
    /// Webhook signing secret (the first of the edge's list).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
    secret: Option<String>,
    /// Database where the app's orders are created.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Share of deliveries dropped (0–1).
    #[arg(long, default_value_t = 0.2)]
    drop: f64,
    /// Share of deliveries sent twice (0–1).
    #[arg(long, default_value_t = 0.05)]
    duplicate: f64,
    /// Create this many `checkout.session.completed` events (`evt_<prefix>_<n>` for session
    /// `cs_test_<prefix>_<n>`, one a second ending now) without delivering them (benchmarks).
    #[arg(long, default_value_t = 0)]
    synthetic: u64,
    #[arg(long, default_value = "bench")]
    synthetic_prefix: String,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let sim = StripeSim::start_on(args.listen.port(), &args.api_key).await;
    if args.synthetic > 0 {
        synthetic(&sim, args.synthetic, &args.synthetic_prefix);
        eprintln!("stripe-sim: {} synthetic events created", args.synthetic);
    }
    eprintln!("stripe-sim: listening on {}", sim.url());
    if args.scenario > 0 {
        let total = scenario(&args, &sim).await?;
        println!(
            "{}",
            serde_json::json!({
                "scenario": "done", "sessions": args.scenario, "events": total.events,
                "dropped": total.dropped, "duplicated": total.duplicated, "reordered": total.reordered,
                "delayed": total.delayed,
            })
        );
    }
    common::shutdown::signal_received().await;
    Ok(())
}

/// `n` `checkout.session.completed` events, one a second ending now, never delivered.
fn synthetic(sim: &StripeSim, n: u64, prefix: &str) {
    let now = chrono::Utc::now().timestamp();
    let mut session = sim::objects::Session::new("cs_template");
    let mut object = session.object();
    for i in 1..=n {
        session.created = now - n as i64 + i as i64 - 60;
        object["id"] = serde_json::json!(format!("cs_test_{prefix}_{i}"));
        object["created"] = serde_json::json!(session.created);
        object["payment_intent"] = serde_json::json!(format!("pi_{prefix}_{i}"));
        sim.add_event(sim::objects::envelope(
            &format!("evt_{prefix}_{i}"),
            "checkout.session.completed",
            session.created + 30,
            false,
            object.clone(),
        ));
    }
}

/// Plays `--scenario` checkouts against the edge, with every way a checkout ends in turn.
async fn scenario(args: &Args, sim: &StripeSim) -> Result<Deliveries, String> {
    let secret = args
        .secret
        .as_deref()
        .ok_or("--scenario needs STRIPE_WEBHOOK_SECRET")?;
    let secret = secret.split(',').next().unwrap_or_default().trim();
    let url = args
        .database_url
        .as_deref()
        .ok_or("--scenario needs DATABASE_URL")?;
    let pg: tokio_postgres::Config = url.parse().map_err(|e| format!("DATABASE_URL: {e}"))?;
    let db = sim::app::connect(&pg)
        .await
        .map_err(|e| common::error::chain(&e))?;
    let rates = Rates {
        drop: args.drop,
        duplicate: args.duplicate,
        reorder: 0.2,
        delay: 0.05,
    };
    let seed = chrono::Utc::now().timestamp() as u64;
    let mut driver = Driver::new(args.edge, secret, rates, seed);
    let endings = [
        Ending::Paid,
        Ending::Paid,
        Ending::Paid,
        Ending::AsyncPaid,
        Ending::Expired,
        Ending::AsyncFailed,
    ];
    let now = chrono::Utc::now().timestamp();
    let mut total = Deliveries::default();
    for i in 0..args.scenario {
        let ending = endings[i % endings.len()];
        let c = driver
            .checkout(&db, sim, ending, now - 600 + i as i64)
            .await;
        total += driver.deliver(&c).await;
    }
    total.retries += driver.deliver_delayed().await;
    Ok(total)
}
