//! The global budget of webhook body bytes in flight (`EDGE_BODY_BUDGET_BYTES`), across every
//! connection, HTTP/1 and h2 alike. A body reserves its declared `Content-Length` up front, or its
//! bytes as they arrive. When the budget is full, the body that has been arriving the longest is
//! evicted (answered 503, `overloaded`) to make room: a real webhook arrives in milliseconds, so
//! bodies trickled on purpose are the ones that go, and webhooks keep flowing under the flood.
//! Only when nothing else can be evicted is the newcomer refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The budget shared by every webhook handler.
#[derive(Debug)]
pub struct BodyBudget {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: usize,
    next_ticket: u64,
    /// Bodies still arriving, oldest first (tickets grow).
    arriving: BTreeMap<u64, Holder>,
}

#[derive(Debug)]
struct Holder {
    bytes: usize,
    evicted: Arc<Eviction>,
}

#[derive(Debug, Default)]
struct Eviction {
    done: AtomicBool,
    notify: Notify,
}

/// The budget is full and nothing older can make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

impl BodyBudget {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new body, holding nothing yet.
    pub fn open(&self) -> Reservation<'_> {
        let mut inner = self.lock();
        let ticket = inner.next_ticket;
        inner.next_ticket += 1;
        let evicted = Arc::new(Eviction::default());
        inner.arriving.insert(
            ticket,
            Holder {
                bytes: 0,
                evicted: evicted.clone(),
            },
        );
        Reservation {
            budget: self,
            ticket,
            bytes: 0,
            evicted,
            settled: false,
        }
    }
}

/// One body's share of the budget, released on drop.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    ticket: u64,
    bytes: usize,
    evicted: Arc<Eviction>,
    /// The body has arrived: it can no longer be evicted.
    settled: bool,
}

impl Reservation<'_> {
    /// Reserves `n` more bytes, evicting the oldest bodies still arriving if the budget is full.
    pub fn grow(&mut self, n: usize) -> Result<(), Overloaded> {
        if self.is_evicted() {
            return Err(Overloaded);
        }
        let capacity = self.budget.capacity;
        let mut inner = self.budget.lock();
        while inner.used + n > capacity {
            let oldest = inner
                .arriving
                .iter()
                .find(|(t, h)| **t != self.ticket && h.bytes > 0)
                .map(|(t, _)| *t);
            let Some(victim) = oldest else {
                return Err(Overloaded);
            };
            if let Some(h) = inner.arriving.remove(&victim) {
                inner.used -= h.bytes;
                h.evicted.done.store(true, Ordering::Release);
                h.evicted.notify.notify_one();
            }
        }
        inner.used += n;
        self.bytes += n;
        if let Some(h) = inner.arriving.get_mut(&self.ticket) {
            h.bytes = self.bytes;
        }
        Ok(())
    }

    /// The body has arrived whole: it keeps its bytes until dropped, and is never evicted.
    pub fn settle(&mut self) {
        self.settled = true;
        self.budget.lock().arriving.remove(&self.ticket);
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.done.load(Ordering::Acquire)
    }

    /// What resolves when this body is evicted to make room for others.
    pub fn evicted_handle(&self) -> Evicted {
        Evicted(self.evicted.clone())
    }
}

/// Waits for a body's eviction.
#[derive(Debug, Clone)]
pub struct Evicted(Arc<Eviction>);

impl Evicted {
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.0.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut inner = self.budget.lock();
        if self.is_evicted() {
            return; // its bytes were given back when it was evicted
        }
        if !self.settled {
            inner.arriving.remove(&self.ticket);
        }
        inner.used -= self.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_arriving_body_makes_room() {
        let budget = BodyBudget::new(100);
        let mut old = budget.open();
        old.grow(60).expect("fits");
        let mut settled = budget.open();
        settled.grow(30).expect("fits");
        settled.settle();
        let mut new = budget.open();
        new.grow(50).expect("the old arriving body is evicted");
        assert!(old.is_evicted());
        assert!(!settled.is_evicted(), "a body that has arrived stays");
        assert_eq!(budget.used(), 80);
        drop(old);
        assert_eq!(
            budget.used(),
            80,
            "an evicted body gave its bytes back once"
        );
        let mut huge = budget.open();
        assert_eq!(huge.grow(200), Err(Overloaded), "nothing can make room");
        drop((new, settled, huge));
        assert_eq!(budget.used(), 0);
    }
}
