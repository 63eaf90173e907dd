//! Builds a reconciler against a test database and the Stripe simulator, with short retry pauses.

use std::collections::HashMap;
use std::time::Duration;

use reconciler::Reconciler;
use reconciler::config::{KeyRequirement, ReconcilerConfig};
use reconciler::stripe_api::RetryPolicy;

use crate::pg::TestDb;
use sim::server::StripeSim;

/// Retries as in production, but paused milliseconds instead of seconds.
pub const FAST_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    base: Duration::from_millis(5),
    cap: Duration::from_millis(40),
};

/// The configuration a test reconciler gets; `extra` overrides.
pub fn config(db_url: &str, sim: &StripeSim, extra: &[(&str, &str)]) -> ReconcilerConfig {
    let api_base = sim.url();
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db_url),
        ("DATABASE_POOL_SIZE", "4"),
        ("STRIPE_API_KEY", sim.api_key.as_str()),
        ("STRIPE_API_BASE", api_base.as_str()),
        ("STRIPE_MAX_RPS", "100"),
        ("RECONCILER_ADMIN_LISTEN", "127.0.0.1:0"),
        ("STRIPE_EXPECT_LIVEMODE", "any"),
        // Tests deliver and reconcile at once; the settle window is tested on its own.
        ("RECONCILE_SETTLE", "0s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    ReconcilerConfig::from_source(&env, KeyRequirement::Required)
        .expect("test reconciler configuration")
}

/// A built reconciler on `db`, talking to `sim`.
pub async fn build(db: &TestDb, sim: &StripeSim, extra: &[(&str, &str)]) -> Reconciler {
    build_with_url(&db.url(), sim, extra).await
}

pub async fn build_with_url(url: &str, sim: &StripeSim, extra: &[(&str, &str)]) -> Reconciler {
    crate::logs::capture();
    let r = Reconciler::build(config(url, sim, extra))
        .await
        .expect("reconciler starts");
    Reconciler {
        stripe: r.stripe.with_retry(FAST_RETRY),
        ..r
    }
}
