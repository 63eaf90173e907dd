//! What the reconciler adds to the shared admin listener (`common::admin`, which answers
//! `/metrics`, `/live` and `/ready`): for support and the app, `POST /reconcile/run`,
//! `POST /reconcile/sessions/{cs_id}` and `GET /sessions/{cs_id}` (the success page's, see
//! [`sessions`]), `POST /notifications/redeliver`, and the support pages under `/support`
//! (`crate::support`, with their own login). Each needs
//! `Authorization: Bearer $ADMIN_TOKEN` (compared in constant time; disabled when the token is
//! unset).

pub mod sessions;

use std::sync::Arc;

use common::admin::{self, Routes};
use common::http::{Body, error, json};
use common::stripe::is_stripe_id;
use common::telemetry::RequestId;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::Reconciler;
use crate::notify::payload::parse_public_id;
use crate::notify::store::Redeliver;
use crate::runs::{RunStatus, Trigger};
use crate::slot::PassSlot;
use sessions::Flights;

/// What the reconciler adds to the shared admin listener.
pub struct AdminRoutes {
    pub reconciler: Arc<Reconciler>,
    /// Held while a pass runs (scheduled or requested): a second one is not started.
    pub slot: PassSlot,
    pub stop: watch::Receiver<bool>,
    /// Session reconciles in flight (one per session, shared by concurrent callers).
    pub flights: Arc<Flights>,
    /// The support pages (`/support`).
    pub support: Arc<crate::support::Support>,
}

/// The reconciler's own routes of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Run,
    Session(String),
    SessionStatus(String),
    Redeliver,
    MethodNotAllowed(&'static str),
    NotFound,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Self {
        let (get, post) = (*method == Method::GET, *method == Method::POST);
        if let Some(id) = path.strip_prefix("/reconcile/sessions/") {
            return if post {
                Self::Session(id.to_owned())
            } else {
                Self::MethodNotAllowed("POST")
            };
        }
        if let Some(id) = path.strip_prefix("/sessions/") {
            return if get {
                Self::SessionStatus(id.to_owned())
            } else {
                Self::MethodNotAllowed("GET")
            };
        }
        match path {
            "/reconcile/run" if post => Self::Run,
            "/notifications/redeliver" if post => Self::Redeliver,
            "/reconcile/run" | "/notifications/redeliver" => Self::MethodNotAllowed("POST"),
            _ => Self::NotFound,
        }
    }
}

impl Routes for AdminRoutes {
    fn before_scrape(&self, ready: bool) {
        self.reconciler
            .metrics
            .ready
            .set_value(f64::from(u8::from(ready)));
    }

    async fn handle(&self, req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        if crate::support::Support::serves(req.uri().path()) {
            return self.support.handle(req, rid).await;
        }
        let route = Route::of(req.method(), req.uri().path());
        match route {
            Route::MethodNotAllowed(allow) => admin::method_not_allowed(allow, rid),
            Route::NotFound => admin::not_found(rid),
            _ => {
                if let Some(refused) = self.authorize(&req, rid) {
                    return refused;
                }
                match route {
                    Route::Session(id) => self.session(&id, rid).await,
                    Route::SessionStatus(id) => self.session_status(&id, rid).await,
                    Route::Redeliver => self.redeliver(req.uri().query(), rid).await,
                    _ => self.run(rid).await,
                }
            }
        }
    }
}

