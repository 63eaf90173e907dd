//! The Stripe API simulator: a real HTTP server on port 0 that keeps events and Checkout Sessions
//! and answers the way the fixtures show Stripe does:
//! - `GET /v1/events`: newest first, `created[gt|gte|lt|lte]`, `type` (with `*` wildcards) or
//!   `types[]` (never both), `limit` 1–100 (default 10), `starting_after` / `ending_before`;
//!   a list object `{object, url, has_more, data}`;
//! - `GET /v1/events/{id}`, `GET /v1/checkout/sessions/{id}`, `/v1/refunds/{id}`,
//!   `/v1/disputes/{id}`;
//! - `GET /v1/checkout/sessions` (also by `status` and `payment_intent`), `/v1/refunds` and
//!   `/v1/disputes`: the same lists by `created`, not limited to 30 days;
//! - secret-key auth (Bearer or Basic), Stripe's error shape, a `Request-Id` on every answer;
//! - faults switchable at run time: 429 with `Stripe-Rate-Limited-Reason` and `Stripe-Should-Retry`,
//!   500s, latency and malformed bodies; and a hostile Stripe: a cursor that never advances or goes
//!   backwards, a huge page, a body dripped a byte a second, a redirect elsewhere;
//! - not Stripe's, the drill's control routes (same key): `POST /_sim/events` records the event in
//!   the body, and its Checkout Session when the event carries one, as Stripe would on a checkout;
//!   `POST /_sim/objects` stores a session, refund or dispute without any event (one Stripe never
//!   generated, or one whose events are older than 30 days); `POST /_sim/latency?ms=N` delays every
//!   later API answer by N ms.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::events;
use crate::lists as objects;
use crate::store::Collection;
pub use crate::wire::SimBody;
use crate::wire::{authorized, error, missing, query_pairs, reply};

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

/// Everything the simulator keeps.
#[derive(Default)]
struct State {
    events: Collection,
    sessions: Collection,
    refunds: Collection,
    disputes: Collection,
    faults: Faults,
    /// API requests answered, faults included.
    requests: u64,
    /// `GET /v1/checkout/sessions/{id}` requests answered (faults excluded).
    session_fetches: u64,
}

impl State {
    /// Records `event`, and the Checkout Session it carries (in its latest state).
    fn add_event(&mut self, event: &Value) {
        self.events.put(
            event["id"].as_str().unwrap_or_default(),
            event["type"].as_str().unwrap_or_default(),
            event["created"].as_i64().unwrap_or(0),
            event.to_string(),
        );
        let object = &event["data"]["object"];
        self.put_object(object);
        // A charge of an older API version embeds its refunds.
        if let Some(refunds) = object["refunds"]["data"].as_array() {
            for refund in refunds {
                self.put_object(refund);
            }
        }
    }

    fn put_session(&mut self, session: &Value) {
        self.put_object(session);
    }

    /// Stores a session, refund or dispute in its latest state; other objects are ignored.
    fn put_object(&mut self, object: &Value) -> bool {
        let kind = object["object"].as_str().unwrap_or_default();
        let collection = match kind {
            "checkout.session" => &mut self.sessions,
            "refund" => &mut self.refunds,
            "dispute" => &mut self.disputes,
            _ => return false,
        };
        let Some(id) = object["id"].as_str() else {
            return false;
        };
        let created = object["created"].as_i64().unwrap_or(0);
        collection.put(id, kind, created, object.to_string());
        true
    }

    /// The fault the next answer gets, counted down; and the persistent ones.
    fn next_fault(&mut self) -> (Faults, Option<Fault>) {
        self.requests += 1;
        let f = &mut self.faults;
        let fault = if f.rate_limited > 0 {
            f.rate_limited -= 1;
            Some(Fault::RateLimited)
        } else if f.server_errors > 0 {
            f.server_errors -= 1;
            Some(Fault::ServerError)
        } else if f.malformed > 0 {
            f.malformed -= 1;
            Some(Fault::Malformed)
        } else {
            None
        };
        (f.clone(), fault)
    }
}

/// A fault of one answer.
#[derive(Debug, Clone, Copy)]
enum Fault {
    RateLimited,
    ServerError,
    Malformed,
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

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// Records an event (Stripe creates it; whether it is delivered is the driver's business).
    pub fn add_event(&self, event: Value) {
        self.with_state(|s| s.add_event(&event));
    }

    /// Records an event given as its exact JSON text (which need not be representable as a
    /// `serde_json::Value`: lone surrogates, huge numbers).
    pub fn add_event_text(&self, id: &str, kind: &str, created: i64, json: String) {
        self.with_state(|s| s.events.put(id, kind, created, json));
    }

    /// Stores (or replaces) a Checkout Session object.
    /// Stores a session, refund or dispute without its event.
    pub fn put_object(&self, object: Value) {
        self.with_state(|s| s.put_object(&object));
    }

    pub fn put_session(&self, session: Value) {
        self.with_state(|s| s.put_session(&session));
    }

