//! Fixed-capacity byte buffers with read and write cursors, lent to
//! connections by a per-loop pool.
//!
//! Why not a `Vec<u8>` that grows: a buffer that grows is a buffer a peer
//! can make grow. Every buffer here has one capacity, fixed when the loop
//! starts, so the most memory a connection can hold is four of them, whatever
//! its peers do. A full buffer is not an error; it is *backpressure*: the
//! connection stops reading from the socket that fills it, the kernel's
//! receive buffer fills in turn, and TCP tells the sender to wait.
//!
//! Why a pool: a keep-alive connection spends most of its life waiting for
//! the next request with nothing buffered. It gives its buffers back to the
//! loop's [`BufferPool`] while it waits (`Buffer::release`) and borrows them
//! again when bytes arrive (`Buffer::ensure`), so 10,000 idle connections
//! cost 10,000 small structs, not 10,000 × 256 KiB. Buffers are recycled,
//! never allocated per event.

use std::io::{self, Read, Write};

/// Bytes read from one socket and not yet used, or bytes waiting to be
/// written to one: `bytes[start..end]`.
///
/// A buffer without storage (a connection that is waiting) has capacity 0;
/// [`Buffer::ensure`] gives it storage from the pool.
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: Box<[u8]>,
    /// First byte not yet consumed.
    start: usize,
    /// One past the last byte filled.
    end: usize,
}

impl Buffer {
    /// An empty buffer with no storage.
    pub fn new() -> Buffer {
        Buffer::default()
    }

    /// A buffer with storage of its own (for tests).
    #[cfg(test)]
    pub fn with_capacity(capacity: usize) -> Buffer {
        Buffer {
            bytes: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Borrows storage from `pool` if this buffer has none.
    pub fn ensure(&mut self, pool: &mut BufferPool) {
        if self.bytes.is_empty() {
            self.bytes = pool.take();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the storage back to `pool` if the buffer is empty (a buffer
    /// holding bytes keeps them).
    pub fn release(&mut self, pool: &mut BufferPool) {
        if self.is_empty() && !self.bytes.is_empty() {
            pool.give(std::mem::take(&mut self.bytes));
            self.start = 0;
            self.end = 0;
        }
    }

    /// The bytes held.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// How many more bytes fit (after moving the held bytes to the front).
    pub fn space(&self) -> usize {
        self.bytes.len() - self.len()
    }

    /// Marks the first `n` held bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            // Empty: start over at the front, so the next read has the
            // whole capacity without a copy.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Forgets everything held.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Appends `src` if it fits; returns false (and appends nothing) if not.
    #[must_use]
    pub fn extend(&mut self, src: &[u8]) -> bool {
        if src.len() > self.space() {
            return false;
        }
        if self.bytes.len() - self.end < src.len() {
            self.compact();
        }
        self.bytes[self.end..self.end + src.len()].copy_from_slice(src);
        self.end += src.len();
        true
    }

    /// Moves every held byte into `sink`, which must be empty and able to
    /// hold them, without copying: the two buffers trade storage. This is
    /// what a relay does most of the time (read a buffer full of body,
    /// pass it on whole), so the common case costs a pointer swap instead of
    /// a 64 KiB `memcpy`. Returns how many bytes moved.
    pub fn hand_over(&mut self, sink: &mut Buffer) -> usize {
        debug_assert!(sink.is_empty() && sink.space() >= self.len());
        let n = self.len();
        std::mem::swap(self, sink);
        n
    }

    /// One `read` from `source` into the free space. `Ok(0)` means end of
    /// stream, so this must not be called on a full buffer (it returns an
    /// error rather than a misleading `Ok(0)`).
    pub fn read_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.space() == 0 {
            return Err(io::Error::other("read into a full buffer"));
        }
        if self.end == self.bytes.len() {
            self.compact();
        }
        let n = source.read(&mut self.bytes[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// One `write` of the held bytes to `sink`; the bytes written are
    /// consumed. A short write leaves the rest for the next call.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let n = sink.write(self.data())?;
        self.consume(n);
        Ok(n)
    }

    /// Moves the held bytes to the front, so the free space is contiguous.
    fn compact(&mut self) {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// The loop's free buffers, all of one size.
#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    free: Vec<Box<[u8]>>,
    /// At most this many free buffers are kept; more are freed, so a burst
    /// of busy connections does not pin its peak memory forever.
    max_free: usize,
    /// Where lingering connections read bytes they throw away.
    scratch: Box<[u8]>,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes, keeping at most `max_free` spare.
    pub fn new(size: usize, max_free: usize) -> BufferPool {
        BufferPool {
            size,
            free: Vec::new(),
            max_free,
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// The capacity of every buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    fn take(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0; self.size].into_boxed_slice())
    }

    fn give(&mut self, bytes: Box<[u8]>) {
        if self.free.len() < self.max_free && bytes.len() == self.size {
            self.free.push(bytes);
        }
    }

    /// A buffer whose contents nobody keeps (bytes read only to be discarded).
    pub fn scratch(&mut self) -> &mut [u8] {
        &mut self.scratch
    }

    /// Spare buffers held (for tests and statistics).
    #[cfg(test)]
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_consume_and_compact_keep_the_bytes_in_order() {
        let mut b = Buffer::with_capacity(8);
        assert!(b.extend(b"abcdef"));
        b.consume(4);
        assert_eq!(b.data(), b"ef");
        assert_eq!(b.space(), 6);
        // Does not fit at the tail, fits after compaction.
        assert!(b.extend(b"ghijkl"));
        assert_eq!(b.data(), b"efghijkl");
        assert!(!b.extend(b"m"), "a full buffer refuses more");
        b.consume(8);
        assert!(b.is_empty());
        assert_eq!(b.space(), 8);
    }

    #[test]
    fn reads_never_exceed_the_capacity_and_short_writes_keep_the_rest() {
        let mut b = Buffer::with_capacity(4);
        let mut source: &[u8] = b"0123456789";
        assert_eq!(b.read_from(&mut source).unwrap(), 4);
        assert!(b.read_from(&mut source).is_err(), "full: no read");
        let mut sink = [0u8; 3];
        let mut out: &mut [u8] = &mut sink;
        assert_eq!(b.write_to(&mut out).unwrap(), 3);
        assert_eq!(b.data(), b"3");
        assert_eq!(&sink, b"012");
    }

    #[test]
    fn hand_over_moves_the_bytes_without_copying_them() {
        let mut a = Buffer::with_capacity(8);
        let mut b = Buffer::with_capacity(8);
        assert!(a.extend(b"abc"));
        let storage = a.data().as_ptr();
        assert_eq!(a.hand_over(&mut b), 3);
        assert_eq!(b.data(), b"abc");
        assert_eq!(b.data().as_ptr(), storage, "the same memory, not a copy");
        assert!(a.is_empty());
        assert_eq!(a.space(), 8);
    }

    #[test]
    fn idle_buffers_go_back_to_the_pool_and_are_reused() {
        let mut pool = BufferPool::new(16, 4);
        let mut b = Buffer::new();
        assert_eq!(b.space(), 0, "no storage until ensured");
        b.ensure(&mut pool);
        assert_eq!(b.space(), 16);
        assert!(b.extend(b"x"));
        b.release(&mut pool);
        assert_eq!(pool.spare(), 0, "a buffer holding bytes keeps them");
        b.consume(1);
        b.release(&mut pool);
        assert_eq!(pool.spare(), 1);
        let mut c = Buffer::new();
        c.ensure(&mut pool);
        assert_eq!(pool.spare(), 0, "the spare buffer was reused");
    }
}
