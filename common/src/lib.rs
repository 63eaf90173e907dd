//! The ground floor shared by `edge` and `reconciler`; neither depends on the other.
//!
//! # Layout
//! - [`admin`]: the admin listener of both binaries: `/metrics`, `/live`, `/ready` (the database
//!   probe and the binary's own reasons) plus the binary's routes, and its lifecycle.
//! - [`backoff`]: exponential backoff with jitter, for every retry.
//! - [`build`]: what this build is (version, git revision, date).
//! - [`config`]: every environment variable, parsed once into types.
//! - [`error`]: error text that keeps its cause (the Postgres server's message above all).
//! - [`db`]: the connection pool (TLS as `sslmode` says), embedded migrations and the schema check.
//! - [`pgurl`]: `DATABASE_URL`'s TLS parameters, split from what tokio-postgres reads.
//! - [`http`]: the accept loop, response bodies and request ids shared by every listener.
//! - [`ledger`]: the one function that applies a Stripe event (ledger row + order state).
//! - [`stripe`]: the event envelope and `Stripe-Signature` signing/verification.
//! - [`telemetry`]: JSON logs and the request id.
//! - [`metrics`]: the recorder, enum labels and the macro each binary declares its metrics with.
//! - [`shutdown`]: the SIGTERM/SIGINT future.

pub mod admin;
pub mod backoff;
pub mod build;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod pgurl;
pub mod shutdown;
pub mod stripe;
pub mod telemetry;

/// Exit status for a bad or missing setting (sysexits `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;
/// Exit status when the database cannot be reached at start-up (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// Exit status when the schema is older than the build (`EX_CONFIG`): run `edge migrate`.
pub const EXIT_SCHEMA: i32 = 78;
