//! One pass at a time in this process: a scheduled tick or an admin request takes the slot, and
//! gives it back when its guard is dropped, however the pass ends (a panic or a cancelled future
//! included). Across replicas, the pass lock does the same (`pass::lock`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The process's pass slot.
#[derive(Debug, Clone)]
pub struct PassSlot(Arc<Semaphore>);

/// The slot, held; dropping it frees the slot.
pub type Taken = OwnedSemaphorePermit;

impl Default for PassSlot {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(1)))
    }
}

impl PassSlot {
    /// The slot, or `None` while a pass holds it.
    pub fn try_take(&self) -> Option<Taken> {
        self.0.clone().try_acquire_owned().ok()
    }

    /// Waits until no pass holds the slot (shutdown).
    pub async fn free(&self) {
        let _ = self.0.acquire().await;
    }
}
