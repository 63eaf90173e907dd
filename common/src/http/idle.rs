//! The connections of a listener with no request in progress, in the order they became idle: at
//! the connection cap, the one idle the longest is asked to close to make room for a new one.

use std::sync::Arc;

/// The connections of one listener with no request in progress, in the order they became idle:
/// at the cap, the first is asked to close.
#[derive(Default)]
pub struct IdleConnections {
    inner: std::sync::Mutex<IdleQueue>,
}

#[derive(Default)]
struct IdleQueue {
    next_turn: u64,
    by_turn: std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleQueue> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a connection that just became idle; its turn, to withdraw it with.
    pub fn enqueue(&self, evict: &Arc<tokio::sync::Notify>) -> u64 {
        let mut queue = self.lock();
        let turn = queue.next_turn;
        queue.next_turn += 1;
        queue.by_turn.insert(turn, evict.clone());
        turn
    }

    pub fn withdraw(&self, turn: u64) {
        self.lock().by_turn.remove(&turn);
    }

    /// Asks the connection idle the longest to close; false when none is idle.
    pub fn evict_longest(&self) -> bool {
        match self.lock().by_turn.pop_first() {
            Some((_, evict)) => {
                evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// No turn: the connection is not in the idle queue.
pub const NOT_QUEUED: u64 = u64::MAX;
