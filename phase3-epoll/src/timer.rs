//! The loop's timers: a min-heap of deadlines that sets `epoll_wait`'s
//! timeout.
//!
//! A blocking proxy puts a timeout on each socket. An event loop has one
//! place to wait, `epoll_wait`, so every deadline of every connection (the
//! header timeout, the idle timeout, the upstream's silence...) becomes an
//! entry here, and the loop sleeps until the earliest one. Without this, a
//! silent peer would hold its connection forever: `epoll_wait` only wakes up
//! for peers that *do* something.
//!
//! # Lazy deadlines
//!
//! Deadlines move all the time: every byte a client sends pushes its idle
//! deadline back. Removing an entry from the middle of a binary heap is
//! expensive, so entries are never removed; each connection remembers the
//! one entry that is current (`scheduled`), and the loop skips the others
//! when they surface:
//!
//! - a deadline that moves *later* needs no new entry: when the old one
//!   fires, the connection finds it has time left and is scheduled again;
//! - a deadline that moves *earlier* pushes a new entry, and the later one
//!   becomes stale;
//! - a closed connection's entries are stale too: slab keys are reused, so
//!   each entry also carries the connection's unique id.
//!
//! Stale entries are dropped when they reach the top, and all at once
//! ([`Timers::compact`]) if they ever outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One deadline: connection `key` (with unique `id`) wants to run at `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub when: Instant,
    pub key: usize,
    pub id: u64,
}

/// A min-heap of deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Makes sure connection (`key`, `id`) runs at `when` or earlier.
    /// `scheduled` is the connection's record of its current entry.
    pub fn schedule(
        &mut self,
        key: usize,
        id: u64,
        scheduled: &mut Option<Instant>,
        when: Instant,
    ) {
        match *scheduled {
            // An entry at or before `when` exists: when it fires, the
            // connection will see it has time left and come back here.
            Some(current) if current <= when => {}
            _ => {
                self.heap.push(Reverse(Entry { when, key, id }));
                *scheduled = Some(when);
            }
        }
    }

    /// The earliest entry, stale or not (the loop may wake up for nothing;
    /// it never sleeps past a live deadline).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.when)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Removes the earliest entry if `is_live` says it is stale; returns
    /// whether it did (for skipping stale entries before sleeping).
    pub fn drop_stale_top(&mut self, is_live: impl Fn(&Entry) -> bool) -> bool {
        match self.heap.peek() {
            Some(Reverse(e)) if !is_live(e) => {
                self.heap.pop();
                true
            }
            _ => false,
        }
    }

    /// Drops every stale entry: O(n), done only when the heap has grown to
    /// more than twice the live connections.
    pub fn compact(&mut self, is_live: impl Fn(&Entry) -> bool) {
        self.heap.retain(|Reverse(e)| is_live(e));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_out_in_deadline_order_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let (mut a, mut b) = (None, None);
        timers.schedule(1, 10, &mut a, t0 + Duration::from_secs(2));
        timers.schedule(2, 20, &mut b, t0 + Duration::from_secs(1));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None, "nothing is due yet");
        let first = timers.pop_due(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!((first.key, first.id), (2, 20));
        let second = timers.pop_due(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!((second.key, second.id), (1, 10));
    }

    #[test]
    fn a_later_deadline_adds_no_entry_and_an_earlier_one_does() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut scheduled = None;
        timers.schedule(1, 1, &mut scheduled, t0 + Duration::from_secs(10));
        timers.schedule(1, 1, &mut scheduled, t0 + Duration::from_secs(20));
        assert_eq!(timers.len(), 1, "moving a deadline later is free");
        timers.schedule(1, 1, &mut scheduled, t0 + Duration::from_secs(5));
        assert_eq!(timers.len(), 2);
        assert_eq!(scheduled, Some(t0 + Duration::from_secs(5)));
        // The 10 s entry is stale now: only the 5 s one matches `scheduled`.
        timers.compact(|e| Some(e.when) == scheduled);
        assert_eq!(timers.len(), 1);
        assert!(!timers.drop_stale_top(|e| Some(e.when) == scheduled));
        assert!(timers.drop_stale_top(|_| false));
        assert_eq!(timers.len(), 0);
    }
}
