//! `reconciler` binary: parse the command line and the configuration, build, run the command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::telemetry;
use reconciler::Reconciler;
use reconciler::commands::{self, Command};
use reconciler::inspect::Target;
use reconciler::notify::payload::parse_public_id;
use reconciler::notify::store::Redeliver;
use reconciler::startup::{self, CommandKind};
use reconciler::sweep;

#[derive(Parser)]
#[command(
    name = "reconciler",
    version = common::build::LONG_VERSION,
    about = "Finds Stripe events the ledger lacks and backfills them"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Args>,
}

#[derive(Subcommand)]
enum Args {
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
        #[arg(long, group = "target", required = true)]
        event: Option<String>,
        #[arg(long, group = "target")]
        session: Option<String>,
        #[arg(long, group = "target")]
        order: Option<uuid::Uuid>,
        #[arg(long = "request-id", group = "target")]
        request_id: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sweep the Checkout Sessions, refunds and disputes created in a window (no 30-day limit) and
    /// apply what the orders lack; print a JSON summary. Resumes an unfinished sweep.
    Sweep {
        /// Start of the window: 2026-10-01T00:00:00Z, 2026-10-01, or a duration back (35d).
        #[arg(long)]
        since: String,
        /// End of the window (default: now), in the same forms.
        #[arg(long)]
        until: Option<String>,
    },
    /// Queue order notifications for delivery again (the app dedups them by id).
    Redeliver {
        /// One notification, by id (otr_…).
        #[arg(long, group = "which", required = true)]
        transition: Option<String>,
        /// Every notification of one order.
        #[arg(long, group = "which")]
        order: Option<uuid::Uuid>,
        /// Every dead notification.
        #[arg(long, group = "which")]
        dead: bool,
    },
}

impl Args {
    fn command(self) -> Option<(CommandKind, Command)> {
        Some(match self {
            Self::Run => (CommandKind::Run, Command::Run),
            Self::Once => (CommandKind::Once, Command::Once),
            Self::Session { session_id } => (CommandKind::Session, Command::Session(session_id)),
            Self::Inspect {
                event,
                session,
                order,
                request_id,
                json,
            } => {
                let target = event
                    .map(Target::Event)
                    .or(session.map(Target::Session))
                    .or(order.map(Target::Order))
                    .or(request_id.map(Target::RequestId))?;
                (CommandKind::Inspect, Command::Inspect { target, json })
            }
            Self::Sweep { since, until } => {
                let now = chrono::Utc::now();
                let from = match sweep::parse_instant(&since, now) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("reconciler: --since {e}");
                        return None;
                    }
                };
                let to = match until.as_deref().map(|u| sweep::parse_instant(u, now)) {
                    None => now,
                    Some(Ok(t)) => t,
                    Some(Err(e)) => {
                        eprintln!("reconciler: --until {e}");
                        return None;
                    }
                };
                if from >= to {
                    eprintln!("reconciler: --since must be before --until");
                    return None;
                }
                (CommandKind::Sweep, Command::Sweep { from, to })
            }
            Self::Redeliver {
                transition,
                order,
                dead,
            } => {
                let which = match (transition, order, dead) {
                    (Some(id), _, _) => Redeliver::Transition(parse_public_id(&id)?),
                    (_, Some(order), _) => Redeliver::Order(order),
                    (_, _, true) => Redeliver::Dead,
                    _ => return None,
                };
                (CommandKind::Redeliver, Command::Redeliver(which))
            }
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse().command.unwrap_or(Args::Run);
    let Some((kind, command)) = args.command() else {
        eprintln!(
            "reconciler: inspect needs one of --event, --session, --order, --request-id; \
             redeliver one of --transition otr_…, --order, --dead; sweep --since before --until"
        );
        return code(common::EXIT_CONFIG);
    };
    let config = match startup::config(kind) {
        Ok(c) => c,
        Err(e) => {
            eprint!("reconciler: {e}");
            return code(e.exit_code());
        }
    };
    // The daemon logs to stdout; one-shot commands print their result there and log to stderr.
    match kind {
        CommandKind::Run => telemetry::init(config.log_format),
        _ => telemetry::init_with(config.log_format, std::io::stderr),
    }
    let status = match Reconciler::build(config).await {
        Ok(reconciler) => commands::execute(reconciler, command).await,
        Err(e) => commands::fail(&e),
    };
    code(status)
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}
