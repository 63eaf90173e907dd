//! What both admin listeners answer the same way: `GET /metrics` (the Prometheus text), `GET
//! /live`, and the database half of `GET /ready` (the database answers and its schema is
//! current), with the JSON shape of every readiness answer.

use std::time::Duration;

use deadpool_postgres::Pool;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::db;
use crate::http::{Body, full, json as json_response};

/// `/ready` reports the database as down when it has not answered within this time.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`.
pub fn metrics() -> Response<Body> {
    let mut resp = Response::new(full(crate::metrics::render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// `GET /live`: the process is up.
pub fn live() -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": "live" }))
}

/// Why a process is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Draining,
    Database,
    DatabaseTimeout,
    LedgerWriter,
}

impl NotReady {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Database => "database",
            Self::DatabaseTimeout => "database_timeout",
            Self::LedgerWriter => "ledger_writer",
        }
    }
}

/// The database half of readiness: it answers within [`READY_TIMEOUT`] and its schema is
/// current. Returns the schema version.
pub async fn database_ready(pool: &Pool) -> Result<i32, NotReady> {
    let check = async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        db::check_schema(&client).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(version)) => Ok(version),
        Ok(Err(reason)) => {
            tracing::warn!(%reason, "not ready");
            Err(NotReady::Database)
        }
        Err(_) => Err(NotReady::DatabaseTimeout),
    }
}

/// `GET /ready`'s answer: 200 with the schema version, or 503 with the reason.
pub fn ready(state: Result<i32, NotReady>) -> Response<Body> {
    let (status, body): (StatusCode, Value) = match state {
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
    json_response(status, &body)
}
