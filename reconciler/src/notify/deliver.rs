//! One delivery attempt to the app: a signed `POST`, bounded in every way an app can hold it (the
//! attempt's time-out covers connecting, sending and the answer's head, and what is read of an
//! error's body; a 2xx acknowledges at its status line, its body unread; at most
//! [`MAX_BODY_READ`] bytes of an error body are read; redirects are never followed).

use std::time::{Duration, Instant};

use chrono::Utc;
use common::config::Secret;

use super::payload::{Notification, SIGNATURE_HEADER, signature};
use crate::config::NotifyConfig;

/// The most of an answer's body that is read (for the error text): an app that answers with a
/// gigabyte costs this much and no more.
pub const MAX_BODY_READ: usize = 64 * 1024;

/// The most of an error answer's body kept in `last_error`.
const ERROR_EXCERPT: usize = 200;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Any 2xx: acknowledged.
    Acknowledged,
    /// Anything else; the text goes to `last_error`.
    Failed(String),
}

/// Sends notifications to `APP_NOTIFY_URL`.
#[derive(Debug, Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    timeout: Duration,
}

impl Deliverer {
    pub fn new(config: &NotifyConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.concurrency)
            .user_agent(concat!(
                "stripe-edge-reconciler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            url: config.url.clone(),
            secret: config.secret.clone(),
            timeout: config.timeout,
        })
    }

    /// Posts `notification`, signed now; returns what it came to and how long it took.
    pub async fn attempt(&self, notification: &Notification) -> (Answer, Duration) {
        let started = Instant::now();
        let body = notification.body();
        let header = signature(self.secret.expose(), Utc::now().timestamp(), &body);
        let sent = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, header)
            .body(body)
            .send();
        let answer = match tokio::time::timeout(self.timeout, sent).await {
            Err(_) => Answer::Failed(format!("no answer within {}s", self.timeout.as_secs())),
            Ok(Err(e)) if e.is_timeout() => {
                Answer::Failed(format!("no answer within {}s", self.timeout.as_secs()))
            }
            Ok(Err(e)) => Answer::Failed(transport(&e)),
            // The status is the acknowledgement: the body is not waited for.
            Ok(Ok(resp)) if resp.status().is_success() => Answer::Acknowledged,
            Ok(Ok(resp)) => {
                let status = resp.status();
                let left = self.timeout.saturating_sub(started.elapsed());
                let excerpt = tokio::time::timeout(left, read_capped(resp))
                    .await
                    .unwrap_or_default();
                let redirect = match status.is_redirection() {
                    true => {
                        " (a redirect, not followed: point APP_NOTIFY_URL at the final address)"
                    }
                    false => "",
                };
                Answer::Failed(format!("HTTP {}{redirect}{excerpt}", status.as_u16()))
            }
        };
        (answer, started.elapsed())
    }
}

/// Reads at most [`MAX_BODY_READ`] bytes of the answer; returns an excerpt for the error text
/// (`": …"`, printable characters only; empty when the body is).
async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_BODY_READ {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_EXCERPT)
        .collect();
    match text.trim() {
        "" => String::new(),
        t => format!(": {t}"),
    }
}

/// A transport failure in words (connection refused, TLS), with its causes.
fn transport(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{what}: {}", common::error::chain(e))
}
