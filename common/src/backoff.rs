//! Exponential backoff with jitter, for every retry the binaries make (Stripe's API, the app's
//! notification endpoint): the delay doubles from `base` with each attempt up to `cap`, and is
//! drawn from its upper half, so that retries that failed together do not come back together.

use std::time::Duration;

/// The delay before retry number `attempt` (1 for the first retry): in [d/2, d], where d is
/// `base` × 2^(attempt − 1), at most `cap`.
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let d = base
        .saturating_mul(1 << attempt.clamp(1, 17).saturating_sub(1))
        .min(cap);
    d.mul_f64(0.5 + 0.5 * random_unit())
}

/// A number in [0, 1) (for jitter; not for anything secret).
pub fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_within_its_upper_half() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let d = delay(base, cap, attempt);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
