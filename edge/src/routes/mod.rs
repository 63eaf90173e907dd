//! Hand-written routing of the public listener: one `match` turns a request into a [`Route`], then
//! each route's handler answers. The admin listener's routes are `common::admin`'s; `admin` adds
//! the edge's readiness and scrape-time gauges to them.

pub mod admin;
pub mod webhook;

use std::convert::Infallible;
use std::sync::Arc;

use common::http::{Connected, request_id, with_request_id};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::error::Error;
use crate::state::State;

pub use common::http::{Body, BoxError, X_REQUEST_ID, full, json};

pub const WEBHOOK_PATH: &str = "/stripe/webhook";

/// Routes of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    StripeWebhook,
    WebhookMethodNotAllowed,
    Proxy,
    NotFound,
}

impl Route {
    pub fn of(method: &Method, path: &str, proxying: bool) -> Self {
        match (method, path) {
            (&Method::POST, WEBHOOK_PATH) => Self::StripeWebhook,
            (_, WEBHOOK_PATH) => Self::WebhookMethodNotAllowed,
            _ if proxying => Self::Proxy,
            _ => Self::NotFound,
        }
    }
}

/// Entry point of the public listener.
pub async fn public(
    req: Request<Incoming>,
    state: Arc<State>,
    connected: Connected,
) -> Result<Response<Body>, Infallible> {
    let rid = request_id(&req);
    let span = tracing::info_span!("request", requestId = %rid);
    let route = Route::of(req.method(), req.uri().path(), state.proxy.is_some());
    let resp = async {
        match route {
            Route::StripeWebhook => webhook::handle(req, &state, &rid).await,
            Route::WebhookMethodNotAllowed => {
                Error::MethodNotAllowed { allow: "POST" }.into_response(&rid)
            }
            Route::Proxy => match &state.proxy {
                Some(proxy) => proxy.forward(req, &connected, &rid).await,
                None => Error::NotFound.into_response(&rid),
            },
            Route::NotFound => Error::NotFound.into_response(&rid),
        }
    }
    .instrument(span)
    .await;
    Ok(with_request_id(resp, &rid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_routes() {
        assert_eq!(
            Route::of(&Method::POST, "/stripe/webhook", false),
            Route::StripeWebhook
        );
        assert_eq!(
            Route::of(&Method::POST, "/stripe/webhook", true),
            Route::StripeWebhook
        );
        assert_eq!(
            Route::of(&Method::GET, "/stripe/webhook", true),
            Route::WebhookMethodNotAllowed
        );
        assert_eq!(
            Route::of(&Method::POST, "/stripe/webhook/", false),
            Route::NotFound
        );
        assert_eq!(Route::of(&Method::GET, "/metrics", false), Route::NotFound);
        assert_eq!(Route::of(&Method::GET, "/metrics", true), Route::Proxy);
        assert_eq!(Route::of(&Method::GET, "/", true), Route::Proxy);
    }
}
