//! Orphan adoption benchmark: with 1k, 10k and 100k orphans that no order will ever claim (another
//! shop's events on the same Stripe account) plus one paying event whose order appears late, times
//! one adoption pass and counts the rows Postgres read for it (`pg_stat_xact_user_tables`). The cost
//! must not grow with the unclaimed orphans. Uses the test harness's throwaway Postgres (or
//! `DATABASE_URL`); prints a table and writes JSON to `--out`.

use std::time::Instant;

use clap::Parser;
use common::ledger::{self, Claimants};
use serde_json::json;
use sim::objects::{Session, session_event};
use tests::ledger::pending_order;
use tests::pg::TestDb;

#[derive(Parser, Debug)]
#[command(about = "Times orphan adoption against floods of unclaimed orphans")]
struct Args {
    /// Unclaimed orphans per run.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<i32>,
    /// Passes per size (the median is reported).
    #[arg(long, default_value_t = 5)]
    passes: usize,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut results = Vec::new();
    println!("| unclaimed orphans | adoption ms (median) | rows read by the pass | linked |");
    println!("|---:|---:|---:|---:|");
    for &n in &args.sizes {
        let db = TestDb::new().await;
        let pool = common::db::pool(&db.db_config()).expect("pool");
        let mut client = pool.get().await.expect("connection");
        unclaimed_orphans(&client, n).await;
        let mut times = Vec::new();
        let mut last = Pass::default();
        for pass in 0..args.passes {
            last = adoption(&mut client, &format!("cs_test_bench_{n}_{pass}")).await;
            times.push(last.ms);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let (rows_read, linked) = (last.rows_read, last.linked);
        println!("| {n} | {median:.2} | {rows_read} | {linked} |");
        results.push(json!({
            "unclaimed_orphans": n,
            "adoption_ms_median": median,
            "adoption_ms": times,
            "rows_read": rows_read,
            "linked": linked,
        }));
    }
    if let Some(path) = args.out {
        let text = serde_json::to_string_pretty(&json!({ "orphans": results })).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

/// `n` orphans that no order will ever claim, ten days old.
async fn unclaimed_orphans(client: &tokio_postgres::Client, n: i32) {
    client
        .execute(
            "INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id,
                 stripe_session_id, livemode, stripe_created_at, payload, source,
                 client_reference_id)
             SELECT 'evt_other_' || i, 'checkout.session.completed', 'cs_other_' || i,
                 'cs_other_' || i, false, now() - interval '10 days' + i * interval '1 s',
                 '{}'::json, 'webhook', gen_random_uuid()
             FROM generate_series(1, $1) AS i",
            &[&n],
        )
        .await
        .expect("unclaimed orphans");
    client
        .batch_execute("ANALYZE payment_events; ANALYZE orders")
        .await
        .expect("analyze");
}

/// What one adoption pass took.
#[derive(Default)]
struct Pass {
    ms: f64,
    rows_read: i64,
    linked: u64,
}

/// One paying event whose order appears after it, then one adoption pass over the orders changed
/// since.
async fn adoption(client: &mut deadpool_postgres::Object, session_id: &str) -> Pass {
    let session = Session::new(session_id);
    let event = session_event("checkout.session.completed", &session);
    client
        .execute(
            "INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id,
                 stripe_session_id, livemode, stripe_created_at, payload, source)
             VALUES ($1, 'checkout.session.completed', $2, $2, false, now(), $3::text::json,
                 'webhook')",
            &[
                &event["id"].as_str().unwrap_or_default(),
                &session.id,
                &event.to_string(),
            ],
        )
        .await
        .expect("the paying event");
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    pending_order(client, &session.id).await;
    let tx = client.transaction().await.expect("tx");
    let started = Instant::now();
    let claimants = Claimants {
        changed_since: since,
        orders: Vec::new(),
    };
    let adopted = ledger::adopt_orphans(&tx, &claimants, None, 10_000)
        .await
        .expect("adoption");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let rows_read = tx
        .query_one(
            "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)::bigint
             FROM pg_stat_xact_user_tables WHERE relname IN ('payment_events', 'orders')",
            &[],
        )
        .await
        .expect("stats")
        .get(0);
    tx.commit().await.expect("commit");
    Pass {
        ms,
        rows_read,
        linked: adopted.linked,
    }
}
