//! What each command of the `reconciler` binary does once its configuration is parsed, and the
//! exit status it ends with. One-shot commands print their result on stdout.

use common::shutdown;
use tokio::sync::watch;

use crate::Reconciler;
use crate::error::Error;
use crate::inspect::{self, Target};
use crate::notify::store::Redeliver;
use crate::runs::{RunStatus, Trigger};
use crate::schedule::Daemon;
use crate::stripe_api::RetryPolicy;

/// `inspect`'s exit status when it showed what the database knows but Stripe could not be asked.
pub const EXIT_STRIPE_UNREACHABLE: i32 = 3;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The daemon.
    Run,
    /// One pass now.
    Once,
    /// Reconcile one Checkout Session.
    Session(String),
    /// The support timeline, as text or JSON.
    Inspect { target: Target, json: bool },
    /// Queue order notifications again.
    Redeliver(Redeliver),
    /// Sweep the objects created in a window.
    Sweep {
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
}

/// Runs `command` on a built reconciler; returns the exit status.
pub async fn execute(mut reconciler: Reconciler, command: Command) -> i32 {
    match command {
        Command::Once => {
            let (_stop, stopped) = watch::channel(false);
            let summary = reconciler.pass(Trigger::Cli, &stopped).await;
            print_json(&summary);
            i32::from(summary.status == RunStatus::Failed)
        }
        Command::Sweep { from, to } => {
            let (_stop, stopped) = watch::channel(false);
            let summary = reconciler.sweep(Trigger::Cli, from, to, &stopped).await;
            print_json(&summary);
            i32::from(summary.status != RunStatus::Ok)
        }
        Command::Session(session_id) => {
            match reconciler
                .reconcile_session(&session_id, Trigger::Cli)
                .await
            {
                Ok(verdict) => {
                    print_json(&verdict);
                    i32::from(!verdict.found_on_stripe)
                }
                Err(e) => {
                    print_json(
                        &serde_json::json!({ "sessionId": session_id, "error": e.to_string() }),
                    );
                    1
                }
            }
        }
        Command::Redeliver(which) => match reconciler.redeliver(&which).await {
            Ok(queued) => {
                print_json(&serde_json::json!({ "queued": queued }));
                i32::from(queued == 0 && which != Redeliver::Dead)
            }
            Err(e) => fail(&e),
        },
        Command::Run => match daemon(reconciler).await {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Inspect { target, json } => {
            // Support is waiting: one quick retry, not a minute of backoff.
            reconciler.stripe = reconciler.stripe.with_retry(RetryPolicy::interactive());
            let stripe = reconciler.stripe.has_key().then_some(&reconciler.stripe);
            // What the database knows is shown first, before Stripe is asked (it may not answer).
            let mut timeline = match inspect::local(&reconciler.pool, &target).await {
                Ok(t) => t,
                Err(e) => return fail(&e),
            };
            if !json {
                print!("{}", inspect::render_local(&timeline));
            }
            if let Err(e) =
                inspect::ask_stripe(&mut timeline, &reconciler.pool, stripe, &target).await
            {
                return fail(&e);
            }
            if json {
                print_json(&timeline);
            } else {
                print!("{}", inspect::render_stripe(&timeline));
            }
            match timeline.stripe_unreachable {
                Some(_) => EXIT_STRIPE_UNREACHABLE,
                None => 0,
            }
        }
    }
}

async fn daemon(reconciler: Reconciler) -> Result<(), Error> {
    Daemon::bind(reconciler)
        .await?
        .run_until_stopped(shutdown::signal_received())
        .await
}

/// Reports a failure on stderr; returns its exit status.
pub fn fail(e: &Error) -> i32 {
    eprintln!("reconciler: {e}");
    e.exit_code()
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("reconciler: cannot print the result: {e}"),
    }
}
