//! `edge migrate`: apply the embedded migrations, or (`--status`) list what is applied and pending,
//! or (`--dry-run`) print the SQL that would run.

use common::config::{self, ProcessEnv};
use common::db::{self, DbError, MigrationState, MigrationStatus};
use common::telemetry;

/// What `edge migrate` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Status,
    DryRun,
}

/// Runs `edge migrate` in `mode`; the process exit status.
pub async fn run(mode: Mode) -> i32 {
    let (db_config, log_format) = match config::db_from(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprint!("edge migrate: {e}");
            return common::EXIT_CONFIG;
        }
    };
    let result = match mode {
        Mode::Apply => {
            telemetry::init(log_format);
            apply(&db_config).await
        }
        Mode::Status => db::migration_status(&db_config).await.map(|all| {
            print!("{}", status_text(&all));
        }),
        Mode::DryRun => db::migration_status(&db_config).await.map(|all| {
            print!("{}", dry_run_text(&all));
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if mode == Mode::Apply {
                tracing::error!(error = %e, "migration failed");
            }
            eprintln!("edge migrate: {e}");
            e.exit_code()
        }
    }
}

async fn apply(db_config: &config::DbConfig) -> Result<(), DbError> {
    // Migrations hold a session-level advisory lock: refuse a pooler that does not keep sessions.
    db::pooler::check(db_config).await?;
    let applied = db::migrate(db_config).await?;
    let versions: Vec<String> = applied.iter().map(|(v, n)| format!("V{v}__{n}")).collect();
    let need = db::required_schema_version();
    let have = match db::connect(db_config).await {
        Ok(client) => db::schema_version(&client).await.unwrap_or(need),
        Err(_) => need,
    };
    if have > need {
        let text = format!(
            "nothing to apply: the schema is at V{have}, newer than this build's V{need}, and still supports this build"
        );
        tracing::info!(schemaVersion = have, buildSchema = need, "{text}");
        println!("{text}");
        return Ok(());
    }
    tracing::info!(
        applied = versions.len(),
        migrations = versions.join(","),
        schemaVersion = need,
        "migrations applied"
    );
    Ok(())
}

/// `--status`: one line per migration, then what to do.
pub fn status_text(all: &[MigrationStatus]) -> String {
    let mut out = format!(
        "this build embeds migrations up to V{}\n",
        db::required_schema_version()
    );
    for m in all {
        let state = match &m.state {
            MigrationState::Applied { on } => format!("applied {on}"),
            MigrationState::Changed { on } => {
                format!("applied {on}, but its SQL differs from this build's")
            }
            MigrationState::Pending => "pending".to_owned(),
            MigrationState::Newer { on } => format!("applied {on} by a newer build"),
        };
        out.push_str(&format!("V{:<3} {:<40} {state}\n", m.version, m.name));
    }
    let pending = all
        .iter()
        .filter(|m| m.state == MigrationState::Pending)
        .count();
    if pending == 0 {
        out.push_str("nothing pending\n");
    } else {
        out.push_str(&format!(
            "{pending} pending: `edge migrate` applies them (`edge migrate --dry-run` shows their SQL)\n"
        ));
    }
    out
}

/// `--dry-run`: the SQL of every pending migration, in the order `edge migrate` would run it.
pub fn dry_run_text(all: &[MigrationStatus]) -> String {
    let pending: Vec<&MigrationStatus> = all
        .iter()
        .filter(|m| m.state == MigrationState::Pending)
        .collect();
    if pending.is_empty() {
        return "nothing pending: `edge migrate` would change nothing\n".to_owned();
    }
    let mut out = format!(
        "`edge migrate` would apply {} migration(s), each in its own transaction:\n",
        pending.len()
    );
    for m in pending {
        out.push_str(&format!("\n-- V{}__{}\n", m.version, m.name));
        out.push_str(db::migration_sql(m.version).unwrap_or("-- (no SQL embedded)\n"));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
