//! The reverse proxy to the app (`UPSTREAM_URL`): every route except the webhook, bodies streamed
//! both ways, hop-by-hop headers removed, `X-Forwarded-*` and `X-Request-Id` added; an unreachable
//! app gives 502 and a slow one 504. Upstream connections run on the client connection's runtime
//! and are kept for its next request ([`upstream`]). Bounded: at most
//! `EDGE_PROXY_MAX_INFLIGHT` requests (each on its own upstream connection) at once, 503 past it;
//! a request body that stalls longer than the body read time-out between two chunks is cut, and a
//! response the client does not read for the stall time-out is given up ([`flights`]), so that no
//! slow peer can pin an upstream connection.

mod cap;
mod flights;
mod upstream;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use common::metrics::{StatusClass, status_class};

use crate::metrics::EdgeMetrics;
use cap::{Cap, Slot};
use common::http::{Connected, Limits};
use common::telemetry::RequestId;
use flights::Flights;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use upstream::{Answer, Home, Upstream};

use crate::config::UpstreamApp;
use crate::error::Error;
use crate::routes::{Body, BoxError, X_REQUEST_ID};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The proxy toward the app: HTTP/1.1 connections kept by the client connections that use them
/// ([`upstream`]).
#[derive(Debug, Clone)]
pub struct Proxy {
    /// `host:port` to connect to.
    address: Arc<str>,
    /// The app's authority, sent as `Host`.
    host: Option<HeaderValue>,
    /// Idle upstream connections now, over every client connection.
    idle: Arc<AtomicUsize>,
    inflight: Arc<Cap>,
    /// The responses on their way back, watched for clients that stop reading.
    flights: Arc<Flights>,
    body_timeout: Duration,
    timeout: Duration,
    metrics: EdgeMetrics,
}

impl Proxy {
    /// A proxy to `app`.
    pub fn new(
        app: &UpstreamApp,
        timeout: Duration,
        max_inflight: usize,
        limits: &Limits,
        metrics: EdgeMetrics,
    ) -> Self {
        let inflight = Cap::new(max_inflight);
        metrics
            .proxy_in_flight_limit
            .set_value(inflight.max() as f64);
        Self {
            address: app.address.as_str().into(),
            host: HeaderValue::from_str(&app.authority).ok(),
            idle: Arc::new(AtomicUsize::new(0)),
            timeout,
            inflight,
            flights: Flights::start(limits.stall_timeout, metrics.clone()),
            body_timeout: limits.body_read_timeout,
            metrics,
        }
    }

