//! The support pages on the reconciler's admin listener (`/support`): server-rendered HTML that
//! works without JavaScript, for support staff who have no shell. Log in with `ADMIN_TOKEN`; one
//! search box for any id gives the same timeline and verdict as `reconciler inspect`; "Reconcile
//! this session" and "Redeliver notification" are POST forms with a CSRF token tied to the
//! session; the overview lists recent passes and sweeps, open orphans, anomalies, undelivered
//! notifications and open disputes.
//!
//! - `auth`: sessions, CSRF tokens, the failed-login limit.
//! - `html`: escaping (the only way a value reaches a page), the frame, the stylesheet.
//! - `pages`: each page's body; `overview`: the overview's; `query`: its reads.
//! - `request`: what a request carries (its form, query, session cookie, scheme).
//!
//! Every answer carries `Content-Security-Policy: default-src 'self'`, `X-Frame-Options: DENY`
//! and `Cache-Control: no-store`; form bodies are read up to 8 KiB.

mod auth;
mod html;
mod overview;
mod pages;
/// Public for the schema test, which runs these reads under `auto_explain`.
pub mod query;
mod request;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use common::http::{Body, Peer, full};
use common::telemetry::RequestId;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::Reconciler;
use crate::inspect::{self, Target};
use crate::metrics::SupportAction;
use crate::notify::payload::parse_public_id;
use crate::notify::store::Redeliver;
use crate::runs::Trigger;
use crate::stripe_api::{RetryPolicy, StripeClient};
use auth::{Auth, COOKIE, Session};
use request::{came_over_https, cookie, field, form, query_param};

pub use html::esc;

/// The support pages.
pub struct Support {
    reconciler: Arc<Reconciler>,
    auth: Auth,
    /// Support is waiting: one quick retry, not a minute of backoff (a client of its own, with
    /// its own small share of `STRIPE_MAX_RPS`: searches are rare).
    stripe: StripeClient,
}

impl Support {
    pub fn new(reconciler: Arc<Reconciler>) -> Result<Self, crate::error::Error> {
        let stripe = StripeClient::new(&reconciler.config, reconciler.metrics.clone())?
            .with_retry(RetryPolicy::interactive());
        Ok(Self {
            reconciler,
            auth: Auth::default(),
            stripe,
        })
    }

    /// Whether `path` is one of the support pages.
    pub fn serves(path: &str) -> bool {
        path == "/support" || path.starts_with("/support/")
    }

