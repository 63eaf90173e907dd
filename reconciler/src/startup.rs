//! Start-up for every reconciler command: typed configuration (the Stripe key is required only by
//! the commands that call Stripe) and the refusal to run against an outdated schema.

use crate::config::{KeyRequirement, ReconcilerConfig};
use common::db;

use crate::error::Error;

/// The reconciler's commands, as far as start-up is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Run,
    Once,
    Session,
    Inspect,
    Redeliver,
    Sweep,
}

impl CommandKind {
    /// `inspect` works without a Stripe key (it then shows only the local view); `redeliver`
    /// never calls Stripe.
    pub fn key_requirement(self) -> KeyRequirement {
        match self {
            Self::Inspect | Self::Redeliver => KeyRequirement::Optional,
            _ => KeyRequirement::Required,
        }
    }
}

/// Parses the configuration a command needs.
pub fn config(kind: CommandKind) -> Result<ReconcilerConfig, Error> {
    Ok(ReconcilerConfig::from_env(kind.key_requirement())?)
}

/// Connects once and refuses a schema that does not fit this build, and a pooler that does not
/// keep sessions.
pub async fn check_database(config: &ReconcilerConfig) -> Result<i32, Error> {
    // First: through a pooler that does not keep sessions, anything else fails its own way.
    db::pooler::check(&config.db).await?;
    let client = db::connect(&config.db).await?;
    Ok(db::check_schema(&client).await?)
}
