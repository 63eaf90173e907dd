//! Prints the ledger's SQL statements as JSON, so that benchmark scripts (pgbench) run exactly
//! the statements the edge runs.

fn main() {
    let statements = serde_json::json!({
        "lock_and_insert": common::ledger::LOCK_AND_INSERT,
        "update_order": common::ledger::UPDATE_ORDER,
        "lock_and_insert_batch": common::ledger::LOCK_AND_INSERT_BATCH,
        "update_orders": common::ledger::UPDATE_ORDERS,
    });
    println!("{statements:#}");
}
