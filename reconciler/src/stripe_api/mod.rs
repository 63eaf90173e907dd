//! Stripe's REST API as the reconciler uses it: a client-side rate limit (`STRIPE_MAX_RPS`),
//! retries with exponential backoff and jitter on 429, 409, 5xx and connection errors (honouring
//! `Stripe-Should-Retry`), per-request metrics, bodies read up to `STRIPE_MAX_RESPONSE_BYTES`,
//! redirects never followed, and an API key that never leaves the `Authorization` header of a
//! request to `STRIPE_API_BASE`. The events endpoints and their pager are in [`events`], the
//! object lists the sweep reads in [`objects`].

pub mod events;
pub mod objects;

pub use events::{EventHead, EventPager, EventQuery, ListedEvent};
pub use objects::{ListedObject, ObjectList, ObjectPager};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::config::Secret;

use crate::config::ReconcilerConfig;
use common::metrics::{StatusClass, status_class};
use common::stripe::is_stripe_id;
use common::stripe::session::CheckoutSession;
use serde_json::Value;

use crate::metrics::{Endpoint, ReconcilerMetrics};

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// As Stripe's own libraries: from 0.5 s, doubling, capped at 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// For a person waiting at a terminal: one retry after half a second.
    pub fn interactive() -> Self {
        Self {
            max_attempts: 2,
            base: Duration::from_millis(500),
            cap: Duration::from_millis(500),
        }
    }
}

/// Why a Stripe call failed (after retries where they apply).
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe refused the API key (401): {0}")]
    Unauthorized(String),
    #[error("not found on Stripe: {0}")]
    NotFound(String),
    #[error("not a Stripe id: {0:?}")]
    InvalidId(String),
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Stripe still answered {status} after {attempts} attempts")]
    Exhausted { status: u16, attempts: u32 },
    #[error("cannot reach Stripe after {attempts} attempts: {}", common::error::chain(.source))]
    Transport {
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from Stripe: {0}")]
    Malformed(String),
    #[error("Stripe's answer is larger than STRIPE_MAX_RESPONSE_BYTES ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error(
        "Stripe answered {status} redirecting to {host}: Stripe's API never redirects, so the \
         redirect was not followed (check STRIPE_API_BASE and any proxy in front of it)"
    )]
    Redirect { status: u16, host: String },
    #[error("Stripe's event list does not page forward: {0}")]
    Pagination(String),
}

/// Spaces requests at least `1 / STRIPE_MAX_RPS` apart, across every task using the client.
#[derive(Debug)]
struct Limiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Limiter {
    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// The Stripe client of one reconciler process.
#[derive(Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    /// `None` for `inspect` without `STRIPE_API_KEY`: every call then fails with
    /// [`StripeError::Unauthorized`] before anything is sent.
    key: Option<Secret>,
    version: Option<String>,
    limiter: Limiter,
    retry: RetryPolicy,
    metrics: ReconcilerMetrics,
    requests: AtomicU64,
    max_response_bytes: usize,
}

