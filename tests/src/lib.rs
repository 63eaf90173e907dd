//! Test harness shared by the integration suites and the development tools (`tests/tools`). The
//! Stripe simulator, its payloads and its checkout scenario are the `sim` crate beside it.
//!
//! # Layout
//! - [`pg`]: the Postgres cluster (throwaway when `DATABASE_URL` is unset), the migrated template
//!   and a fresh database per test.
//! - [`edge`]: a real edge in-process on port 0.
//! - [`fault_proxy`]: a TCP proxy that can cut the database link.
//! - [`http`]: a small HTTP/1.1 client.
//! - [`reconciler`]: a reconciler wired to a test database and the simulator.
//! - [`ledger`]: arranging and reading orders and ledger rows.
//! - [`process`]: the project's binaries run as processes (exit status, output, peak RSS).
//! - [`oracle`]: the one-event ledger write, the differential oracle of the batched one.
//! - [`logs`]: the process's JSON logs, captured for assertions.
//! - [`tls`]: test certificate authorities and the certificates they sign.
//! - [`upstream`]: a fake app behind the proxy that records what it receives.

pub mod edge;
pub mod fault_proxy;
pub mod http;
pub mod ledger;
pub mod logs;
pub mod oracle;
pub mod pg;
pub mod process;
pub mod reconciler;
pub mod tls;
pub mod upstream;
