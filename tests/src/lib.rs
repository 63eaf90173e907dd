//! Test harness shared by the integration suites and the benchmark programs.
//!
//! # Layout
//! - [`pg`]: the Postgres cluster (throwaway when `DATABASE_URL` is unset), the migrated template
//!   and a fresh database per test.
//! - [`edge`]: a real edge in-process on port 0.
//! - [`fault_proxy`]: a TCP proxy that can cut the database link.
//! - [`http`]: a small HTTP/1.1 client.
//! - [`stripe_sim`]: a Stripe API simulator (events, sessions, auth, faults).
//! - [`driver`]: checkouts and webhook deliveries as Stripe makes them, with drops and duplicates.
//! - [`reconciler`]: a reconciler wired to a test database and the simulator.
//! - [`ledger`]: arranging and reading orders and ledger rows.
//! - [`process`]: the project's binaries run as processes (exit status, output, peak RSS).
//! - [`oracle`]: the one-event ledger write, the differential oracle of the batched one.
//! - [`logs`]: the process's JSON logs, captured for assertions.
//! - [`stripe`]: Stripe payloads built from the real fixtures.
//! - [`upstream`]: a fake app behind the proxy that records what it receives.

pub mod driver;
pub mod edge;
pub mod fault_proxy;
pub mod http;
pub mod ledger;
pub mod logs;
pub mod oracle;
pub mod pg;
pub mod process;
pub mod reconciler;
pub mod stripe;
pub mod stripe_sim;
pub mod upstream;