impl StripeClient {
    pub fn new(config: &ReconcilerConfig, metrics: ReconcilerMetrics) -> Result<Self, StripeError> {
        let key = config.stripe_api_key.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // Stripe's API never redirects; a redirect would carry the key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "stripe-edge-reconciler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|source| StripeError::Transport {
                attempts: 0,
                source,
            })?;
        Ok(Self {
            http,
            base: config.stripe_api_base.clone(),
            key,
            version: config.stripe_api_version.clone(),
            limiter: Limiter {
                interval: Duration::from_secs(1) / config.max_rps.max(1),
                next: tokio::sync::Mutex::new(Instant::now()),
            },
            retry: RetryPolicy::default(),
            metrics,
            requests: AtomicU64::new(0),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Replaces the retry policy (tests use short pauses).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Whether an API key is set (without one, Stripe is never asked).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// HTTP requests sent so far, retries included.
    /// The API key is a live-mode one (`sk_live_…`, `rk_live_…`).
    pub fn is_live(&self) -> bool {
        self.key
            .as_ref()
            .is_some_and(|k| k.expose().contains("_live_"))
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `GET /v1/checkout/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<CheckoutSession, StripeError> {
        if !is_stripe_id(id) {
            return Err(StripeError::InvalidId(id.to_owned()));
        }
        let body = self
            .get_bytes(
                Endpoint::SessionsRetrieve,
                &format!("/v1/checkout/sessions/{id}"),
            )
            .await?;
        CheckoutSession::parse(&body)
            .map_err(|e| StripeError::Malformed(format!("checkout.sessions.retrieve answered {e}")))
    }

    /// The body of a successful GET, after retries.
    async fn get_bytes(&self, endpoint: Endpoint, path: &str) -> Result<bytes::Bytes, StripeError> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| StripeError::Unauthorized("STRIPE_API_KEY is not set".into()))?;
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry = match self.attempt(endpoint, &url, key).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(retry) => retry,
            };
            if attempt >= self.retry.max_attempts {
                return Err(match retry {
                    Retry::Transport(source) | Retry::Cut(source) => StripeError::Transport {
                        attempts: attempt,
                        source,
                    },
                    Retry::Status { status, .. } => StripeError::Exhausted {
                        status,
                        attempts: attempt,
                    },
                });
            }
            match &retry {
                Retry::Transport(e) => {
                    tracing::warn!(endpoint = endpoint.as_str(), attempt, error = %common::error::chain(e), "Stripe unreachable; retrying");
                }
                Retry::Cut(e) => {
                    tracing::warn!(endpoint = endpoint.as_str(), attempt, error = %common::error::chain(e), "Stripe answer cut off; retrying");
                }
                Retry::Status { status, request_id } => {
                    tracing::warn!(endpoint = endpoint.as_str(), status, attempt, requestId = ?request_id, "Stripe asked to retry");
                }
            }
            self.pause(attempt).await;
        }
    }

    /// One request: its body, an error, or a failure worth retrying.
    async fn attempt(&self, endpoint: Endpoint, url: &str, key: &Secret) -> Attempt {
        self.limiter.acquire().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut req = self.http.get(url).bearer_auth(key.expose());
        if let Some(v) = &self.version {
            req = req.header("Stripe-Version", v);
        }
        let seconds = || started.elapsed().as_secs_f64();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .stripe_request(endpoint, StatusClass::Error, seconds());
                return Attempt::Retry(Retry::Transport(e));
            }
        };
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            self.metrics
                .stripe_request(endpoint, status_class(status), seconds());
            return Attempt::Done(Err(redirect(&resp, status)));
        }
        let request_id = header(&resp, "request-id");
        let should_retry = header(&resp, "stripe-should-retry").map(|v| v == "true");
        let body = self.read_body(resp).await;
        self.metrics
            .stripe_request(endpoint, status_class(status), seconds());
        let body = match body {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Attempt::Done(Err(StripeError::TooLarge {
                    limit: self.max_response_bytes,
                }));
            }
            Err(BodyError::Cut(e)) => return Attempt::Retry(Retry::Cut(e)),
        };
        if (200..300).contains(&status) {
            tracing::debug!(endpoint = endpoint.as_str(), requestId = ?request_id, "Stripe answered");
            return Attempt::Done(Ok(body));
        }
        if status == 429 {
            self.metrics.stripe_rate_limited.inc(endpoint);
        }
        let retryable = should_retry.unwrap_or(matches!(status, 409 | 429 | 500..=599));
        match status {
            401 => Attempt::Done(Err(StripeError::Unauthorized(message(&body, status)))),
            404 => Attempt::Done(Err(StripeError::NotFound(message(&body, status)))),
            _ if retryable => Attempt::Retry(Retry::Status { status, request_id }),
            _ => Attempt::Done(Err(StripeError::Api {
                status,
                message: message(&body, status),
            })),
        }
    }

    /// Reads a body up to `STRIPE_MAX_RESPONSE_BYTES`, chunk by chunk: a larger one is dropped
    /// (and its connection closed) as soon as it passes the limit, never held whole.
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<bytes::Bytes, BodyError> {
        let limit = self.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(BodyError::TooLarge);
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(BodyError::Cut)? {
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Exponential backoff with jitter in [d/2, d].
    async fn pause(&self, attempt: u32) {
        let d = common::backoff::delay(self.retry.base, self.retry.cap, attempt);
        tokio::time::sleep(d).await;
    }
}

/// What one request came to.
enum Attempt {
    Done(Result<bytes::Bytes, StripeError>),
    Retry(Retry),
}

/// A failure worth another attempt.
enum Retry {
    /// No answer (connection refused, reset, timed out).
    Transport(reqwest::Error),
    /// The answer was cut off.
    Cut(reqwest::Error),
    /// 429, 409, 5xx, or `Stripe-Should-Retry: true`.
    Status {
        status: u16,
        request_id: Option<String>,
    },
}

/// Stripe's error message in an error body, or the status.
fn message(body: &[u8], status: u16) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

/// A redirect, refused: where it pointed.
fn redirect(resp: &reqwest::Response, status: u16) -> StripeError {
    let host = header(resp, "location")
        .and_then(|l| {
            reqwest::Url::parse(&l)
                .ok()
                .or_else(|| resp.url().join(&l).ok())
        })
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "an unnamed location".into());
    StripeError::Redirect { status, host }
}

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Cut(reqwest::Error),
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
