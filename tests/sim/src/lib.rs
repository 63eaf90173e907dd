//! The Stripe API simulator: the Stripe the local stack (`scripts/dev.sh`), the benchmarks and the
//! tests talk to, since the real one cannot be reached from here. It is a real HTTP server that
//! speaks Stripe's wire format as the fixtures show it.
//!
//! # Layout
//! - [`server`]: the simulator (events, Checkout Sessions, refunds, disputes, auth, faults, a
//!   hostile Stripe); `lists`: the lists of the objects themselves.
//! - [`objects`]: Stripe payloads built from the real fixtures (sessions, events, charges).
//! - [`scenario`]: checkouts played as Stripe would: events created, webhooks delivered signed,
//!   some dropped, duplicated or reordered.
//! - [`app`]: the app's side of a checkout (the order it creates first).
//! - [`client`]: a minimal HTTP/1.1 client (webhook deliveries; the tests' requests).
//! - [`shop`]: the example shop's order notification endpoint (verifies, deduplicates, fulfils).

pub mod app;
pub mod client;
mod events;
mod lists;
pub mod objects;
pub mod scenario;
pub mod server;
pub mod shop;
mod store;
mod wire;
