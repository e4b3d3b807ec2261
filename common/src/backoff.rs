//! Growing, jittered pauses between tries: each is drawn between half and
//! all of its doubled step, so callers turned away together do not come
//! back together.

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// The pause after the `round`th refusal (from 0): `first` doubled per
/// round up to `max`, then drawn between half and all of that.
pub fn jittered(first: Duration, round: u32, max: Duration) -> Duration {
    let cap = first.saturating_mul(1 << round.min(16)).min(max);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    cap.mul_f64(0.5 + 0.5 * (random as f64 / u64::MAX as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_the_cap_and_stay_in_its_upper_half() {
        let (first, max) = (Duration::from_millis(50), Duration::from_secs(1));
        for _ in 0..100 {
            let p = jittered(first, 0, max);
            assert!(p >= first / 2 && p <= first, "{p:?}");
            let p = jittered(first, 9, max);
            assert!(p >= max / 2 && p <= max, "{p:?}");
        }
    }
}
