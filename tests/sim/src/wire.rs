//! The simulator's wire format: Stripe's answer and error shapes (with a `Request-Id`), query
//! strings, API-key auth (Bearer or Basic), and the bodies a hostile Stripe streams.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use serde_json::json;

/// The body of every simulator answer (some are streamed).
pub type SimBody = BoxBody<Bytes, Infallible>;

pub(crate) fn full(body: impl Into<Bytes>) -> SimBody {
    Full::new(body.into()).boxed()
}

pub(crate) fn request_id() -> String {
    format!("req_{}", &uuid::Uuid::new_v4().simple().to_string()[..14])
}

pub(crate) fn reply(status: StatusCode, body: String) -> Response<SimBody> {
    reply_with(status, full(body))
}

pub(crate) fn reply_with(status: StatusCode, body: SimBody) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().expect("header"));
    if let Ok(v) = request_id().parse() {
        h.insert("request-id", v);
    }
    r
}

pub(crate) fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
) -> Response<SimBody> {
    let mut err = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        err["code"] = json!(code);
    }
    reply(status, json!({ "error": err }).to_string())
}

pub(crate) fn missing(kind: &str, id: &str) -> Response<SimBody> {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
    )
}

pub(crate) fn authorized<B>(req: &Request<B>, key: &str) -> bool {
    let Some(value) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return token == key;
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        return base64_decode(encoded).is_some_and(|d| d == format!("{key}:").as_bytes());
    }
    false
}

/// `k=v` pairs of a query string, percent-decoded (`created%5Bgte%5D` → `created[gte]`).
pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

/// Polls a future once: the simulator's own bodies are complete in memory.
pub(crate) trait NowOrNever: std::future::Future + Sized {
    fn now_or_never(self) -> Option<Self::Output> {
        let mut future = std::pin::pin!(self);
        let waker = std::task::Waker::noop();
        match future.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}

impl<F: std::future::Future> NowOrNever for F {}

/// A valid, empty event list padded to `bytes` bytes, produced 1 MiB at a time, never held whole.
pub(crate) struct Padded {
    remaining: usize,
    started: bool,
}

impl Padded {
    const HEAD: &'static str =
        "{\"object\":\"list\",\"url\":\"/v1/events\",\"has_more\":false,\"data\":[],\"padding\":\"";
    const TAIL: &'static str = "\"}";

    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            remaining: bytes.saturating_sub(Self::HEAD.len() + Self::TAIL.len()),
            started: false,
        }
    }
}

impl Body for Padded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.started {
            self.started = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                Self::HEAD.as_bytes(),
            )))));
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(1 << 20);
        self.remaining -= n;
        let mut chunk = vec![b'x'; n];
        if self.remaining == 0 {
            chunk.extend_from_slice(Self::TAIL.as_bytes());
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// A body sent one byte a second.
pub(crate) struct Drip {
    body: Bytes,
    sent: usize,
    next: Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    pub(crate) fn new(body: Bytes) -> Self {
        Self {
            body,
            sent: 0,
            next: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.body.len() {
            return Poll::Ready(None);
        }
        if self.next.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let at = self.sent;
        self.sent += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        self.next.as_mut().reset(deadline);
        Poll::Ready(Some(Ok(Frame::data(self.body.slice(at..at + 1)))))
    }
}
