//! What the reconciler adds to the shared admin listener (`common::admin`, which answers
//! `/metrics`, `/live` and `/ready`): for support, `POST /reconcile/run` and
//! `POST /reconcile/sessions/{cs_id}`, which need `Authorization: Bearer $ADMIN_TOKEN` (compared in
//! constant time; disabled when the token is unset).

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
use crate::runs::{RunStatus, Trigger};
use crate::slot::PassSlot;

/// What the reconciler adds to the shared admin listener.
pub struct AdminRoutes {
    pub reconciler: Arc<Reconciler>,
    /// Held while a pass runs (scheduled or requested): a second one is not started.
    pub slot: PassSlot,
    pub stop: watch::Receiver<bool>,
}

/// The reconciler's own routes of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Run,
    Session(String),
    MethodNotAllowed(&'static str),
    NotFound,
}

impl Route {
    pub fn of(method: &Method, path: &str) -> Self {
        let post = *method == Method::POST;
        match path {
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

impl Routes for AdminRoutes {
    fn before_scrape(&self, ready: bool) {
        self.reconciler
            .metrics
            .ready
            .set_value(f64::from(u8::from(ready)));
    }

    async fn handle(&self, req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        let route = Route::of(req.method(), req.uri().path());
        match route {
            Route::MethodNotAllowed(allow) => admin::method_not_allowed(allow, rid),
            Route::NotFound => admin::not_found(rid),
            Route::Run | Route::Session(_) => {
                if let Some(refused) = self.authorize(&req, rid) {
                    return refused;
                }
                match route {
                    Route::Session(id) => self.session(&id, rid).await,
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
        if !is_stripe_id(id) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_session_id",
                "not a Checkout Session id",
                rid,
            );
        }
        match self.reconciler.reconcile_session(id, Trigger::Manual).await {
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
    }
}
