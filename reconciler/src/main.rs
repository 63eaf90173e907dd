//! `reconciler` binary: parse the command and config, check the schema, then run the command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::telemetry;
use reconciler::startup::{self, CommandKind};

#[derive(Parser)]
#[command(
    name = "reconciler",
    version,
    about = "Finds Stripe events the ledger lacks and backfills them"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Daemon: run a pass on RECONCILE_SCHEDULE and serve the admin listener (default).
    Run,
    /// Run one pass now, print a JSON summary, exit 0 (ok) or non-zero (failed).
    Once,
    /// Reconcile one Checkout Session by id and print a JSON verdict.
    Session {
        /// The Checkout Session id (cs_…).
        session_id: String,
    },
    /// Support timeline for an event, a session, an order or a request id.
    Inspect {
        #[arg(long, group = "target")]
        event: Option<String>,
        #[arg(long, group = "target")]
        session: Option<String>,
        #[arg(long, group = "target")]
        order: Option<String>,
        #[arg(long = "request-id", group = "target")]
        request_id: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (kind, name) = match cli.command.unwrap_or(Command::Run) {
        Command::Run => (CommandKind::Run, "run"),
        Command::Once => (CommandKind::Once, "once"),
        Command::Session { .. } => (CommandKind::Session, "session"),
        Command::Inspect { .. } => (CommandKind::Inspect, "inspect"),
    };
    let config = match startup::config(kind) {
        Ok(c) => c,
        Err(e) => {
            eprint!("reconciler: {e}");
            return code(e.exit_code());
        }
    };
    telemetry::init(config.log_format);
    if let Err(e) = startup::check_database(&config).await {
        eprintln!("reconciler: {e}");
        return code(e.exit_code());
    }
    eprintln!(
        "reconciler: `{name}` is not available in this version (configuration and schema are valid)"
    );
    code(common::EXIT_UNAVAILABLE)
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
