//! loadgen's open-loop schedule: request i is due at start + i / rate, and is released to the
//! pool's next free connection once due; its latency counts from the due time. Releases wake on
//! tokio's timer, which fires on whole milliseconds, so a request may leave up to 1 ms after its
//! due time, and that wait counts. A wake-up at each due time itself (a timerfd) was measured and
//! not kept: on two shared cores it cost the client about 8 µs and the edge 16 µs more per request
//! (arrivals one by one, instead of a few per millisecond), and the tail did not shorten.
//! Everything runs on loadgen's one thread: no wake-up crosses threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The requests released and not yet taken, shared by the releasing task and the connections.
#[derive(Clone)]
pub struct Schedule {
    shared: Arc<Shared>,
}

struct Shared {
    /// (index, due time) of the released requests, oldest first.
    released: Mutex<VecDeque<(usize, Instant)>>,
    /// Told once per released request, and to all when the last one is released.
    notify: Notify,
    /// Every request is released.
    done: AtomicBool,
}

impl Schedule {
    /// Starts releasing `count` requests at `rate` per second from now, on a task of its own.
    pub fn start(rate: f64, count: usize) -> Self {
        let shared = Arc::new(Shared {
            released: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            done: AtomicBool::new(false),
        });
        let interval = 1.0 / rate.max(0.001);
        let start = Instant::now();
        let due = move |i: usize| start + Duration::from_secs_f64(i as f64 * interval);
        tokio::spawn(release(shared.clone(), count, due));
        Self { shared }
    }

    /// The next released request, waiting for one; `None` once all are taken.
    pub async fn next(&self) -> Option<(usize, Instant)> {
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so that no release between the look and the wait is
            // missed.
            notified.as_mut().enable();
            if let Some(next) = self.shared.queue().pop_front() {
                return Some(next);
            }
            if self.shared.done.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(usize, Instant)>> {
        self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Releases every request due by now, then sleeps until the next is due.
async fn release(shared: Arc<Shared>, count: usize, due: impl Fn(usize) -> Instant) {
    let mut next = 0;
    while next < count {
        let now = Instant::now();
        while next < count && due(next) <= now {
            shared.queue().push_back((next, due(next)));
            shared.notify.notify_one();
            next += 1;
        }
        if next < count {
            tokio::time::sleep_until(due(next).into()).await;
        }
    }
    shared.done.store(true, Ordering::Release);
    shared.notify.notify_waiters();
}
