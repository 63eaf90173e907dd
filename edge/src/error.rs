//! The edge's one error enum and its one mapping to HTTP status, code and JSON body. Causes go to
//! the logs; clients get a stable code and a short message, never database internals.

use crate::metrics::WebhookOutcome;
use common::ledger::LedgerError;
use common::stripe::event::EventError;
use common::stripe::signature::SignatureError;
use common::telemetry::RequestId;
use http::{HeaderValue, Response, StatusCode, header};

use crate::routes::{Body, BoxError};

/// What a 503 tells the client to wait before retrying (Stripe retries on its own schedule).
const RETRY_AFTER_SECS: &str = "5";

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("invalid payload: {0}")]
    Payload(#[from] EventError),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyRead(#[source] hyper::Error),
    #[error("bad request target: {0}")]
    BadTarget(#[source] http::uri::InvalidUri),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("too many webhook bodies are arriving at once; retry later")]
    Overloaded,
    #[error("too many proxied requests are in flight; retry later")]
    ProxyOverloaded,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("no such route")]
    NotFound,
    #[error("storage failed: {0}")]
    Storage(#[from] LedgerError),
    #[error("the upstream app could not be reached: {}", common::error::chain(.0.as_ref()))]
    UpstreamConnect(#[source] BoxError),
    #[error("the upstream app did not answer within {0} s")]
    UpstreamTimeout(u64),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) | Self::Payload(_) | Self::BodyRead(_) | Self::BadTarget(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded | Self::ProxyOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Storage(
                LedgerError::PoolTimeout | LedgerError::OrderBusy | LedgerError::Stopped(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage(e) if e.is_timeout() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamConnect(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Signature(_) => "invalid_signature",
            Self::Payload(_) => "invalid_payload",
            Self::BodyRead(_) | Self::BadTarget(_) => "bad_request",
            Self::TooLarge { .. } => "payload_too_large",
            Self::BodyTimeout => "request_timeout",
            Self::Overloaded | Self::ProxyOverloaded => "overloaded",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::Storage(_) => "storage_unavailable",
            Self::UpstreamConnect(_) => "upstream_unavailable",
            Self::UpstreamTimeout(_) => "upstream_timeout",
        }
    }

    /// What the client is told. Storage details stay in the logs.
    fn public_message(&self) -> String {
        match self {
            Self::Storage(_) => {
                "the event could not be stored; it was not recorded, retry later".into()
            }
            Self::UpstreamConnect(_) => "the upstream app could not be reached".into(),
            other => other.to_string(),
        }
    }

    /// The `outcome` label this error counts under on the webhook route.
    pub fn webhook_outcome(&self) -> Option<WebhookOutcome> {
        match self {
            Self::Signature(_) => Some(WebhookOutcome::InvalidSignature),
            Self::Payload(_) | Self::BodyRead(_) => Some(WebhookOutcome::InvalidPayload),
            Self::BodyTimeout => Some(WebhookOutcome::Timeout),
            Self::Overloaded => Some(WebhookOutcome::Overloaded),
            Self::TooLarge { .. } => Some(WebhookOutcome::TooLarge),
            Self::Storage(_) => Some(WebhookOutcome::StorageError),
            _ => None,
        }
    }

    /// The JSON error response: `{"error":{"code","message"},"requestId"}`.
    pub fn into_response(self, request_id: &RequestId) -> Response<Body> {
        let mut resp = common::http::error(
            self.status(),
            self.code(),
            &self.public_message(),
            request_id,
        );
        if let Self::MethodNotAllowed { allow } = self {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (
                Error::Signature(SignatureError::NoMatch),
                400,
                "invalid_signature",
            ),
            (
                Error::Payload(EventError::NotAnEvent("x")),
                400,
                "invalid_payload",
            ),
            (Error::TooLarge { limit: 1 }, 413, "payload_too_large"),
            (
                Error::Storage(LedgerError::PoolTimeout),
                503,
                "storage_unavailable",
            ),
            (
                Error::Storage(LedgerError::from(deadpool_postgres::PoolError::Closed)),
                500,
                "storage_unavailable",
            ),
            (
                Error::Storage(LedgerError::OrderBusy),
                503,
                "storage_unavailable",
            ),
            (
                Error::MethodNotAllowed { allow: "POST" },
                405,
                "method_not_allowed",
            ),
            (
                Error::UpstreamConnect("x".into()),
                502,
                "upstream_unavailable",
            ),
            (Error::UpstreamTimeout(1), 504, "upstream_timeout"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
        }
    }
}
