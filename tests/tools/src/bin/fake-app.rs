//! `fake-app`: the fake upstream app of `tests::upstream` as a process of its own, so that the
//! proxy benchmark puts the edge, nginx and HAProxy in front of the very same app.

use clap::Parser;
use tests::upstream::Upstream;

#[derive(Parser, Debug)]
#[command(
    about = "The fake upstream app (200 `hello from upstream` on /, streams on /download and /upload)"
)]
struct Args {
    /// Loopback port to listen on.
    #[arg(long)]
    port: u16,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let app = Upstream::start_on(args.port).await;
    eprintln!("fake-app: listening on {}", app.addr);
    tokio::select! {
        () = app.serve_forgetting() => {}
        () = common::shutdown::signal_received() => {}
    }
}
