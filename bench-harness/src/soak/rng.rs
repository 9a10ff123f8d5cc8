//! A small seeded random number generator (SplitMix64), so that a soak is
//! reproducible from its `--seed`: the same seed makes every client choose
//! the same kinds, sizes and malformations in the same order. (The timing,
//! and so the interleaving with upstream restarts, still varies.)

/// SplitMix64 (Steele, Lea and Flood 2014): one 64-bit state, good
/// statistical quality for choosing traffic, not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0). The modulo bias is below
    /// n / 2^64: irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `low..=high` (`low` if the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            low + self.below(high - low + 1)
        }
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let random = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&random[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..10).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn ranges_stay_inside_their_bounds_and_reach_both_ends() {
        let mut rng = Rng::new(1);
        let draws: Vec<u64> = (0..10_000).map(|_| rng.range(3, 7)).collect();
        assert!(draws.iter().all(|&x| (3..=7).contains(&x)));
        assert!(draws.contains(&3) && draws.contains(&7));
        assert_eq!(rng.range(5, 5), 5);
        assert_eq!(rng.range(9, 2), 9);
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn fill_covers_lengths_that_are_not_multiples_of_eight() {
        let mut rng = Rng::new(9);
        let mut bytes = [0u8; 13];
        rng.fill(&mut bytes);
        // 13 zero bytes from a good generator: 2^-104.
        assert!(bytes.iter().any(|&b| b != 0));
    }
}