    pub fn set_faults(&self, faults: Faults) {
        self.with_state(|s| s.faults = faults);
    }

    /// API requests answered so far.
    pub fn requests(&self) -> u64 {
        self.with_state(|s| s.requests).unwrap_or(0)
    }

    /// Checkout Sessions retrieved so far.
    pub fn session_fetches(&self) -> u64 {
        self.with_state(|s| s.session_fetches).unwrap_or(0)
    }

    pub fn event_count(&self) -> usize {
        self.with_state(|s| s.events.len()).unwrap_or(0)
    }
}

impl Drop for StripeSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn poisoned() -> Response<SimBody> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "api_error",
        None,
        "simulator state poisoned",
    )
}

/// One API request: the faults first, then auth, the simulator's own routes, the API.
async fn answer(req: Request<Incoming>, state: &Mutex<State>, key: &str) -> Response<SimBody> {
    let Some((faults, fault)) = state.lock().ok().map(|mut s| s.next_fault()) else {
        return poisoned();
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
    if req.method() == Method::POST && req.uri().path().starts_with("/_sim/") {
        return control(req, state).await;
    }
    if let Some(fault) = fault {
        return faulty(fault);
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            None,
            "Only GET is simulated.",
        );
    }
    let path = req.uri().path();
    let params = query_pairs(req.uri().query().unwrap_or(""));
    let Ok(mut s) = state.lock() else {
        return poisoned();
    };
    if path.starts_with("/v1/checkout/sessions/") {
        s.session_fetches += 1;
    }
    api(&s, path, &params, &faults)
}

/// The answer a fault makes.
fn faulty(fault: Fault) -> Response<SimBody> {
    match fault {
        Fault::RateLimited => {
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
            r
        }
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "Something went wrong.",
        ),
        Fault::Malformed => reply(StatusCode::OK, "<html>not json".into()),
    }
}

/// The API's GET routes.
fn api(s: &State, path: &str, params: &[(String, String)], faults: &Faults) -> Response<SimBody> {
    if path == "/v1/events" {
        return events::list_as(&s.events, params, &faults.list, faults.wrong_shape > 0);
    }
    if let Some(id) = path.strip_prefix("/v1/events/") {
        return events::retrieve(&s.events, id);
    }
    if let Some(id) = path.strip_prefix("/v1/checkout/sessions/") {
        return match s.sessions.get(id) {
            Some(session) => reply(StatusCode::OK, session.json.clone()),
            None => missing("checkout.session", id),
        };
    }
    let lists: [(&str, &Collection, &str); 3] = [
        ("/v1/checkout/sessions", &s.sessions, "checkout.session"),
        ("/v1/refunds", &s.refunds, "refund"),
        ("/v1/disputes", &s.disputes, "dispute"),
    ];
    for (url, collection, kind) in lists {
        if path == url {
            return objects::list(collection, url, kind, params);
        }
        if let Some(id) = path
            .strip_prefix(url)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|_| kind != "checkout.session")
        {
            return match collection.get(id) {
                Some(o) => reply(StatusCode::OK, o.json.clone()),
                None => missing(kind, id),
            };
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL (GET: {path})."),
    )
}

/// The simulator's own routes (the drill's and the local stack's): `POST /_sim/events` records
/// the event in the body as Stripe would have created it; `POST /_sim/latency?ms=N` delays every
/// later answer.
async fn control(req: Request<Incoming>, state: &Mutex<State>) -> Response<SimBody> {
    let bad = |message: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    };
    match req.uri().path() {
        "/_sim/events" => {
            let Ok(body) = req.into_body().collect().await else {
                return bad("unreadable body");
            };
            let Ok(event) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                return bad("not JSON");
            };
            if event["id"].as_str().is_none() || event["type"].as_str().is_none() {
                return bad("an event needs an id and a type");
            }
            match state.lock() {
                Ok(mut s) => {
                    s.add_event(&event);
                    reply(StatusCode::OK, json!({"recorded": event["id"]}).to_string())
                }
                Err(_) => poisoned(),
            }
        }
        "/_sim/objects" => {
            let Ok(body) = req.into_body().collect().await else {
                return bad("unreadable body");
            };
            let Ok(object) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                return bad("not JSON");
            };
            match state.lock().map(|mut s| s.put_object(&object)) {
                Ok(true) => reply(StatusCode::OK, json!({"stored": object["id"]}).to_string()),
                Ok(false) => bad("a checkout.session, refund or dispute with an id"),
                Err(_) => poisoned(),
            }
        }
        "/_sim/latency" => {
            let params = query_pairs(req.uri().query().unwrap_or(""));
            let ms = params
                .iter()
                .find(|(k, _)| k == "ms")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            match (ms, state.lock()) {
                (Some(ms), Ok(mut s)) => {
                    s.faults.latency = Duration::from_millis(ms);
                    reply(StatusCode::OK, json!({"latencyMs": ms}).to_string())
                }
                _ => bad("?ms=<milliseconds>"),
            }
        }
        other => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL (POST: {other})."),
        ),
    }
}
