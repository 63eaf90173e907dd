//! The shutdown signal: resolves on the first SIGTERM or SIGINT.

use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).
pub async fn signal_received() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
