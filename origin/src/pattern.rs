//! The deterministic body pattern and the hash every test compares against.
//!
//! Every generated body is a prefix of one infinite byte sequence, so a test
//! can check a download of any size without the origin telling it anything:
//! byte `i` is always [`pattern_byte(i)`](pattern_byte).
//!
//! The sequence repeats every 251 bytes. 251 is prime on purpose: buffer
//! sizes (4096, 8192, 65536, ...) never divide it, so a proxy that drops,
//! repeats or reorders one buffer's worth of bytes produces a body that no
//! longer matches. With a period of, say, 256, losing exactly one 8 KiB
//! buffer would leave a body that still *looks* right.
//!
//! One cycle is 250 alphanumerics and a newline, so `curl` output is readable
//! (250-column lines) and a shifted offset shows up as a ragged line.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// Length of one pattern cycle: a prime, so no common buffer size divides it.
pub(crate) const PATTERN_PERIOD: usize = 251;

/// One cycle: 250 alphanumerics then `\n`.
const PATTERN_CYCLE: [u8; PATTERN_PERIOD] = {
    const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut cycle = [b'\n'; PATTERN_PERIOD];
    let mut i = 0;
    while i < PATTERN_PERIOD - 1 {
        cycle[i] = ALNUM[i % ALNUM.len()];
        i += 1;
    }
    cycle
};

/// How many whole cycles the pre-built block holds (256 * 251 = 64,256 bytes).
const BLOCK_CYCLES: usize = 256;

/// The pattern, pre-built once: responses are written as slices of this block
/// (no per-request allocation, no per-byte work on the hot path).
static PATTERN_BLOCK: LazyLock<Box<[u8]>> =
    LazyLock::new(|| pattern(PATTERN_PERIOD * BLOCK_CYCLES).into_boxed_slice());

/// The deterministic body pattern: byte `i` of every generated body.
pub fn pattern_byte(i: u64) -> u8 {
    // The remainder is < 251, so the cast cannot truncate.
    PATTERN_CYCLE[(i % PATTERN_PERIOD as u64) as usize]
}

/// The first `len` bytes of the pattern: `pattern_byte(0..len)`.
pub fn pattern(len: usize) -> Vec<u8> {
    PATTERN_CYCLE.iter().copied().cycle().take(len).collect()
}

/// Lowercase hex SHA-256 of `data` (the same function the echo uses).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A slice of the pattern that starts at body offset `offset`, at most `max`
/// bytes long and never empty when `max > 0` (at least 64,005 bytes are
/// available from any starting point).
pub(crate) fn pattern_slice(offset: u64, max: u64) -> &'static [u8] {
    let block: &'static [u8] = &PATTERN_BLOCK;
    // The block is a whole number of cycles, so starting at `offset % period`
    // inside it continues the sequence exactly.
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    let available = &block[start..];
    let take = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .min(available.len());
    &available[..take]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_repeats_every_251_bytes_and_ends_cycles_with_newline() {
        let p = pattern(3 * PATTERN_PERIOD);
        assert_eq!(p[..PATTERN_PERIOD], p[PATTERN_PERIOD..2 * PATTERN_PERIOD]);
        assert_eq!(p[PATTERN_PERIOD - 1], b'\n');
        assert_eq!(&p[..12], b"0123456789ab");
        for (i, &b) in p.iter().enumerate() {
            assert_eq!(b, pattern_byte(i as u64));
        }
    }

    #[test]
    fn pattern_slice_continues_the_sequence_from_any_offset() {
        for offset in [0u64, 1, 250, 251, 252, 8192, 1 << 40] {
            let s = pattern_slice(offset, 1000);
            assert_eq!(s.len(), 1000);
            for (k, &b) in s.iter().enumerate() {
                assert_eq!(b, pattern_byte(offset + k as u64), "offset {offset} + {k}");
            }
        }
        assert!(pattern_slice(250, u64::MAX).len() >= 64_005);
        assert!(pattern_slice(7, 0).is_empty());
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
