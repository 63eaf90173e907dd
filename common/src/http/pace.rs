//! The request pacer of the admin listeners: start times handed out `1/rate` apart, so that past
//! the rate a request waits its turn (a flood costs its sender time, not the webhooks' CPU).

use std::time::Duration;

/// Requests a paced listener starts at once after a quiet spell.
pub const BURST: u32 = 50;

/// Hands out start times `1/rate` apart: a request past the rate waits for its slot.
pub struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(rate: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits until this request's slot. After a quiet spell, [`BURST`] go at once.
    pub async fn turn(&self) {
        let now = tokio::time::Instant::now();
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let earliest = now.checked_sub(self.interval * BURST).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.interval;
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }
}
