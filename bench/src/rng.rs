//! The one random-number generator of every workload: Marsaglia's xorshift32,
//! exactly as the C benchmarks use it (`x ^= x << 13; x ^= x >> 17;
//! x ^= x << 5` on a `u32` state).

/// xorshift32. The state is never zero (zero is a fixed point), so a zero
/// seed is replaced by [`Xorshift32::ZERO_SEED_REPLACEMENT`].
#[derive(Clone, Debug)]
pub struct Xorshift32 {
    state: u32,
}

impl Xorshift32 {
    /// The state used when asked for seed 0 (which would repeat 0 forever).
    pub const ZERO_SEED_REPLACEMENT: u32 = 0x9E37_79B9;

    /// A generator whose first [`next`](Self::next) is the step after `seed`.
    pub fn new(seed: u32) -> Self {
        let state = if seed == 0 {
            Self::ZERO_SEED_REPLACEMENT
        } else {
            seed
        };
        Self { state }
    }

    /// Advances the state and returns it.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)] // not an Iterator: never ends, hot loop
    pub fn next(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 1, by hand:
    /// x = 1; x ^= 1 << 13 → 0x2001; x ^= 0x2001 >> 17 (= 0) → 0x2001;
    /// x ^= 0x2001 << 5 (= 0x40020) → 0x42021 = 270369.
    /// Next, from 0x42021: x ^= x << 13 (0x84042000) → 0x84000021;
    /// x ^= x >> 17 (0x4200) → 0x84004221; x ^= x << 5 (0x80084420, u32)
    /// → 0x04080601 = 67634689.
    #[test]
    fn first_values_for_seed_1_match_hand_computation() {
        let mut r = Xorshift32::new(1);
        assert_eq!(r.next(), 0x0004_2021);
        assert_eq!(r.next(), 0x0408_0601);
    }

    /// Marsaglia's paper ("Xorshift RNGs", 2003) lists the 13/17/5 generator
    /// starting from y = 2463534242; its first output is 723471715.
    #[test]
    fn matches_marsaglia_reference_value() {
        let mut r = Xorshift32::new(2_463_534_242);
        assert_eq!(r.next(), 723_471_715);
    }

    #[test]
    fn zero_seed_does_not_stick_at_zero() {
        let mut r = Xorshift32::new(0);
        assert_ne!(r.next(), 0);
    }
}
