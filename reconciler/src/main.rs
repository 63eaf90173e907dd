//! `reconciler` binary: parse the command and config, check the schema, then run the command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::shutdown;
use common::telemetry;
use reconciler::Reconciler;
use reconciler::inspect::Target;
use reconciler::pass::Trigger;
use reconciler::schedule::Daemon;
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
    // One-shot commands print their result on stdout; their logs go to stderr.
    match command {
        Command::Run => telemetry::init(config.log_format),
        _ => telemetry::init_with(config.log_format, std::io::stderr),
    }
    if let Command::Inspect {
        event,
        session,
        order,
        request_id,
        json,
    } = &command
    {
        return inspect(config, event, session, order, request_id, *json).await;
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
        Command::Run => match Daemon::bind(reconciler).await {
            Ok(daemon) => match daemon.run_until_stopped(shutdown::signal_received()).await {
                Ok(()) => code(0),
                Err(e) => {
                    eprintln!("reconciler: {e}");
                    code(common::EXIT_CONFIG)
                }
            },
            Err(e) => {
                eprintln!("reconciler: {e}");
                code(1)
            }
        },
        Command::Inspect { .. } => code(0),
    }
}

async fn inspect(
    config: common::config::ReconcilerConfig,
    event: &Option<String>,
    session: &Option<String>,
    order: &Option<String>,
    request_id: &Option<String>,
    as_json: bool,
) -> ExitCode {
    let target = match (event, session, order, request_id) {
        (Some(e), _, _, _) => Target::Event(e.clone()),
        (_, Some(s), _, _) => Target::Session(s.clone()),
        (_, _, Some(o), _) => match uuid::Uuid::parse_str(o) {
            Ok(id) => Target::Order(id),
            Err(_) => {
                eprintln!("reconciler inspect: --order takes an order id (a UUID)");
                return code(common::EXIT_CONFIG);
            }
        },
        (_, _, _, Some(r)) => Target::RequestId(r.clone()),
        _ => {
            eprintln!("reconciler inspect: give one of --event, --session, --order, --request-id");
            return code(common::EXIT_CONFIG);
        }
    };
    if let Err(e) = startup::check_database(&config).await {
        eprintln!("reconciler: {e}");
        return code(e.exit_code());
    }
    let pool = match common::db::pool(&config.db) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reconciler: {e}");
            return code(1);
        }
    };
    let metrics = common::metrics::ReconcilerMetrics::register();
    let stripe = config
        .stripe_api_key
        .as_ref()
        .and_then(|_| reconciler::stripe_api::StripeClient::new(&config, metrics).ok());
    match reconciler::inspect::inspect(&pool, stripe.as_ref(), &target).await {
        Ok(timeline) => {
            if as_json {
                print_json(&timeline);
            } else {
                print!("{}", reconciler::inspect::render_text(&timeline));
            }
            code(0)
        }
        Err(e) => {
            eprintln!("reconciler inspect: {e}");
            code(1)
        }
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
