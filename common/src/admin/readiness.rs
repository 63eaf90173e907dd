//! Readiness: why a process is not ready, and the database half of `/ready`. One background
//! probe a second checks that the database answers, that its schema is current and that it accepts
//! writes, and `/ready` answers from its last result, so that a flood of probes never becomes a
//! flood of queries. The binary adds its own reasons (see [`super::Routes::not_ready`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::db;
use crate::http::{Body, json as json_response};

/// `/ready` reports the database as down when it has not answered within this time.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the database probe runs.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A write that changes nothing, refused by a read-only session or a standby: whether the
/// database accepts writes (it takes the table's row-exclusive lock, as the ledger's writes do).
const WRITE_PROBE: &str = "UPDATE orders SET status = status WHERE false";

/// Why a process is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Draining,
    /// Not checked yet (start-up).
    Starting,
    Database,
    DatabaseTimeout,
    /// The database refuses writes (read-only, a standby).
    ReadOnly,
    /// A part of the binary itself (the edge's ledger writers, say), named by the binary.
    Component(&'static str),
}

impl NotReady {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Starting => "starting",
            Self::Database => "database",
            Self::DatabaseTimeout => "database_timeout",
            Self::ReadOnly => "read_only",
            Self::Component(reason) => reason,
        }
    }
}

/// What `/ready` is answered from: the draining flag and the last result of the database probe.
#[derive(Debug)]
pub struct Readiness {
    database: Mutex<Result<i32, NotReady>>,
    draining: AtomicBool,
    probes: AtomicU64,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            database: Mutex::new(Err(NotReady::Starting)),
            draining: AtomicBool::new(false),
            probes: AtomicU64::new(0),
        }
    }
}

impl Readiness {
    /// The database's state as last probed: the schema version, or why it is not ready.
    pub fn database(&self) -> Result<i32, NotReady> {
        *self.database.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on `/ready` answers 503 `draining`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Database probes run so far.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Probes now and keeps the result.
    pub async fn probe(&self, pool: &Pool) {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let result = database_ready(pool).await;
        *self.database.lock().unwrap_or_else(PoisonError::into_inner) = result;
    }

    /// Probes every [`PROBE_EVERY`] for ever (spawn it; abort it on shutdown).
    pub async fn probe_forever(&self, pool: Pool) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.probe(&pool).await;
        }
    }
}

/// The database half of readiness: within [`READY_TIMEOUT`], it answers, its schema is current
/// and it accepts writes. Returns the schema version.
async fn database_ready(pool: &Pool) -> Result<i32, NotReady> {
    let check = async {
        let client = pool.get().await.map_err(|e| {
            tracing::warn!(error = %crate::error::chain(&e), "not ready: no database connection");
            NotReady::Database
        })?;
        let version = db::check_schema(&client).await.map_err(|e| {
            tracing::warn!(error = %e, "not ready: schema");
            NotReady::Database
        })?;
        if let Err(e) = client.execute(WRITE_PROBE, &[]).await {
            let read_only = crate::error::sqlstate(&e) == Some("25006");
            tracing::warn!(error = %crate::error::postgres(&e), "not ready: the database refuses writes");
            // A read-only session stays read-only: close it, so that the next probe sees a new one.
            drop(Object::take(client));
            return Err(if read_only {
                NotReady::ReadOnly
            } else {
                NotReady::Database
            });
        }
        Ok(version)
    };
    tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .unwrap_or(Err(NotReady::DatabaseTimeout))
}

/// `GET /ready`'s answer: 200 with the schema version, or 503 with the reason.
pub fn answer(state: Result<i32, NotReady>) -> Response<Body> {
    let (status, mut body): (StatusCode, Value) = match state {
        Ok(version) => (
            StatusCode::OK,
            json!({ "status": "ready", "schemaVersion": version }),
        ),
        Err(NotReady::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "draining" }),
        ),
        Err(other) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "reason": other.reason() }),
        ),
    };
    body["version"] = json!(crate::build::VERSION);
    body["revision"] = json!(crate::build::REVISION);
    json_response(status, &body)
}
