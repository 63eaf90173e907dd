//! A Stripe API simulator: a real HTTP server on port 0 that keeps events and Checkout Sessions and
//! answers the way the fixtures show Stripe does:
//! - `GET /v1/events`: newest first, `created[gt|gte|lt|lte]`, `type` (with `*` wildcards) or
//!   `types[]` (never both), `limit` 1–100 (default 10), `starting_after` / `ending_before`;
//!   a list object `{object, url, has_more, data}`;
//! - `GET /v1/events/{id}`, `GET /v1/checkout/sessions/{id}`;
//! - secret-key auth (Bearer or Basic), Stripe's error shape, a `Request-Id` on every answer;
//! - faults switchable at run time: 429 with `Stripe-Rate-Limited-Reason` and `Stripe-Should-Retry`,
//!   500s, latency and malformed bodies; and a hostile Stripe: a cursor that never advances or goes
//!   backwards, a huge page, a body dripped a byte a second, a redirect elsewhere;
//! - not Stripe's, the drill's control routes (same key): `POST /_sim/events` records the event in
//!   the body, and its Checkout Session when the event carries one, as Stripe would on a checkout;
//!   `POST /_sim/latency?ms=N` delays every later API answer by N ms.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Faults to inject into the next API answers.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N requests get 429 (rate limited, `Stripe-Should-Retry: true`).
    pub rate_limited: u32,
    /// The next N requests get 500.
    pub server_errors: u32,
    /// The next N requests get a 200 with a body that is not JSON.
    pub malformed: u32,
    /// The next N list requests get a 200 list whose `data` is not an array.
    pub wrong_shape: u32,
    /// Added to every answer.
    pub latency: Duration,
    /// How list requests are answered (persistent until changed).
    pub list: ListMode,
    /// Every API request is answered `302 Found` to this URL.
    pub redirect_to: Option<String>,
}

/// How a hostile Stripe answers `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ListMode {
    #[default]
    Normal,
    /// Every page is the first one, with `has_more: true`: the cursor never advances.
    EndlessCursor,
    /// Pages after the first hold the newest events again (all but the cursor): backwards.
    BackwardsCursor,
    /// One valid list padded to this many bytes, streamed.
    HugePage(usize),
    /// The list, one byte a second.
    Drip,
}

/// The body of every simulator answer (some are streamed).
pub type SimBody = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> SimBody {
    Full::new(body.into()).boxed()
}

/// An event as stored: what the list filters on, and its JSON text.
struct Stored {
    kind: String,
    created: i64,
    json: String,
}

#[derive(Default)]
struct State {
    /// Events in creation order (the list is answered newest first).
    events: Vec<Stored>,
    index: HashMap<String, usize>,
    /// Indexes into `events`, sorted by (`created`, creation order): the list walks it backwards.
    by_time: Vec<usize>,
    sessions: HashMap<String, Value>,
    faults: Faults,
    /// API requests answered, faults included.
    requests: u64,
}

impl State {
    fn add_event_text(&mut self, id: &str, kind: &str, created: i64, json: String) {
        let id = id.to_owned();
        let at = self.events.len();
        self.events.push(Stored {
            kind: kind.to_owned(),
            created,
            json,
        });
        self.index.insert(id, at);
        let events = &self.events;
        let pos = self
            .by_time
            .partition_point(|&i| (events[i].created, i) < (created, at));
        self.by_time.insert(pos, at);
    }

    /// Records `event`, and the Checkout Session it carries.
    fn add_event(&mut self, event: &Value) {
        self.add_event_text(
            event["id"].as_str().unwrap_or_default(),
            event["type"].as_str().unwrap_or_default(),
            event["created"].as_i64().unwrap_or(0),
            event.to_string(),
        );
        let object = &event["data"]["object"];
        if object["object"] == "checkout.session"
            && let Some(id) = object["id"].as_str()
        {
            self.sessions.insert(id.to_owned(), object.clone());
        }
    }
}