    /// Answers a request for a support page.
    pub async fn handle(&self, req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        let mut resp = self.answer(req, rid).await;
        let h = resp.headers_mut();
        for (name, value) in [
            (
                "content-security-policy",
                "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        resp
    }

    async fn answer(&self, req: Request<Incoming>, rid: &RequestId) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == "/support/style.css" {
            let mut resp = Response::new(full(html::STYLE));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            );
            return resp;
        }
        let Some(token) = self.reconciler.config.admin_token.clone() else {
            return html_page(StatusCode::FORBIDDEN, pages::disabled());
        };
        let session = cookie(&req).and_then(|id| self.auth.session(&id).map(|s| (id, s)));
        match (method, path.as_str(), session) {
            (Method::GET, "/support", None) => html_page(StatusCode::OK, pages::login(None)),
            (Method::POST, "/support/login", _) => {
                let secure = came_over_https(&req);
                self.login(req, token.expose(), secure).await
            }
            (_, _, None) => see_other("/support", None),
            (Method::GET, "/support", Some((_, s))) => self.overview(&s).await,
            (Method::GET, "/support/search", Some((_, s))) => {
                let query = req.uri().query().unwrap_or("");
                let q = query_param(query, "q").unwrap_or_default();
                let page = query_param(query, "page")
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1);
                self.search(q.trim(), page, &s).await
            }
            (Method::POST, "/support/logout", Some((id, s))) => {
                match form(req).await.filter(|f| csrf(f, &s)) {
                    Some(_) => {
                        self.auth.logout(&id);
                        tracing::info!(support = %s.tag, "support logout");
                        see_other("/support", Some(clear_cookie()))
                    }
                    None => forbidden(&s),
                }
            }
            (Method::POST, "/support/reconcile", Some((_, s))) => match form(req).await {
                Some(f) if csrf(&f, &s) => self.reconcile(&f, &s, rid).await,
                _ => forbidden(&s),
            },
            (Method::POST, "/support/redeliver", Some((_, s))) => match form(req).await {
                Some(f) if csrf(&f, &s) => self.redeliver(&f, &s).await,
                _ => forbidden(&s),
            },
            (_, _, Some((_, s))) => html_page(
                StatusCode::NOT_FOUND,
                pages::message("Not found", &s.csrf, "There is no such support page."),
            ),
        }
    }

    async fn login(&self, req: Request<Incoming>, token: &str, secure: bool) -> Response<Body> {
        let client = req
            .extensions()
            .get::<Peer>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
        if self.auth.locked_out(client) {
            tracing::warn!(client = %client, "support login refused: too many failures");
            return html_page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login(Some(
                    "Too many failed logins from this address: wait a minute.",
                )),
            );
        }
        let presented = form(req)
            .await
            .and_then(|f| field(&f, "token").map(str::to_owned))
            .unwrap_or_default();
        match self.auth.login(client, presented.trim(), token) {
            Some((id, session)) => {
                tracing::info!(support = %session.tag, client = %client, "support login");
                see_other("/support", Some(set_cookie(&id, secure)))
            }
            None => {
                tracing::warn!(client = %client, "support login refused: wrong token");
                html_page(
                    StatusCode::UNAUTHORIZED,
                    pages::login(Some("That is not the admin token.")),
                )
            }
        }
    }

    async fn overview(&self, s: &Session) -> Response<Body> {
        let result = async {
            let client = self.reconciler.pool.get().await?;
            let (orphan_count, orphans) = query::orphans(&client).await?;
            Ok::<_, crate::error::Error>(overview::Overview {
                runs: query::recent_runs(&client).await?,
                orphan_count,
                orphans,
                anomalies: query::anomalies(&client).await?,
                undelivered: query::undelivered(&client).await?,
                disputes: query::open_disputes(&client).await?,
            })
        }
        .await;
        match result {
            Ok(o) => html_page(StatusCode::OK, overview::overview(&o, &s.csrf)),
            Err(e) => unavailable(s, &e),
        }
    }

    /// What the search box was given, as a timeline target.
    async fn target(&self, q: &str) -> Result<Option<Target>, crate::error::Error> {
        if let Ok(order) = uuid::Uuid::parse_str(q) {
            return Ok(Some(Target::Order(order)));
        }
        if q.starts_with("evt_") {
            return Ok(Some(Target::Event(q.to_owned())));
        }
        if q.starts_with("cs_") {
            return Ok(Some(Target::Session(q.to_owned())));
        }
        if ["pi_", "re_", "du_", "dp_", "pyr_"]
            .iter()
            .any(|p| q.starts_with(p))
        {
            let client = self.reconciler.pool.get().await?;
            return Ok(query::order_of_object(&client, q).await?.map(Target::Order));
        }
        Ok(Some(Target::RequestId(q.to_owned())))
    }

    async fn search(&self, q: &str, page: usize, s: &Session) -> Response<Body> {
        if q.is_empty() || q.len() > 255 {
            return html_page(
                StatusCode::BAD_REQUEST,
                pages::message("Search", &s.csrf, "Give an id of at most 255 characters."),
            );
        }
        let target = match self.target(q).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return html_page(
                    StatusCode::NOT_FOUND,
                    pages::message(
                        "Not found",
                        &s.csrf,
                        &format!("No order has a payment, refund or dispute {q}."),
                    ),
                );
            }
            Err(e) => return unavailable(s, &e),
        };
        let stripe = self.stripe.has_key().then_some(&self.stripe);
        match inspect::inspect(&self.reconciler.pool, stripe, &target).await {
            Ok(t) => html_page(StatusCode::OK, pages::timeline(&t, &s.csrf, q, page)),
            Err(e) => unavailable(s, &e),
        }
    }

    async fn reconcile(
        &self,
        f: &[(String, String)],
        s: &Session,
        rid: &RequestId,
    ) -> Response<Body> {
        let Some(session_id) = field(f, "session")
            .filter(|id| id.starts_with("cs_") && common::stripe::is_stripe_id(id))
        else {
            return html_page(
                StatusCode::BAD_REQUEST,
                pages::message("Reconcile", &s.csrf, "That is not a Checkout Session id."),
            );
        };
        self.reconciler
            .metrics
            .support_actions
            .inc(SupportAction::Reconcile);
        tracing::info!(support = %s.tag, session = %session_id, requestId = %rid, "support reconciles a session");
        match self
            .reconciler
            .reconcile_session(session_id, Trigger::Manual)
            .await
        {
            Ok(v) => html_page(StatusCode::OK, pages::reconciled(&v, &s.csrf)),
            Err(e) => unavailable(s, &e),
        }
    }

    async fn redeliver(&self, f: &[(String, String)], s: &Session) -> Response<Body> {
        let which = field(f, "transition")
            .and_then(parse_public_id)
            .map(Redeliver::Transition)
            .or_else(|| {
                field(f, "order")
                    .and_then(|o| uuid::Uuid::parse_str(o).ok())
                    .map(Redeliver::Order)
            });
        let Some(which) = which else {
            return html_page(
                StatusCode::BAD_REQUEST,
                pages::message(
                    "Redeliver",
                    &s.csrf,
                    "That is not a notification id (otr_…).",
                ),
            );
        };
        self.reconciler
            .metrics
            .support_actions
            .inc(SupportAction::Redeliver);
        tracing::info!(support = %s.tag, ?which, "support redelivers notifications");
        match self.reconciler.redeliver(&which).await {
            Ok(n) => html_page(
                StatusCode::OK,
                pages::message(
                    "Redelivered",
                    &s.csrf,
                    &format!(
                        "{n} notification(s) queued for delivery again; the app deduplicates them by id. \
                         Search the order again to follow the delivery."
                    ),
                ),
            ),
            Err(e) => unavailable(s, &e),
        }
    }
}

fn html_page(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn unavailable(s: &Session, e: &crate::error::Error) -> Response<Body> {
    tracing::error!(support = %s.tag, error = %e, "support page failed");
    let answer = e.http();
    html_page(
        answer.status,
        pages::message("Something failed", &s.csrf, &answer.message),
    )
}

fn forbidden(s: &Session) -> Response<Body> {
    tracing::warn!(support = %s.tag, "support form refused: missing or wrong CSRF token");
    html_page(
        StatusCode::FORBIDDEN,
        pages::message(
            "Refused",
            &s.csrf,
            "The form was not sent from this support session: reload the page and try again.",
        ),
    )
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/support; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::IDLE.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/support; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn csrf(f: &[(String, String)], s: &Session) -> bool {
    field(f, "csrf").is_some_and(|c| auth::csrf_ok(s, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>\"&`"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;&#96;"
        );
        assert_eq!(esc("a\u{1b}[31mred\u{7}"), "a\\u{1b}[31mred\\u{7}");
    }
}
