//! The policy of an idle upstream connection pool, without the connections'
//! I/O: which idle connection to hand out, how many to keep, when to drop
//! them.
//!
//! Opening a TCP connection costs a round trip (and a TLS handshake, in the
//! real world), so phases 2-4 keep upstream connections open after an
//! exchange and reuse them. The policy is the same whatever the I/O model,
//! so it lives here, generic over the connection type `C` (a
//! `std::net::TcpStream` in phase 2, a `mio` stream in phase 3, a tokio one
//! in phase 4):
//!
//! - **keyed by upstream** (`host:port`): a connection to one upstream is
//!   useless for another;
//! - **bounded**: at most `max_idle_per_upstream` idle connections per
//!   upstream; an extra one is handed back to the caller to close;
//! - **last in, first out**: the most recently used connection is the least
//!   likely to have been closed by the upstream's own idle timeout;
//! - **idle-expired**: a connection idle longer than `idle_timeout` is
//!   dropped rather than reused (upstreams close idle connections too, and
//!   a connection they have closed must never carry a request).
//!
//! The pool is not a lock: phases 2 and 4 share one behind a mutex, phase 3
//! keeps one per event loop. It never does I/O, so checking whether a
//! connection handed out is still alive (the upstream may have closed it a
//! moment ago) is the caller's job.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Idle connections kept per upstream, per pool, in every phase. A burst of
/// N concurrent exchanges leaves up to N idle connections behind; keeping too
/// few makes the next burst close and reopen the rest (with 32, phase 4 under
/// `wrk -c100` opened 43,932 upstream connections for 187k requests; with
/// 256, 218 for 272k). More than this many idle at once means the load just
/// dropped, and closing the extra ones is fine.
pub const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// How long an idle upstream connection is kept, in every phase. Upstreams
/// close idle connections too (Node.js after 5 s, nginx after 75 s); staying
/// below the shortest common value means the proxy rarely picks a connection
/// the upstream is closing at that very moment.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Idle connections kept in one pool over all upstreams. Without it, a
/// forward-proxy client naming thousands of different upstreams could leave
/// thousands of idle sockets behind and exhaust the file descriptors; at the
/// limit, the oldest idle connection is closed to make room.
pub const MAX_IDLE_TOTAL: usize = 1024;

/// Idle connections, by upstream.
#[derive(Debug)]
pub struct IdlePool<K, C> {
    idle: HashMap<K, Vec<Idle<C>>>,
    max_idle_per_upstream: usize,
    max_idle_total: usize,
    idle_timeout: Duration,
    /// Idle connections over all upstreams.
    total: usize,
}

#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
}

impl<K: Eq + Hash + Clone, C> IdlePool<K, C> {
    /// A pool that keeps at most `max_idle_per_upstream` idle connections per
    /// upstream, each for at most `idle_timeout`.
    pub fn new(max_idle_per_upstream: usize, idle_timeout: Duration) -> Self {
        IdlePool {
            idle: HashMap::new(),
            max_idle_per_upstream,
            max_idle_total: MAX_IDLE_TOTAL,
            idle_timeout,
            total: 0,
        }
    }

    /// Changes the limit over all upstreams (default [`MAX_IDLE_TOTAL`]).
    pub fn with_total_limit(mut self, max_idle_total: usize) -> Self {
        self.max_idle_total = max_idle_total;
        self
    }

    /// The most recently returned idle connection to `upstream` that has not
    /// expired, if any. Expired ones found on the way are dropped (closed).
    pub fn take(&mut self, upstream: &K, now: Instant) -> Option<C> {
        let list = self.idle.get_mut(upstream)?;
        let before = list.len();
        let found = match list.pop() {
            Some(idle) if now.saturating_duration_since(idle.since) < self.idle_timeout => {
                Some(idle.conn)
            }
            // The entries below it are older, so they have expired too.
            Some(_) => {
                list.clear();
                None
            }
            None => None,
        };
        self.total -= before - list.len();
        if list.is_empty() {
            self.idle.remove(upstream);
        }
        found
    }

    /// Keeps a connection after a complete exchange. Returns a connection
    /// for the caller to close, if any: `conn` itself when its upstream
    /// already has the most idle connections allowed, or the oldest idle
    /// connection of the pool when the pool as a whole is full.
    #[must_use = "a returned connection should be closed (dropping it does)"]
    pub fn put(&mut self, upstream: K, conn: C, now: Instant) -> Option<C> {
        if self.max_idle_per_upstream == 0 || self.max_idle_total == 0 {
            return Some(conn);
        }
        let list = self.idle.entry(upstream).or_default();
        if list.len() >= self.max_idle_per_upstream {
            return Some(conn);
        }
        list.push(Idle { conn, since: now });
        self.total += 1;
        if self.total > self.max_idle_total {
            return self.evict_oldest();
        }
        None
    }