/// A running simulator.
pub struct StripeSim {
    pub addr: SocketAddr,
    pub api_key: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl StripeSim {
    /// Starts on `127.0.0.1:port` (0 for any) accepting `api_key`.
    pub async fn start_on(port: u16, api_key: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind simulator");
        let addr = listener.local_addr().expect("simulator address");
        let state = Arc::new(Mutex::new(State::default()));
        let key = api_key.to_owned();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let state = state.clone();
                            let key = key.clone();
                            async move { Ok::<_, Infallible>(answer(req, &state, &key).await) }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            api_key: api_key.to_owned(),
            state,
            task,
        }
    }

    pub async fn start(api_key: &str) -> Self {
        Self::start_on(0, api_key).await
    }

    /// `STRIPE_API_BASE` for this simulator.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Records an event (Stripe creates it; whether it is delivered is the driver's business).
    pub fn add_event(&self, event: Value) {
        self.add_event_text(
            event["id"].as_str().unwrap_or_default(),
            event["type"].as_str().unwrap_or_default(),
            event["created"].as_i64().unwrap_or(0),
            event.to_string(),
        );
    }

    /// Records an event given as its exact JSON text (which need not be representable as a
    /// `serde_json::Value`: lone surrogates, huge numbers).
    pub fn add_event_text(&self, id: &str, kind: &str, created: i64, json: String) {
        if let Ok(mut s) = self.state.lock() {
            s.add_event_text(id, kind, created, json);
        }
    }

    /// Stores (or replaces) a Checkout Session object.
    pub fn put_session(&self, session: Value) {
        if let Ok(mut s) = self.state.lock() {
            let id = session["id"].as_str().unwrap_or_default().to_owned();
            s.sessions.insert(id, session);
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut s) = self.state.lock() {
            s.faults = faults;
        }
    }

    /// API requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().map(|s| s.requests).unwrap_or(0)
    }

    pub fn event_count(&self) -> usize {
        self.state.lock().map(|s| s.events.len()).unwrap_or(0)
    }
}

impl Drop for StripeSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn request_id() -> String {
    format!("req_{}", &uuid::Uuid::new_v4().simple().to_string()[..14])
}

fn reply(status: StatusCode, body: String) -> Response<SimBody> {
    reply_with(status, full(body))
}

fn reply_with(status: StatusCode, body: SimBody) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().expect("header"));
    if let Ok(v) = request_id().parse() {
        h.insert("request-id", v);
    }
    r
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response<SimBody> {
    let mut err = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        err["code"] = json!(code);
    }
    reply(status, json!({ "error": err }).to_string())
}

/// `POST /_sim/events`: the body is one event, recorded as Stripe would have created it.
async fn record_posted_event(req: Request<Incoming>, state: &Mutex<State>) -> Response<SimBody> {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "unreadable body",
            );
        }
    };
    let event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "not JSON",
            );
        }
    };
    if event["id"].as_str().is_none() || event["type"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "an event needs an id and a type",
        );
    }
    match state.lock() {
        Ok(mut s) => {
            s.add_event(&event);
            reply(StatusCode::OK, json!({"recorded": event["id"]}).to_string())
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "simulator state poisoned",
        ),
    }
}

