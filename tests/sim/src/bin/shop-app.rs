//! `shop-app`: the example shop's notification endpoint as a process (`scripts/dev.sh` runs it):
//! verifies each order notification, deduplicates by its id and logs "fulfilled order …".

use clap::Parser;
use sim::shop::Shop;

#[derive(Parser, Debug)]
#[command(
    about = "The example shop: receives the edge's order notifications and fulfils paid orders"
)]
struct Args {
    /// Loopback port to listen on.
    #[arg(long, default_value_t = 12112)]
    port: u16,
    /// The secret the notifications are signed with (APP_NOTIFY_SECRET).
    #[arg(long, env = "APP_NOTIFY_SECRET")]
    secret: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    common::telemetry::init(common::config::LogFormat::Pretty);
    let shop = match Shop::start_on(args.port, &args.secret).await {
        Ok(shop) => shop,
        Err(e) => {
            eprintln!("shop-app: cannot listen on 127.0.0.1:{}: {e}", args.port);
            std::process::exit(69);
        }
    };
    tracing::info!("shop-app: notifications on {}", shop.url());
    common::shutdown::signal_received().await;
}
