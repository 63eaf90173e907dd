//! Readiness: why a process is not ready, and the database half of `/ready`. One background
//! probe a second checks that the database answers, that its schema is current and that it accepts
//! writes, and `/ready` answers from its last result, so that a flood of probes never becomes a
//! flood of queries. The binary adds its own reasons (see [`super::Routes::not_ready`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::db;
use crate::http::{Body, json as json_response};
use crate::pgurl::TlsParams;

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

/// What the last database probe found wrong: the reason, and the error that says why (a TLS
/// handshake refused, a connection refused; never a password: connection errors do not carry it).
#[derive(Debug, Clone)]
struct Failure {
    reason: NotReady,
    cause: Option<String>,
}

impl Failure {
    fn new(reason: NotReady, cause: impl Into<Option<String>>) -> Self {
        Self {
            reason,
            cause: cause.into(),
        }
    }
}

/// What `/ready` is answered from: the draining flag and the last result of the database probe.
#[derive(Debug)]
pub struct Readiness {
    database: Mutex<Result<i32, Failure>>,
    draining: AtomicBool,
    probes: AtomicU64,
    /// The TLS half of `DATABASE_URL`, to name why a connection failed.
    tls: TlsParams,
}

impl Readiness {
    /// Not ready until the first probe; `tls` names the causes of failed connections.
    pub fn new(tls: &TlsParams) -> Self {
        Self {
            database: Mutex::new(Err(Failure::new(NotReady::Starting, None))),
            draining: AtomicBool::new(false),
            probes: AtomicU64::new(0),
            tls: tls.clone(),
        }
    }

    /// The database's state as last probed: the schema version, or why it is not ready.
    pub fn database(&self) -> Result<i32, NotReady> {
        self.lock().as_ref().copied().map_err(|f| f.reason)
    }

    /// The error behind the last failed database probe, if it had one.
    pub fn database_cause(&self) -> Option<String> {
        self.lock().as_ref().err().and_then(|f| f.cause.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Result<i32, Failure>> {
        self.database.lock().unwrap_or_else(PoisonError::into_inner)
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
        let result = database_ready(pool, &self.tls).await;
        *self.lock() = result;
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
async fn database_ready(pool: &Pool, tls: &TlsParams) -> Result<i32, Failure> {
    let check = async {
        let client = pool.get().await.map_err(|e| {
            let cause = match &e {
                PoolError::Backend(e) => db::connect_cause(e, tls),
                other => crate::error::chain(other),
            };
            tracing::warn!(error = %cause, "not ready: no database connection");
            Failure::new(NotReady::Database, cause)
        })?;
        let version = db::check_schema(&client).await.map_err(|e| {
            tracing::warn!(error = %e, "not ready: schema");
            Failure::new(NotReady::Database, e.to_string())
        })?;
        if let Err(e) = client.execute(WRITE_PROBE, &[]).await {
            let read_only = crate::error::sqlstate(&e) == Some("25006");
            let cause = crate::error::postgres(&e);
            tracing::warn!(error = %cause, "not ready: the database refuses writes");
            // A read-only session stays read-only: close it, so that the next probe sees a new one.
            drop(Object::take(client));
            let reason = if read_only {
                NotReady::ReadOnly
            } else {
                NotReady::Database
            };
            return Err(Failure::new(reason, cause));
        }
        Ok(version)
    };
    tokio::time::timeout(READY_TIMEOUT, check)
        .await
        .unwrap_or(Err(Failure::new(NotReady::DatabaseTimeout, None)))
}

/// `GET /ready`'s answer: 200 with the schema version, or 503 with the reason (and `cause`, the
/// error behind it, when there is one).
pub fn answer(state: Result<i32, NotReady>, cause: Option<String>) -> Response<Body> {
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
    if let (Some(cause), Some(obj)) = (cause, body.as_object_mut())
        && status != StatusCode::OK
    {
        obj.insert("cause".into(), json!(cause));
    }
    body["version"] = json!(crate::build::VERSION);
    body["revision"] = json!(crate::build::REVISION);
    json_response(status, &body)
}
