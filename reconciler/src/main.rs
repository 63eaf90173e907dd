//! `reconciler` binary: parse the command and config, check the schema, then run the command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::telemetry;
use reconciler::Reconciler;
use reconciler::pass::Trigger;
use reconciler::startup::{self, CommandKind};
use tokio::sync::watch;

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
    let command = cli.command.unwrap_or(Command::Run);
    let kind = match &command {
        Command::Run => CommandKind::Run,
        Command::Once => CommandKind::Once,
        Command::Session { .. } => CommandKind::Session,
        Command::Inspect { .. } => CommandKind::Inspect,
    };
    let config = match startup::config(kind) {
        Ok(c) => c,
        Err(e) => {
            eprint!("reconciler: {e}");
            return code(e.exit_code());
        }
    };
    telemetry::init(config.log_format);
    if matches!(command, Command::Run | Command::Inspect { .. }) {
        if let Err(e) = startup::check_database(&config).await {
            eprintln!("reconciler: {e}");
            return code(e.exit_code());
        }
        eprintln!(
            "reconciler: this command is not available in this version (configuration and schema are valid)"
        );
        return code(common::EXIT_UNAVAILABLE);
    }
    let reconciler = match Reconciler::build(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reconciler: {e}");
            return code(e.exit_code());
        }
    };
    match command {
        Command::Once => {
            let (_stop, stopped) = watch::channel(false);
            let summary = reconciler.pass(Trigger::Cli, &stopped).await;
            print_json(&summary);
            code(if summary.status == "failed" { 1 } else { 0 })
        }
        Command::Session { session_id } => match reconciler
            .reconcile_session(&session_id, Trigger::Cli)
            .await
        {
            Ok(verdict) => {
                print_json(&verdict);
                code(if verdict.found_on_stripe { 0 } else { 1 })
            }
            Err(e) => {
                print_json(&serde_json::json!({ "sessionId": session_id, "error": e.to_string() }));
                code(1)
            }
        },
        Command::Run | Command::Inspect { .. } => code(common::EXIT_UNAVAILABLE),
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("reconciler: cannot print the result: {e}"),
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
