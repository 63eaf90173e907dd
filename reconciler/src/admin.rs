//! The reconciler's admin listener: `GET /metrics`, `/live`, `/ready`, and for support
//! `POST /reconcile/run` and `POST /reconcile/sessions/{cs_id}`, which need
//! `Authorization: Bearer $ADMIN_TOKEN` (compared in constant time; disabled when the token is unset).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::admin::{self as health, NotReady};
use common::http::{Body, json, request_id, with_request_id};
use common::stripe::event::is_stripe_id;
use common::telemetry::RequestId;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json as value;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tracing::Instrument;

use crate::Reconciler;
use crate::runs::{RunStatus, Trigger};

/// What the admin handlers share.
pub struct AdminState {
    pub reconciler: Arc<Reconciler>,
    /// Set while a pass runs (scheduled or requested): a second one is not started.
    pub busy: Arc<AtomicBool>,
    pub stop: watch::Receiver<bool>,
    pub draining: AtomicBool,
    /// The database probe's last result.
    pub readiness: Arc<health::Readiness>,
}

/// Routes of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Live,
    Ready,
    Run,
    Session(String),
    MethodNotAllowed(&'static str),
    NotFound,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Self {
        let read = matches!(*method, Method::GET | Method::HEAD);
        let post = *method == Method::POST;
        match path {
            "/metrics" if read => Self::Metrics,
            "/live" if read => Self::Live,
            "/ready" if read => Self::Ready,
            "/metrics" | "/live" | "/ready" => Self::MethodNotAllowed("GET"),
            "/reconcile/run" if post => Self::Run,
            "/reconcile/run" => Self::MethodNotAllowed("POST"),
            _ => match path.strip_prefix("/reconcile/sessions/") {
                Some(id) if post => Self::Session(id.to_owned()),
                Some(_) => Self::MethodNotAllowed("POST"),
                None => Self::NotFound,
            },
        }
    }
}

/// Entry point of the admin listener.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<AdminState>,
) -> Result<Response<Body>, Infallible> {
    let rid = request_id(&req);
    let span = tracing::info_span!("request", requestId = %rid);
    let resp = answer(req, &state, &rid).instrument(span).await;
    Ok(with_request_id(resp, &rid))
}

async fn answer(req: Request<Incoming>, state: &AdminState, rid: &RequestId) -> Response<Body> {
    let route = Route::of(req.method(), req.uri().path());
    match route {
        Route::Metrics => {
            let ready = readiness(state).is_ok();
            state
                .reconciler
                .metrics
                .ready
                .set_value(f64::from(u8::from(ready)));
            health::metrics()
        }
        Route::Live => health::live(),
        Route::Ready => ready(state),
        Route::MethodNotAllowed(allow) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
                rid,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        Route::NotFound => error(StatusCode::NOT_FOUND, "not_found", "no such route", rid),
        Route::Run | Route::Session(_) => {
            if let Some(refused) = authorize(&req, state, rid) {
                return refused;
            }
            match route {
                Route::Run => run(state, rid).await,
                Route::Session(id) => session(state, &id, rid).await,
                _ => error(StatusCode::NOT_FOUND, "not_found", "no such route", rid),
            }
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str, rid: &RequestId) -> Response<Body> {
    json(
        status,
        &value!({ "error": { "code": code, "message": message }, "requestId": rid.as_str() }),
    )
}

/// `None` when the caller presented the admin token.
fn authorize(
    req: &Request<Incoming>,
    state: &AdminState,
    rid: &RequestId,
) -> Option<Response<Body>> {
    let Some(token) = &state.reconciler.config.admin_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin POSTs are disabled: ADMIN_TOKEN is not set",
            rid,
        ));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        None
    } else {
        tracing::warn!("admin request refused: missing or wrong bearer token");
        Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
            rid,
        ))
    }
}

/// Ready = not draining, and the database (as last probed) answers with a current schema.
fn readiness(state: &AdminState) -> Result<i32, NotReady> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(NotReady::Draining);
    }
    state.readiness.database()
}

fn ready(state: &AdminState) -> Response<Body> {
    health::ready(readiness(state))
}

async fn run(state: &AdminState, rid: &RequestId) -> Response<Body> {
    if state.busy.swap(true, Ordering::SeqCst) {
        return error(
            StatusCode::CONFLICT,
            "pass_running",
            "a pass is already running in this process",
            rid,
        );
    }
    let summary = state.reconciler.pass(Trigger::Manual, &state.stop).await;
    state.busy.store(false, Ordering::SeqCst);
    let status = if summary.status == RunStatus::Failed {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    json(status, &summary)
}

async fn session(state: &AdminState, id: &str, rid: &RequestId) -> Response<Body> {
    if !is_stripe_id(id) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
            "not a Checkout Session id",
            rid,
        );
    }
    match state
        .reconciler
        .reconcile_session(id, Trigger::Manual)
        .await
    {
        Ok(v) => {
            let status = if v.found_on_stripe {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            json(status, &v)
        }
        Err(e) => {
            tracing::error!(error = %e, "session reconcile failed");
            let answer = e.http();
            error(answer.status, answer.code, &answer.message, rid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(Route::of(&Method::POST, "/reconcile/run"), Route::Run);
        assert_eq!(
            Route::of(&Method::GET, "/reconcile/run"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(
            Route::of(&Method::POST, "/reconcile/sessions/cs_1"),
            Route::Session("cs_1".into())
        );
        assert_eq!(
            Route::of(&Method::POST, "/live"),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(Route::of(&Method::GET, "/"), Route::NotFound);
    }
}
