//! Rebuilds `common` when a migration file is added or changed (refinery embeds them at compile time).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