async fn answer(req: Request<Incoming>, state: &Mutex<State>, key: &str) -> Response<SimBody> {
    let (faults, fault) = {
        let Ok(mut s) = state.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "simulator state poisoned",
            );
        };
        s.requests += 1;
        let f = &mut s.faults;
        let fault = if f.rate_limited > 0 {
            f.rate_limited -= 1;
            Some("rate")
        } else if f.server_errors > 0 {
            f.server_errors -= 1;
            Some("500")
        } else if f.malformed > 0 {
            f.malformed -= 1;
            Some("malformed")
        } else {
            None
        };
        (f.clone(), fault)
    };
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(to) = &faults.redirect_to {
        let mut r = reply(StatusCode::FOUND, String::new());
        if let Ok(v) = to.parse() {
            r.headers_mut().insert("location", v);
        }
        return r;
    }
    if !authorized(&req, key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("api_key_invalid"),
            "Invalid API Key provided.",
        );
    }
    if req.method() == http::Method::POST && req.uri().path() == "/_sim/events" {
        return record_posted_event(req, state).await;
    }
    if req.method() == http::Method::POST && req.uri().path() == "/_sim/latency" {
        let params = query_pairs(req.uri().query().unwrap_or(""));
        let ms = params
            .iter()
            .find(|(k, _)| k == "ms")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        return match (ms, state.lock()) {
            (Some(ms), Ok(mut s)) => {
                s.faults.latency = Duration::from_millis(ms);
                reply(StatusCode::OK, json!({"latencyMs": ms}).to_string())
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "?ms=<milliseconds>",
            ),
        };
    }
    match fault {
        Some("rate") => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded.",
            );
            r.headers_mut().insert(
                "stripe-rate-limited-reason",
                "global-rate".parse().expect("header"),
            );
            r.headers_mut()
                .insert("stripe-should-retry", "true".parse().expect("header"));
            return r;
        }
        Some("500") => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "Something went wrong.",
            );
        }
        Some(_) => return reply(StatusCode::OK, "<html>not json".into()),
        None => {}
    }
    if req.method() != http::Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            None,
            "Only GET is simulated.",
        );
    }
    let path = req.uri().path().to_owned();
    let params = query_pairs(req.uri().query().unwrap_or(""));
    let Ok(s) = state.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "simulator state poisoned",
        );
    };
    if path == "/v1/events" {
        return match &faults.list {
            ListMode::Normal => list_events(&s, &params, faults.wrong_shape > 0),
            ListMode::EndlessCursor => {
                let first: Vec<(String, String)> = params
                    .iter()
                    .filter(|(k, _)| k != "starting_after")
                    .cloned()
                    .collect();
                with_more(list_events(&s, &first, false))
            }
            ListMode::BackwardsCursor => {
                let cursor = params.iter().find(|(k, _)| k == "starting_after");
                let first: Vec<(String, String)> = params
                    .iter()
                    .filter(|(k, _)| k != "starting_after")
                    .cloned()
                    .collect();
                match cursor {
                    None => list_events(&s, &first, false),
                    // The newest events again, minus the cursor: newer than the page before.
                    Some((_, id)) => with_more(newest_without(&s, id)),
                }
            }
            ListMode::HugePage(bytes) => reply_with(StatusCode::OK, Padded::new(*bytes).boxed()),
            ListMode::Drip => {
                let list = list_body(&s, &params);
                reply_with(StatusCode::OK, Drip::new(list).boxed())
            }
        };
    }
    if let Some(id) = path.strip_prefix("/v1/events/") {
        return match s.index.get(id) {
            Some(&i) => reply(StatusCode::OK, s.events[i].json.clone()),
            None => missing("event", id),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/checkout/sessions/") {
        return match s.sessions.get(id) {
            Some(session) => reply(StatusCode::OK, session.to_string()),
            None => missing("checkout.session", id),
        };
    }
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL (GET: {path})."),
    )
}

fn missing(kind: &str, id: &str) -> Response<SimBody> {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
    )
}