    /// Proxied requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inflight.taken()
    }

    /// Forwards one request and streams the answer back.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        connected: &Connected,
        rid: &RequestId,
    ) -> Response<Body> {
        let Some(slot) = self.inflight.try_take() else {
            self.metrics.proxy_requests.inc(StatusClass::Error);
            return Error::ProxyOverloaded.into_response(rid);
        };
        let started = Instant::now();
        let result = self.send(req, connected, rid, slot).await;
        self.metrics
            .proxy_duration
            .record_value(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) => {
                self.metrics
                    .proxy_requests
                    .inc(status_class(resp.status().as_u16()));
                resp
            }
            Err(e) => {
                self.metrics.proxy_requests.inc(StatusClass::Error);
                tracing::warn!(error = %e, "proxy failed");
                e.into_response(rid)
            }
        }
    }

    async fn send(
        &self,
        req: Request<Incoming>,
        connected: &Connected,
        rid: &RequestId,
        slot: Slot,
    ) -> Result<Response<Body>, Error> {
        let (mut parts, body) = req.into_parts();
        let body = Stalling::new(body, self.body_timeout);
        let home = Home::new(connected.kept.clone(), self.idle.clone());
        self.rewrite(&mut parts, connected, rid)?;
        let req = Request::from_parts(parts, body);
        let (resp, upstream) = tokio::time::timeout(self.timeout, self.exchange(req, &home))
            .await
            .map_err(|_| Error::UpstreamTimeout(self.timeout.as_secs()))??;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The slot is held until the answer has streamed back (its upstream connection is busy),
        // or the client has stopped reading it.
        let body = Answer::new(body, upstream, home);
        let body = self.flights.watch(body, slot).boxed();
        Ok(Response::from_parts(parts, body))
    }

    /// The request as the app gets it: origin-form target, the app's `Host`, no hop-by-hop
    /// headers, `X-Forwarded-*` and the request id added.
    fn rewrite(
        &self,
        parts: &mut http::request::Parts,
        connected: &Connected,
        rid: &RequestId,
    ) -> Result<(), Error> {
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if parts.uri.scheme().is_some() || parts.uri.path_and_query().is_none() {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = path.parse::<Uri>().map_err(Error::BadTarget)?;
        }
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        match &self.host {
            Some(host) => parts.headers.insert(header::HOST, host.clone()),
            None => parts.headers.remove(header::HOST),
        };
        if let Some(ip) = &connected.peer_ip {
            append(&mut parts.headers, X_FORWARDED_FOR, ip.clone());
        }
        append(
            &mut parts.headers,
            X_FORWARDED_PROTO,
            HeaderValue::from_static(connected.scheme.as_str()),
        );
        if let Some(host) = original_host.filter(|h| h.to_str().is_ok()) {
            append(&mut parts.headers, X_FORWARDED_HOST, host);
        }
        parts.headers.insert(X_REQUEST_ID, rid.header_value());
        Ok(())
    }

    /// Sends the request on this client connection's idle upstream connection, else on a new one,
    /// and waits for the answer's head. A kept connection that the app has closed meanwhile is
    /// dropped, and the request, which never left, goes on the next.
    async fn exchange(
        &self,
        mut req: Request<Stalling>,
        home: &Home,
    ) -> Result<(Response<Incoming>, Upstream), Error> {
        while let Some(mut upstream) = home.take() {
            if !upstream.ready().await {
                continue;
            }
            match upstream.send(req).await {
                Ok(resp) => return Ok((resp, upstream)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(Error::UpstreamConnect(Box::new(e.into_error()))),
                },
            }
        }
        let mut upstream = Upstream::connect(&self.address)
            .await
            .map_err(Error::UpstreamConnect)?;
        upstream.ready().await;
        match upstream.send(req).await {
            Ok(resp) => Ok((resp, upstream)),
            Err(e) => Err(Error::UpstreamConnect(Box::new(e.into_error()))),
        }
    }
}

/// A request body cut when no chunk arrives for `timeout`.
pub struct Stalling {
    body: Incoming,
    timeout: Duration,
    /// Armed the first time the body has nothing to give: a body that never waits (no body, or
    /// one already in) costs no timer.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalling {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            deadline: None,
        }
    }
}

/// The client stopped sending its request body.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for longer than {0:?}")]
pub struct Stalled(Duration);

impl HttpBody for Stalling {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(deadline) = this.deadline.as_mut() {
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.timeout);
                }
                Poll::Ready(frame.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Removes the hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none (and so no `Connection` naming others): one pass over the names
    // finds out. Only the ones present are then removed, each by a hash and a probe.
    if !headers
        .keys()
        .any(|name| hop_by_hop(name.as_str()).is_some())
    {
        return;
    }
    // The names that `Connection` lists go too. It is one header almost always (Node's HTTP
    // server sends `Connection: keep-alive` on every answer): then no list is allocated.
    if let Entry::Occupied(connection) = headers.entry(header::CONNECTION) {
        if connection.iter().nth(1).is_none() {
            let listed = connection.remove();
            remove_listed(headers, &listed);
        } else {
            let listed: Vec<HeaderValue> = connection.remove_entry_mult().1.collect();
            for value in &listed {
                remove_listed(headers, value);
            }
        }
    }
    while let Some(name) = headers.keys().find_map(|name| hop_by_hop(name.as_str())) {
        headers.remove(name);
    }
}

