//! `stripe-sim`: the Stripe API simulator as a process for the local stack. Optionally plays a
//! scenario first: creates orders and Checkout Sessions, and delivers their webhooks to an edge as
//! Stripe would, dropping and duplicating some. Then serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use tests::driver::{Deliveries, Driver, Ending, Rates};
use tests::stripe_sim::StripeSim;

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
        let now = chrono::Utc::now().timestamp();
        let mut session = tests::stripe::Session::new("cs_template");
        let mut object = session.object();
        for n in 1..=args.synthetic {
            let id = format!("cs_test_{}_{n}", args.synthetic_prefix);
            session.created = now - args.synthetic as i64 + n as i64 - 60;
            object["id"] = serde_json::json!(id);
            object["created"] = serde_json::json!(session.created);
            object["payment_intent"] =
                serde_json::json!(format!("pi_{}_{n}", args.synthetic_prefix));
            sim.add_event(tests::stripe::envelope(
                &format!("evt_{}_{n}", args.synthetic_prefix),
                "checkout.session.completed",
                session.created + 30,
                false,
                object.clone(),
            ));
        }
        eprintln!("stripe-sim: {} synthetic events created", args.synthetic);
    }
    eprintln!("stripe-sim: listening on {}", sim.url());
    if args.scenario > 0 {
        let secret = args
            .secret
            .clone()
            .ok_or("--scenario needs STRIPE_WEBHOOK_SECRET")?;
        let secret = secret
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let url = args
            .database_url
            .clone()
            .ok_or("--scenario needs DATABASE_URL")?;
        let pg: tokio_postgres::Config = url.parse().map_err(|e| format!("DATABASE_URL: {e}"))?;
        let db = tests::pg::connect(&pg)
            .await
            .map_err(|e| common::error::chain(&e))?;
        let rates = Rates {
            drop: args.drop,
            duplicate: args.duplicate,
            reorder: 0.2,
            delay: 0.05,
        };
        let mut driver = Driver::new(
            args.edge,
            &secret,
            rates,
            chrono::Utc::now().timestamp() as u64,
        );
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
            let c = driver
                .checkout(&db, &sim, endings[i % endings.len()], now - 600 + i as i64)
                .await;
            total += driver.deliver(&c).await;
        }
        total.retries += driver.deliver_delayed().await;
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