fn authorized<B>(req: &Request<B>, key: &str) -> bool {
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

/// The list for `params` as text (a normal answer's body).
fn list_body(s: &State, params: &[(String, String)]) -> Bytes {
    let resp = list_events(s, params, false);
    match resp.into_body().collect().now_or_never() {
        Some(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}

/// The newest events, all but `cursor`, as a list page.
fn newest_without(s: &State, cursor: &str) -> Response<SimBody> {
    let data: Vec<&str> = s
        .by_time
        .iter()
        .rev()
        .filter(|&&i| s.index.get(cursor) != Some(&i))
        .take(100)
        .map(|&i| s.events[i].json.as_str())
        .collect();
    reply(
        StatusCode::OK,
        format!(
            "{{\"object\":\"list\",\"url\":\"/v1/events\",\"has_more\":true,\"data\":[{}]}}",
            data.join(",")
        ),
    )
}

/// The same answer, saying there are more pages.
fn with_more(resp: Response<SimBody>) -> Response<SimBody> {
    let (parts, body) = resp.into_parts();
    let text = match body.collect().now_or_never() {
        Some(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&text).replace("\"has_more\":false", "\"has_more\":true");
    Response::from_parts(parts, full(text))
}

fn list_events(s: &State, params: &[(String, String)], wrong_shape: bool) -> Response<SimBody> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let types: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let single = get("type");
    if single.is_some() && !types.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "You may only specify one of these parameters: type, types.",
        );
    }
    if types.len() > 20 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "Too many types.",
        );
    }
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "limit must be between 1 and 100.",
            );
        }
    };
    let bound = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    let (gt, gte, lt, lte) = (
        bound("created[gt]"),
        bound("created[gte]"),
        bound("created[lt]"),
        bound("created[lte]"),
    );
    let exact = bound("created");
    let matches = |e: &Stored| {
        let created = e.created;
        let kind = e.kind.as_str();
        let type_ok = match single {
            Some(t) if t.ends_with('*') => kind.starts_with(t.trim_end_matches('*')),
            Some(t) => kind == t,
            None => types.is_empty() || types.contains(&kind),
        };
        type_ok
            && exact.is_none_or(|v| created == v)
            && gt.is_none_or(|v| created > v)
            && gte.is_none_or(|v| created >= v)
            && lt.is_none_or(|v| created < v)
            && lte.is_none_or(|v| created <= v)
    };
    // `by_time` is ascending; the list is newest first. Walk from the cursor, never the whole set.
    let position = |id: &str| -> Option<usize> {
        let &at = s.index.get(id)?;
        let created = s.events[at].created;
        Some(
            s.by_time
                .partition_point(|&i| (s.events[i].created, i) < (created, at)),
        )
    };
    let page: Vec<usize> = if let Some(before) = get("ending_before") {
        // The `limit` matches just newer than the cursor, returned newest first.
        let Some(pos) = position(before) else {
            return missing("event", before);
        };
        let mut newer: Vec<usize> = s.by_time[pos + 1..]
            .iter()
            .copied()
            .filter(|&i| matches(&s.events[i]))
            .take(limit + 1)
            .collect();
        let more = newer.len() > limit;
        newer.truncate(limit);
        newer.reverse();
        if more {
            newer.insert(0, usize::MAX);
        }
        newer
    } else {
        let end = match get("starting_after") {
            Some(after) => match position(after) {
                Some(pos) => pos,
                None => return missing("event", after),
            },
            None => s.by_time.len(),
        };
        let mut out = Vec::with_capacity(limit + 1);
        for &i in s.by_time[..end].iter().rev() {
            let e = &s.events[i];
            if gte.is_some_and(|v| e.created < v) || gt.is_some_and(|v| e.created <= v) {
                break; // everything further back is older still
            }
            if matches(e) {
                out.push(i);
                if out.len() > limit {
                    break;
                }
            }
        }
        out
    };
    let has_more = page.len() > limit || page.first() == Some(&usize::MAX);
    if wrong_shape {
        let body = json!({ "object": "list", "url": "/v1/events", "has_more": false, "data": { "unexpected": true } });
        return reply(StatusCode::OK, body.to_string());
    }
    let data: Vec<&str> = page
        .into_iter()
        .filter(|&i| i != usize::MAX)
        .take(limit)
        .map(|i| s.events[i].json.as_str())
        .collect();
    let body = format!(
        "{{\"object\":\"list\",\"url\":\"/v1/events\",\"has_more\":{has_more},\"data\":[{}]}}",
        data.join(",")
    );
    reply(StatusCode::OK, body)
}

/// `k=v` pairs of a query string, percent-decoded (`created%5Bgte%5D` → `created[gte]`).
fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
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

fn base64_decode(s: &str) -> Option<Vec<u8>> {
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
trait NowOrNever: std::future::Future + Sized {
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
struct Padded {
    remaining: usize,
    started: bool,
}

impl Padded {
    const HEAD: &'static str =
        "{\"object\":\"list\",\"url\":\"/v1/events\",\"has_more\":false,\"data\":[],\"padding\":\"";
    const TAIL: &'static str = "\"}";

    fn new(bytes: usize) -> Self {
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
struct Drip {
    body: Bytes,
    sent: usize,
    next: Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    fn new(body: Bytes) -> Self {
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
