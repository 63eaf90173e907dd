//! The reconciler: finds Stripe events the ledger lacks and backfills them through the shared
//! ledger code. This version provides the command line, configuration and start-up checks.
//!
//! # Layout
//! - [`startup`]: configuration for each command and the schema check every command runs first.

pub mod startup;
