//! The proxy's in-flight cap ([`Cap`]): a count of the requests in flight, taken without waiting
//! (past the cap the answer is 503 at once, so nothing ever queues for it) and given back when the
//! request's [`Slot`] is dropped. A count, not a semaphore: a semaphore's release takes its
//! waiters' lock, and nobody waits here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` requests in flight.
#[derive(Debug)]
pub(super) struct Cap {
    taken: AtomicUsize,
    max: usize,
}

/// One request's place under the cap, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot(Arc<Cap>);

impl Cap {
    /// A cap of `max` requests (at least one).
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            taken: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Requests in flight now.
    pub(super) fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// A place under the cap, unless every one is taken. The count never passes the cap, even for
    /// a moment (what [`Cap::taken`] reports).
    pub(super) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_slots_and_each_comes_back_when_dropped() {
        let cap = Cap::new(2);
        let first = cap.try_take().expect("first");
        let second = cap.try_take().expect("second");
        assert!(cap.try_take().is_none(), "past the cap");
        assert_eq!(cap.taken(), 2);
        drop(first);
        assert_eq!(cap.taken(), 1);
        let third = cap.try_take().expect("a freed place");
        assert!(cap.try_take().is_none());
        drop((second, third));
        assert_eq!(cap.taken(), 0);
        assert_eq!(
            Cap::new(0).max(),
            1,
            "a cap of zero would refuse everything"
        );
    }

    #[test]
    fn threads_never_take_more_than_the_cap() {
        let cap = Cap::new(3);
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cap, most) = (cap.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(slot) = cap.try_take() {
                            most.fetch_max(cap.taken(), Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert!(most.load(Ordering::Relaxed) <= 3);
        assert_eq!(cap.taken(), 0);
    }
}
