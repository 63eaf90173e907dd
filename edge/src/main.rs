//! `edge` binary: parse the command and config, then serve or migrate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::config::{self, ProcessEnv};
use common::{db, shutdown, telemetry};
use edge::config::EdgeConfig;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
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
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => migrate().await,
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
    app.run_until_stopped(shutdown::signal_received()).await;
    0
}

async fn migrate() -> i32 {
    let (db_config, log_format) = match config::db_from(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprint!("edge migrate: {e}");
            return common::EXIT_CONFIG;
        }
    };
    telemetry::init(log_format);
    match db::migrate(&db_config).await {
        Ok(applied) => {
            let versions: Vec<String> = applied.iter().map(|(v, n)| format!("V{v}__{n}")).collect();
            tracing::info!(
                applied = versions.len(),
                migrations = versions.join(","),
                schemaVersion = db::required_schema_version(),
                "migrations applied"
            );
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            eprintln!("edge migrate: {e}");
            match e {
                db::DbError::Connect { .. } => common::EXIT_UNAVAILABLE,
                _ => 1,
            }
        }
    }
}
