//! The open connections of a listener and what each is doing ([`Activity`]): whether a request
//! ever arrived, how many are in progress, when the last one started or ended. It decides a
//! connection's time-outs, and the connection cap: when the cap is reached, the one idle the
//! longest (no request in progress; idle since its last request ended, or since accept if it never
//! sent one) is asked to close to make room for a new one. Idleness is read only then, so requests
//! pay nothing for it; the scan is over the open connections, once per connection accepted at the
//! cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::serve::Limits;

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
        let longest = open
            .values()
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, activity)) => {
                activity.evict();
                true
            }
            None => false,
        }
    }
}

/// Why a connection's time ran out.
pub(super) enum Expired {
    /// No request head within `header_read_timeout` of accept.
    NoRequest,
    /// No request in progress for `idle_timeout`.
    Idle,
}

/// What a connection is doing: whether a request ever arrived, how many are in progress, and
/// when it last started or finished one.
pub(super) struct Activity {
    accepted: Instant,
    pub any_request: AtomicBool,
    in_progress: AtomicUsize,
    /// Milliseconds after `accepted` of the last start or end of a request.
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
            in_progress: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        }
    }

    /// Since when no request has been in progress; `None` while one is, or once evicted.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        if self.in_progress.load(Ordering::Acquire) > 0 || self.evicted.load(Ordering::Acquire) {
            return None;
        }
        Some(self.accepted + Duration::from_millis(self.last_ms.load(Ordering::Acquire)))
    }

    /// Asks the connection to close (a request that starts meanwhile is finished first).
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    pub(super) fn touch(&self) {
        self.last_ms.store(
            self.accepted.elapsed().as_millis() as u64,
            Ordering::Release,
        );
    }

    pub(super) fn request_started(self: &Arc<Self>) -> InProgress {
        self.any_request.store(true, Ordering::Release);
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InProgress(self.clone())
    }

    /// When to look again.
    pub(super) fn deadline(&self, limits: &Limits) -> tokio::time::Instant {
        let base = tokio::time::Instant::from_std(self.accepted);
        if !self.any_request.load(Ordering::Acquire) {
            return base + limits.header_read_timeout;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        base + last + limits.idle_timeout
    }

    pub(super) fn expired(&self, limits: &Limits) -> Option<Expired> {
        if !self.any_request.load(Ordering::Acquire) {
            return (self.accepted.elapsed() >= limits.header_read_timeout)
                .then_some(Expired::NoRequest);
        }
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        (self.accepted.elapsed() >= last + limits.idle_timeout).then_some(Expired::Idle)
    }
}

/// A request in progress; its end (the response body finished or dropped) is recorded on drop.
pub(super) struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
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
