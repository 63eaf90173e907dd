//! A millisecond clock that is cheap to read, for the time-outs counted in seconds that every
//! request moves (a connection's last progress, a proxied response's last read): the kernel's
//! coarse monotonic clock, read from the vDSO without the time-stamp counter. It advances once per
//! kernel tick (1–10 ms), which those time-outs do not notice.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// Milliseconds on the coarse monotonic clock (since boot; only differences mean anything).
pub fn now_ms() -> u64 {
    let now = clock_gettime(ClockId::MonotonicCoarse);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1_000).saturating_add(millis)
}

/// How long ago `ms` was (zero for a time not yet reached).
pub fn since(ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(ms))
}

/// `ms` as a timer's instant.
pub fn instant(ms: u64) -> tokio::time::Instant {
    let (now, at) = (tokio::time::Instant::now(), now_ms());
    if ms >= at {
        now + Duration::from_millis(ms - at)
    } else {
        now.checked_sub(Duration::from_millis(at - ms))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_forward_with_the_precise_clock() {
        let (start, precise) = (now_ms(), std::time::Instant::now());
        while precise.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let moved = since(start);
        // A tick is at most 10 ms: the coarse clock lags the precise one by less than that.
        assert!(moved >= Duration::from_millis(20), "{moved:?}");
        assert!(
            moved <= precise.elapsed() + Duration::from_millis(10),
            "{moved:?}"
        );
    }

    #[test]
    fn times_map_to_timer_instants() {
        let now = tokio::time::Instant::now();
        let later = instant(now_ms() + 5_000);
        let earlier = instant(now_ms().saturating_sub(5_000));
        let tick = Duration::from_millis(20);
        assert!(
            later >= now + Duration::from_secs(5) - tick
                && later <= now + Duration::from_secs(5) + tick
        );
        assert!(
            earlier + Duration::from_secs(5) >= now - tick
                && earlier + Duration::from_secs(5) <= now + tick
        );
    }
}