    /// Removes the connection that has been idle longest, over all upstreams.
    fn evict_oldest(&mut self) -> Option<C> {
        // Each list is oldest-first, so only the heads compete.
        let key = self
            .idle
            .iter()
            .filter_map(|(k, list)| list.first().map(|idle| (k, idle.since)))
            .min_by_key(|&(_, since)| since)
            .map(|(k, _)| k.clone())?;
        let list = self.idle.get_mut(&key)?;
        let oldest = list.remove(0);
        self.total -= 1;
        if list.is_empty() {
            self.idle.remove(&key);
        }
        Some(oldest.conn)
    }

    /// Drops every connection idle longer than the timeout; returns how many.
    /// Call it now and then (phase 3 from its timer, phases 2 and 4 on each
    /// `put`), so that expired connections do not hold file descriptors.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.idle_timeout;
        let mut dropped = 0;
        self.idle.retain(|_, list| {
            let before = list.len();
            list.retain(|idle| now.saturating_duration_since(idle.since) < timeout);
            dropped += before - list.len();
            !list.is_empty()
        });
        self.total -= dropped;
        dropped
    }

    /// Removes and returns every idle connection (for shutdown).
    pub fn drain(&mut self) -> Vec<C> {
        self.total = 0;
        self.idle
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|i| i.conn))
            .collect()
    }

    /// How many idle connections the pool holds, over all upstreams.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True if no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn hands_out_the_most_recent_connection_first() {
        let t0 = Instant::now();
        let mut pool = IdlePool::new(4, TTL);
        assert_eq!(pool.put("a", 1, t0), None);
        assert_eq!(pool.put("a", 2, t0 + Duration::from_secs(1)), None);
        assert_eq!(pool.put("b", 3, t0), None);
        assert_eq!(pool.take(&"a", t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(pool.take(&"a", t0 + Duration::from_secs(2)), Some(1));
        assert_eq!(pool.take(&"a", t0 + Duration::from_secs(2)), None);
        assert_eq!(pool.take(&"b", t0), Some(3));
        assert!(pool.is_empty());
    }

    #[test]
    fn keeps_at_most_the_limit_per_upstream() {
        let t0 = Instant::now();
        let mut pool = IdlePool::new(2, TTL);
        assert_eq!(pool.put("a", 1, t0), None);
        assert_eq!(pool.put("a", 2, t0), None);
        assert_eq!(pool.put("a", 3, t0), Some(3));
        assert_eq!(pool.put("b", 4, t0), None);
        assert_eq!(pool.len(), 3);
        let mut none: IdlePool<&str, i32> = IdlePool::new(0, TTL);
        assert_eq!(none.put("a", 1, t0), Some(1));
    }

    #[test]
    fn a_full_pool_closes_its_oldest_connection() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut pool = IdlePool::new(4, TTL).with_total_limit(3);
        assert_eq!(pool.put("a", 1, at(0)), None);
        assert_eq!(pool.put("b", 2, at(1)), None);
        assert_eq!(pool.put("c", 3, at(2)), None);
        // A fourth upstream: the pool is full, so the oldest (1, to "a") goes.
        assert_eq!(pool.put("d", 4, at(3)), Some(1));
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.take(&"a", at(3)), None);
        assert_eq!(pool.take(&"b", at(3)), Some(2));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn never_hands_out_an_expired_connection() {
        let t0 = Instant::now();
        let mut pool = IdlePool::new(4, TTL);
        assert_eq!(pool.put("a", 1, t0), None);
        assert_eq!(pool.put("a", 2, t0 + Duration::from_secs(5)), None);
        // At t0 + 12 s, 1 has expired but 2 has not.
        assert_eq!(pool.take(&"a", t0 + Duration::from_secs(12)), Some(2));
        assert_eq!(pool.take(&"a", t0 + Duration::from_secs(12)), None);
        assert!(pool.is_empty());
    }

    #[test]
    fn expire_drops_old_connections_everywhere() {
        let t0 = Instant::now();
        let mut pool = IdlePool::new(4, TTL);
        assert_eq!(pool.put("a", 1, t0), None);
        assert_eq!(pool.put("b", 2, t0), None);
        assert_eq!(pool.put("b", 3, t0 + Duration::from_secs(8)), None);
        assert_eq!(pool.expire(t0 + Duration::from_secs(11)), 2);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.drain(), vec![3]);
        assert!(pool.is_empty());
    }
}
