//! The open connections of a listener and what each is doing ([`Activity`]): whether a request
//! ever arrived, how many are in progress, when the last one started or ended. It decides a
//! connection's time-outs, and the connection cap: when the cap is reached, the one idle the
//! longest (no request in progress; idle since its last request ended, or since accept if it never
//! sent one) is asked to close to make room for a new one. Idleness is read only then, so requests
//! pay nothing for it; the scan is over the open connections, once per connection accepted at the
//! cap. The cap's slots and the open connections make a listener's [`Capacity`], one for all the
//! threads that serve it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;

use super::serve::Limits;
use super::{Body, BoxError, coarse};

/// The connection cap of a listener and its open connections, shared by the threads serving it
/// (one is evicted to make room for another accepted on any of them).
#[derive(Clone)]
pub struct Capacity {
    /// One permit per open connection (`Limits::max_connections`).
    pub(super) slots: Arc<Semaphore>,
    pub(super) open: Arc<OpenConnections>,
}

impl Capacity {
    pub fn new(limits: &Limits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            open: Arc::new(OpenConnections::default()),
        }
    }
}

/// Every open connection of one listener.
#[derive(Default)]
pub struct OpenConnections {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl OpenConnections {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection; its id, to remove it with.
    pub fn register(&self, activity: Arc<Activity>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        id
    }

    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle the longest (and not asked already) to close; false when none is
    /// idle.
    pub fn evict_longest_idle(&self) -> bool {
        let open = self.lock();
        // Idle since the same tick of the coarse clock: the one accepted first.
        let longest = open
            .iter()
            .filter_map(|(id, a)| a.idle_since().map(|since| ((since, *id), a)))
            .min_by_key(|(key, _)| *key);
        match longest {
            Some((_, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }
}

/// A connection whose every request in progress is a response that its peer has not read for
/// this long is blocked on the peer: it counts as idle at the connection cap.
const BLOCKED_AFTER: Duration = Duration::from_secs(1);

/// Why a connection's time ran out.
pub(super) enum Expired {
    /// No request head within `header_read_timeout` of accept.
    NoRequest,
    /// No request in progress for `idle_timeout` (h2), or no complete head within
    /// `header_read_timeout` of the last answer (HTTP/1).
    Idle,
    /// Every request in progress is a response its peer has not read for `stall_timeout` (a
    /// flow-control window kept at zero, a download never read).
    Stalled,
}

/// What a connection is doing: whether a request ever arrived, how many are in progress (and how
/// many of those are responses handed to the peer), and when it last made progress: a request
/// started or ended, or a response body was read by the protocol to be sent.
pub(super) struct Activity {
    accepted: Instant,
    pub any_request: AtomicBool,
    /// Its requests are h2 streams: between them it waits for `idle_timeout`, not for a head.
    h2: AtomicBool,
    in_progress: AtomicUsize,
    /// Requests in progress whose handler has answered: their bodies are being sent.
    responding: AtomicUsize,
    /// The last progress (accept, to begin with), on the coarse clock: requests move it several
    /// times each, and read no precise clock for it.
    last_ms: AtomicU64,
    /// Asked to close to make room at the connection cap.
    evicted: AtomicBool,
    pub evict: tokio::sync::Notify,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            any_request: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            in_progress: AtomicUsize::new(0),
            responding: AtomicUsize::new(0),
            last_ms: AtomicU64::new(coarse::now_ms()),
            evicted: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        }
    }

    /// The last progress, on the coarse clock.
    fn last_progress(&self) -> u64 {
        self.last_ms.load(Ordering::Acquire)
    }

    /// Every request in progress is a response that has not moved for `after`.
    fn blocked_on_peer(&self, after: Duration) -> bool {
        let in_progress = self.in_progress.load(Ordering::Acquire);
        in_progress > 0
            && self.responding.load(Ordering::Acquire) >= in_progress
            && coarse::since(self.last_progress()) >= after
    }

    /// Since when the connection has been idle: no request in progress, or every one blocked on
    /// the peer; `None` while a request is making progress, or once evicted.
    pub(super) fn idle_since(&self) -> Option<u64> {
        if self.evicted.load(Ordering::Acquire) {
            return None;
        }
        let idle =
            self.in_progress.load(Ordering::Acquire) == 0 || self.blocked_on_peer(BLOCKED_AFTER);
        idle.then(|| self.last_progress())
    }

    /// Asks the connection to close (a request that starts meanwhile is finished first).
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    pub(super) fn touch(&self) {
        self.last_ms.store(coarse::now_ms(), Ordering::Release);
    }

    pub(super) fn request_started(self: &Arc<Self>, version: http::Version) -> InProgress {
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Ordering::Release);
        }
        self.any_request.store(true, Ordering::Release);
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InProgress {
            activity: self.clone(),
            responding: false,
        }
    }

