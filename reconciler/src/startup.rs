//! Start-up for every reconciler command: typed configuration (the Stripe key is required only by
//! the commands that call Stripe) and the refusal to run against an outdated schema.

use common::config::{ConfigError, KeyRequirement, ReconcilerConfig};
use common::db::{self, DbError};

/// The reconciler's commands, as far as start-up is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Run,
    Once,
    Session,
    Inspect,
}

impl CommandKind {
    /// `inspect` works without a Stripe key (it then shows only the local view).
    pub fn key_requirement(self) -> KeyRequirement {
        match self {
            Self::Inspect => KeyRequirement::Optional,
            _ => KeyRequirement::Required,
        }
    }
}

/// Why a command could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Stripe(#[from] crate::stripe_api::StripeError),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) => common::EXIT_CONFIG,
            Self::Db(DbError::Connect(_)) => common::EXIT_UNAVAILABLE,
            Self::Db(DbError::SchemaOutdated { .. }) => common::EXIT_SCHEMA,
            Self::Db(_) | Self::Stripe(_) => 1,
        }
    }
}

/// Parses the configuration a command needs.
pub fn config(kind: CommandKind) -> Result<ReconcilerConfig, StartError> {
    Ok(ReconcilerConfig::from_env(kind.key_requirement())?)
}

/// Connects once and refuses a schema older than this build.
pub async fn check_database(config: &ReconcilerConfig) -> Result<i32, StartError> {
    let client = db::connect(&config.db).await?;
    Ok(db::check_schema(&client).await?)
}
