//! What `SIGHUP` re-reads without a restart: the webhook secrets (`STRIPE_WEBHOOK_SECRET` or the
//! file `STRIPE_WEBHOOK_SECRET_FILE` names: a rotation), logged without their values, and the
//! public listener's TLS certificate (`tls`); each counted. A reload that fails keeps what was in
//! force and says why. The secrets' file is also watched, so that a mounted secret updated in
//! place (Kubernetes updates a Secret's files in running pods) is picked up without a signal.

use std::sync::Arc;

use common::config::{ProcessEnv, Source};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::webhook_secrets_from;
use crate::metrics::{ReloadOutcome, Reloaded};
use crate::state::State;

/// Re-reads the webhook secrets from `source`; whether they were replaced.
pub fn webhook_secrets(state: &State, source: &(impl Source + ?Sized)) -> bool {
    match webhook_secrets_from(source) {
        Ok(secrets) => {
            let count = secrets.len();
            state.set_webhook_secrets(secrets);
            state
                .metrics
                .reloads
                .inc((Reloaded::WebhookSecrets, ReloadOutcome::Ok));
            tracing::info!(secrets = count, "webhook secrets reloaded");
            true
        }
        Err(e) => {
            state
                .metrics
                .reloads
                .inc((Reloaded::WebhookSecrets, ReloadOutcome::Failed));
            tracing::error!(
                problems = %e.to_string().trim_end(),
                "webhook secrets not reloaded; the ones in force stay"
            );
            false
        }
    }
}

/// Reloads the webhook secrets whenever the file `STRIPE_WEBHOOK_SECRET_FILE` names changes,
/// looking every `tls::WATCH_EVERY` (spawn it; it ends at once without such a file).
pub async fn watch_secret_file(state: Arc<State>) {
    let Some(path) = ProcessEnv.get(common::config::var::STRIPE_WEBHOOK_SECRET_FILE) else {
        return;
    };
    let modified = || {
        std::fs::metadata(path.trim())
            .and_then(|m| m.modified())
            .ok()
    };
    let mut seen = modified();
    let mut tick = tokio::time::interval(crate::tls::WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = modified();
        if now.is_some() && now != seen {
            tracing::info!("the webhook secrets' file changed: reloading");
            seen = now;
            webhook_secrets(&state, &ProcessEnv);
        }
    }
}

/// Reloads on every `SIGHUP` until the process ends (spawn it).
pub async fn on_hangup(state: Arc<State>) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads need a restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        webhook_secrets(&state, &ProcessEnv);
        if let Some(tls) = &state.tls {
            tls.reload();
        }
    }
}