    /// When the first request head (and, on HTTPS, the TLS handshake before it) must be in.
    pub(super) fn head_deadline(&self, limits: &Limits) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.accepted) + limits.header_read_timeout
    }

    /// When to look again: the head deadline, or the idle or stall time-out after the last
    /// progress; never in the past (a request still being handled is looked at again later).
    pub(super) fn deadline(&self, limits: &Limits) -> tokio::time::Instant {
        let base = tokio::time::Instant::from_std(self.accepted);
        if !self.any_request.load(Ordering::Acquire) {
            // Looked at again after a stall time-out at the latest: a first request may have
            // started meanwhile, and with it the stall clock.
            let recheck = tokio::time::Instant::now() + limits.stall_timeout;
            return (base + limits.header_read_timeout).min(recheck);
        }
        let now = tokio::time::Instant::now();
        let last = coarse::instant(self.last_progress());
        let idle_wait = self.idle_wait(limits);
        let at = match self.in_progress.load(Ordering::Acquire) {
            0 => last + idle_wait,
            // Looked at again by the time it could have been idle for its wait, since the
            // requests in progress may end meanwhile.
            _ => (last + limits.stall_timeout).min(now + idle_wait),
        };
        at.max(now + idle_wait.min(limits.stall_timeout).min(BLOCKED_AFTER))
    }

    pub(super) fn expired(&self, limits: &Limits) -> Option<Expired> {
        if !self.any_request.load(Ordering::Acquire) {
            return (self.accepted.elapsed() >= limits.header_read_timeout)
                .then_some(Expired::NoRequest);
        }
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return self
                .blocked_on_peer(limits.stall_timeout)
                .then_some(Expired::Stalled);
        }
        (coarse::since(self.last_progress()) >= self.idle_wait(limits)).then_some(Expired::Idle)
    }

    /// How long it may wait with no request in progress: an h2 connection `idle_timeout`; an
    /// HTTP/1 one no longer than `header_read_timeout`, since its next head counts from the
    /// last answer.
    fn idle_wait(&self, limits: &Limits) -> Duration {
        if self.h2.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.idle_timeout.min(limits.header_read_timeout)
        }
    }
}

/// A request in progress: its handler runs, then (once it has answered) its response body is
/// sent. Its end (the response body finished or dropped) is recorded on drop.
pub(super) struct InProgress {
    activity: Arc<Activity>,
    responding: bool,
}

impl InProgress {
    /// The handler has answered: from now on the request waits on the peer to take its body.
    pub(super) fn responding(&mut self) {
        if !self.responding {
            self.responding = true;
            self.activity.responding.fetch_add(1, Ordering::AcqRel);
            self.activity.touch();
        }
    }

    /// The protocol asked for more of the body: the peer is taking it.
    pub(super) fn progress(&self) {
        self.activity.touch();
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.responding {
            self.activity.responding.fetch_sub(1, Ordering::AcqRel);
        }
        self.activity.in_progress.fetch_sub(1, Ordering::AcqRel);
        self.activity.touch();
    }
}

/// A response body being sent: each time the protocol asks it for more, the connection made
/// progress; it holds its request in progress until it is finished or dropped.
pub(super) struct Watched {
    body: Body,
    request: InProgress,
}

impl Watched {
    pub(super) fn new(body: Body, mut request: InProgress) -> Self {
        request.responding();
        Self { body, request }
    }
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.request.progress();
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Takes a connection out of its listener's open connections when it ends, however it ends.
pub(super) struct Registered {
    pub open: Arc<OpenConnections>,
    pub id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.unregister(self.id);
    }
}
