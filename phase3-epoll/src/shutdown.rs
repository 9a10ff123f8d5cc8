//! Graceful shutdown for event loops.
//!
//! Phase 1 sleeps in `accept()`, so it wakes itself up by connecting to its
//! own port. An event loop sleeps in `epoll_wait`, and mio gives it a proper
//! doorbell: a [`mio::Waker`] (an eventfd registered with the loop's epoll).
//! The signal thread sets a flag and rings every loop's waker; each loop
//! sees the flag, closes its listener and its idle connections, lets the
//! exchanges in flight finish, and returns when it has none left or when
//! `--shutdown-grace` has passed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

/// A cloneable "please stop" handle shared by the signal thread and every
/// loop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    /// One waker per running loop (added as loops start).
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every loop to stop accepting and finish what it has.
    pub fn trigger(&self) {
        // The flag first: a loop woken up must find it set.
        self.inner.requested.store(true, Ordering::SeqCst);
        let wakers = match self.inner.wakers.lock() {
            Ok(w) => w.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for waker in wakers {
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "cannot wake an event loop for shutdown");
            }
        }
    }

    /// True once [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Registers a loop's waker. A loop registered after the trigger still
    /// sees the flag, because it checks it on every iteration.
    pub(crate) fn add_waker(&self, waker: Arc<Waker>) {
        match self.inner.wakers.lock() {
            Ok(mut w) => w.push(waker),
            Err(poisoned) => poisoned.into_inner().push(waker),
        }
    }
}