impl AdminRoutes {
    /// `None` when the caller presented the admin token.
    fn authorize(&self, req: &Request<Incoming>, rid: &RequestId) -> Option<Response<Body>> {
        let Some(token) = &self.reconciler.config.admin_token else {
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

    async fn run(&self, rid: &RequestId) -> Response<Body> {
        let Some(_taken) = self.slot.try_take() else {
            return error(
                StatusCode::CONFLICT,
                "pass_running",
                "a pass is already running in this process",
                rid,
            );
        };
        let summary = self.reconciler.pass(Trigger::Manual, &self.stop).await;
        let status = if summary.status == RunStatus::Failed {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::OK
        };
        json(status, &summary)
    }

    async fn session(&self, id: &str, rid: &RequestId) -> Response<Body> {
        if let Some(refused) = check_session_id(id, rid) {
            return refused;
        }
        let outcome = self.flights.confirm(&self.reconciler, id).await;
        match outcome.as_ref() {
            Ok(confirmed) => {
                let status = match confirmed.verdict.found_on_stripe {
                    true => StatusCode::OK,
                    false => StatusCode::NOT_FOUND,
                };
                json(status, confirmed)
            }
            Err(answer) => error(answer.status, answer.code, &answer.message, rid),
        }
    }

    async fn session_status(&self, id: &str, rid: &RequestId) -> Response<Body> {
        if let Some(refused) = check_session_id(id, rid) {
            return refused;
        }
        match sessions::status(&self.reconciler, id).await {
            Ok(Some(known)) => json(StatusCode::OK, &known),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                "no_order",
                "no order has this Checkout Session",
                rid,
            ),
            Err(e) => {
                let answer = e.http();
                error(answer.status, answer.code, &answer.message, rid)
            }
        }
    }

    /// `?transition=otr_…`, `?order=<uuid>` or `?dead=true`.
    async fn redeliver(&self, query: Option<&str>, rid: &RequestId) -> Response<Body> {
        let Some(which) = redeliver_query(query.unwrap_or("")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_redeliver",
                "give one of ?transition=otr_…, ?order=<order id>, ?dead=true",
                rid,
            );
        };
        match self.reconciler.redeliver(&which).await {
            Ok(queued) => json(StatusCode::OK, &serde_json::json!({ "queued": queued })),
            Err(e) => {
                let answer = e.http();
                error(answer.status, answer.code, &answer.message, rid)
            }
        }
    }
}

fn check_session_id(id: &str, rid: &RequestId) -> Option<Response<Body>> {
    (!is_stripe_id(id) || !id.starts_with("cs_")).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
            "not a Checkout Session id",
            rid,
        )
    })
}

/// Which notifications a redelivery query names: exactly one of its three forms.
fn redeliver_query(query: &str) -> Option<Redeliver> {
    let mut pairs = query.split('&').filter(|p| !p.is_empty());
    let (key, value) = pairs.next()?.split_once('=')?;
    if pairs.next().is_some() {
        return None;
    }
    match key {
        "transition" => parse_public_id(value).map(Redeliver::Transition),
        "order" => value.parse().ok().map(Redeliver::Order),
        "dead" if value == "true" => Some(Redeliver::Dead),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of(&Method::POST, "/reconcile/run"), Route::Run);
        assert_eq!(
            Route::of(&Method::GET, "/reconcile/run"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(
            Route::of(&Method::POST, "/reconcile/sessions/cs_1"),
            Route::Session("cs_1".into())
        );
        assert_eq!(Route::of(&Method::GET, "/"), Route::NotFound);
        assert_eq!(
            Route::of(&Method::GET, "/sessions/cs_1"),
            Route::SessionStatus("cs_1".into())
        );
        assert_eq!(
            Route::of(&Method::POST, "/sessions/cs_1"),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(
            Route::of(&Method::POST, "/notifications/redeliver"),
            Route::Redeliver
        );
    }

    #[test]
    fn redelivery_queries() {
        assert_eq!(
            redeliver_query("transition=otr_12"),
            Some(Redeliver::Transition(12))
        );
        assert_eq!(redeliver_query("dead=true"), Some(Redeliver::Dead));
        assert_eq!(
            redeliver_query("order=6c4f2b52-7a4e-4f2c-9d44-2c0b1f7c8a11"),
            Some(Redeliver::Order(
                "6c4f2b52-7a4e-4f2c-9d44-2c0b1f7c8a11"
                    .parse()
                    .expect("uuid")
            ))
        );
        for bad in [
            "",
            "dead=false",
            "transition=x",
            "order=1",
            "dead=true&order=1",
        ] {
            assert_eq!(redeliver_query(bad), None, "{bad}");
        }
    }
}