/// Removes the headers that a `Connection` value names. Each is looked up as text: no header
/// name is built (nor allocated) for it.
fn remove_listed(headers: &mut HeaderMap, listed: &HeaderValue) {
    for name in listed
        .to_str()
        .into_iter()
        .flat_map(|names| names.split(','))
        .map(str::trim)
        // A hop-by-hop name (`keep-alive`, the usual one) goes with the others in one pass:
        // only other names are parsed and looked up here.
        .filter(|name| !is_hop_by_hop_text(name))
    {
        headers.remove(name);
    }
}

/// The headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The hop-by-hop header that a lower-case `name` is, as a static name: removed by it, the
/// message's own name is not copied (a name that is not a standard one would be allocated).
/// Told apart by its text (a match by length, then bytes), not by nine comparisons of names.
fn hop_by_hop(name: &str) -> Option<&'static HeaderName> {
    let index = match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    HOP_BY_HOP.get(index)
}

/// Whether a name as sent (in any case) is one of the hop-by-hop headers.
fn is_hop_by_hop_text(name: &str) -> bool {
    let mut lower = [0u8; 24];
    match lower.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).is_ok_and(|name| hop_by_hop(name).is_some())
        }
        None => false,
    }
}

/// Appends `value` to a comma-separated header, keeping what the client sent (when it is text);
/// when the client sent none, `value` itself goes, not a copy.
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        Entry::Vacant(slot) => {
            slot.insert(value);
        }
        Entry::Occupied(mut slot) => match slot.get().to_str() {
            Ok(existing) if !existing.trim().is_empty() => {
                let mut joined = Vec::with_capacity(existing.len() + 2 + value.len());
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    slot.insert(v);
                }
            }
            _ => {
                slot.insert(value);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        // A second `Connection` header, naming a header in capitals.
        h.append(header::CONNECTION, HeaderValue::from_static("X-Other-Hop"));
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.insert("x-other-hop", HeaderValue::from_static("1"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("proxy-authorization", HeaderValue::from_static("x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn kept_headers_keep_every_value_in_order() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("X-Listed"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.append("x-listed", HeaderValue::from_static("1"));
        h.append("x-listed", HeaderValue::from_static("2"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.append(header::VARY, HeaderValue::from_static("accept"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("c=3"));
        h.append(header::VARY, HeaderValue::from_static("origin"));
        strip_hop_by_hop(&mut h);
        let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3"]);
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["accept", "origin"]);
        assert_eq!(h.len(), 5, "{h:?}");
        // Nothing hop-by-hop: untouched.
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        let names = [
            header::CONNECTION,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            header::PROXY_AUTHENTICATE,
            header::PROXY_AUTHORIZATION,
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
        ];
        for name in &names {
            assert_eq!(hop_by_hop(name.as_str()), Some(name), "{name}");
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} was kept");
            assert!(h.contains_key("x-kept"));
        }
        for end_to_end in [header::HOST, header::CONTENT_LENGTH, X_FORWARDED_FOR] {
            assert_eq!(hop_by_hop(end_to_end.as_str()), None, "{end_to_end}");
        }
        // As `Connection` lists them: any case, and no longer than a header name may be.
        for (text, hop) in [
            ("Keep-Alive", true),
            ("TRANSFER-ENCODING", true),
            ("te", true),
            ("x-te", false),
            ("close", false),
            ("", false),
            ("proxy-authorization-and-then-some-more", false),
        ] {
            assert_eq!(is_hop_by_hop_text(text), hop, "{text}");
        }
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append(
            &mut h,
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.1"),
        );
        append(
            &mut h,
            X_FORWARDED_FOR,
            HeaderValue::from_static("127.0.0.1"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        // A blank or non-text value sent by the client is replaced.
        for sent in [&b"  "[..], "\u{e9}".as_bytes()] {
            let mut h = HeaderMap::new();
            h.insert(
                X_FORWARDED_FOR,
                HeaderValue::from_bytes(sent).expect("value"),
            );
            append(
                &mut h,
                X_FORWARDED_FOR,
                HeaderValue::from_static("127.0.0.1"),
            );
            assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        }
    }
}
