//! The open connections of a listener, for its connection cap: when the cap is reached, the one
//! idle the longest (no request in progress; idle since its last request ended, or since accept
//! if it never sent one) is asked to close to make room for a new one. Idleness is read from each
//! connection's [`Activity`] only then, so requests pay nothing for it; the scan is over the open
//! connections, once per connection accepted at the cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::serve::Activity;

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
