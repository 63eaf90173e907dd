//! `edge` binary: parse the command and config, then serve or migrate (`edge::migrate`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::{shutdown, telemetry};
use edge::config::EdgeConfig;

#[derive(Parser)]
#[command(
    name = "edge",
    version = common::build::LONG_VERSION,
    about = "Stripe webhook edge: verify, record, acknowledge; proxy the rest"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public listener (webhook + proxy) and the admin listener (default).
    Serve,
    /// Apply the embedded database migrations and exit.
    Migrate {
        /// List the applied and pending migrations; change nothing.
        #[arg(long, conflicts_with = "dry_run")]
        status: bool,
        /// Print the SQL of the pending migrations; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate { status, dry_run } => {
            let mode = if status {
                edge::migrate::Mode::Status
            } else if dry_run {
                edge::migrate::Mode::DryRun
            } else {
                edge::migrate::Mode::Apply
            };
            edge::migrate::run(mode).await
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn serve() -> i32 {
    let config = match EdgeConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprint!("edge: {e}");
            return common::EXIT_CONFIG;
        }
    };
    telemetry::init(config.log_format);
    // Every descriptor the hard limit allows: the connection cap is derived from it.
    let fd_limit = edge::resources::raise_fd_limit();
    tracing::info!(fdLimit = fd_limit, "file descriptor limit");
    let app = match edge::App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "edge cannot start");
            eprintln!("edge: {e}");
            return e.exit_code();
        }
    };
    let hangups = tokio::spawn(edge::reload::on_hangup(app.state()));
    let secret_file = tokio::spawn(edge::reload::watch_secret_file(app.state()));
    app.run_until_stopped(shutdown::signal_received()).await;
    hangups.abort();
    secret_file.abort();
    0
}
