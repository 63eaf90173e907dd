//! Prints the one-event ledger statements (the differential oracle of `tests::oracle`) as JSON,
//! so that the pgbench reference of one transaction per event runs exactly them.

fn main() {
    let statements = serde_json::json!({
        "lock_and_insert": tests::oracle::LOCK_AND_INSERT,
        "update_order": tests::oracle::UPDATE_ORDER,
    });
    println!("{statements:#}");
}
