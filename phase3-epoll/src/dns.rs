//! Name resolution on helper threads, so that it never blocks a loop.
//!
//! There is no non-blocking `getaddrinfo`: the system resolver reads
//! `/etc/hosts`, asks nscd or systemd-resolved, sends UDP queries and waits
//! for the answers, retrying for seconds, all inside one blocking call. In
//! an event loop, one such call would freeze every connection of that loop
//! (that is what phase 1 does, where it freezes the whole proxy). So a
//! connection that needs a name resolved sends it to a small pool of
//! resolver threads and goes on waiting like any other connection; the
//! answer comes back through its loop's [`Inbox`], and the resolver wakes
//! the loop with its `mio::Waker`, which makes `epoll_wait` return.
//!
//! Reverse mode with a numeric `--upstream` (the usual case) never comes
//! here: an IP address needs no resolution.
//!
//! # How many threads
//!
//! A resolver thread is blocked for as long as its lookup takes, so a
//! fixed pool of four would let four slow names (a DNS server that does
//! not answer: 5 s per attempt, two attempts by default) hold up every other
//! lookup of the process, even `localhost`, behind them. So the pool
//! grows on demand: a name that finds no idle thread starts a new one, up
//! to [`MAX_THREADS`]; threads beyond the first [`MIN_THREADS`] exit after
//! [`IDLE_EXIT`] without work. Past the cap, names wait in the queue, and
//! each connection's `--connect-timeout` deadline bounds how long its
//! client waits (it then gets a 504). The queue is bounded too: when it is
//! full the connection gets a 502 at once instead of a queue that grows
//! without limit.
//!
//! (glibc's `getaddrinfo_a` runs lookups on threads in much the same way;
//! a resolver that speaks DNS itself over non-blocking UDP, like c-ares or
//! hickory, needs no threads, but does without the system's NSS modules.)

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mio::Waker;
use proxy_core::{Authority, ProxyError};

/// How many names may wait for a resolver thread.
const QUEUE: usize = 1024;

/// Resolver threads that stay, however quiet it is.
pub const MIN_THREADS: usize = 4;

/// The most resolver threads at once: each slow name holds one.
pub const MAX_THREADS: usize = 64;

/// A thread beyond [`MIN_THREADS`] that has had no work for this long exits.
pub const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The answer for one connection: the addresses, or why there are none.
#[derive(Debug)]
pub struct Answer {
    /// The slab key of the connection that asked.
    pub key: usize,
    /// Its unique id: if the connection closed and its key was reused
    /// meanwhile, the answer is dropped.
    pub id: u64,
    pub result: Result<Vec<SocketAddr>, String>,
}

/// Where one loop receives its answers.
#[derive(Debug)]
pub struct Inbox {
    answers: Mutex<Vec<Answer>>,
    waker: Arc<Waker>,
}

impl Inbox {
    pub fn new(waker: Arc<Waker>) -> Arc<Inbox> {
        Arc::new(Inbox {
            answers: Mutex::new(Vec::new()),
            waker,
        })
    }

    /// Every answer delivered since the last call.
    pub fn take(&self) -> Vec<Answer> {
        // A thread that panicked while holding the lock left a valid Vec.
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *answers)
    }

    fn deliver(&self, answer: Answer) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "cannot wake an event loop with a DNS answer");
        }
    }
}

/// One name to resolve, and where the answer goes.
#[derive(Debug)]
struct Job {
    authority: Authority,
    key: usize,
    id: u64,
    inbox: Arc<Inbox>,
}

/// The lookup the threads run: `getaddrinfo`, or a fake in tests.
type Lookup = dyn Fn(&Authority) -> Result<Vec<SocketAddr>, String> + Send + Sync;

/// What the loops and the resolver threads share.
struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when a job is queued or the pool stops.
    work: Condvar,
    lookup: Box<Lookup>,
    min_threads: usize,
    max_threads: usize,
    idle_exit: Duration,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    /// Resolver threads alive.
    threads: usize,
    /// Of those, how many are resolving a name. The others are waiting for
    /// a job, or about to: each of them will take one from the queue.
    busy: usize,
    /// Every `Resolver` handle is gone: the threads exit.
    stopped: bool,
    /// Threads started so far (for their names).
    started: usize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Nothing panics while holding this lock; if something did, the
        // state is still consistent enough to keep resolving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The loops' handle on the resolver pool; each loop holds a clone. The
/// threads exit when the last clone is dropped.
#[derive(Clone)]
pub struct Resolver {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.handle.pool.lock();
        f.debug_struct("Resolver")
            .field("threads", &state.threads)
            .field("busy", &state.busy)
            .field("queued", &state.queue.len())
            .finish()
    }
}

/// Shared by the clones of one `Resolver`; dropping the last one stops the
/// pool (the threads hold the `Pool`, not this).
struct Handle {
    pool: Arc<Pool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.pool.lock().stopped = true;
        self.pool.work.notify_all();
    }
}

impl Resolver {
    /// Starts `min_threads` resolver threads; up to `max_threads` run when
    /// lookups are slow.
    pub fn start(min_threads: usize, max_threads: usize) -> std::io::Result<Resolver> {
        let lookup = |authority: &Authority| {
            (authority.host.as_str(), authority.port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        Resolver::with_lookup(min_threads, max_threads, IDLE_EXIT, Box::new(lookup))
    }

    /// [`Resolver::start`] with any lookup function (tests use fakes that
    /// take as long as they are told to).
    fn with_lookup(
        min_threads: usize,
        max_threads: usize,
        idle_exit: Duration,
        lookup: Box<Lookup>,
    ) -> std::io::Result<Resolver> {
        let max_threads = max_threads.max(1);
        let pool = Arc::new(Pool {
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            lookup,
            min_threads: min_threads.min(max_threads),
            max_threads,
            idle_exit,
        });
        // The handle first: if a thread cannot start, dropping it stops
        // the ones that did.
        let resolver = Resolver {
            handle: Arc::new(Handle {
                pool: Arc::clone(&pool),
            }),
        };
        for _ in 0..pool.min_threads {
            pool.lock().threads += 1;
            spawn(&pool)?;
        }
        Ok(resolver)
    }

    /// Asks for `authority` to be resolved on behalf of connection
    /// (`key`, `id`); the answer arrives in `inbox`.
    pub fn resolve(
        &self,
        authority: &Authority,
        key: usize,
        id: u64,
        inbox: &Arc<Inbox>,
    ) -> Result<(), ProxyError> {
        let pool = &self.handle.pool;
        let mut state = pool.lock();
        if state.queue.len() >= QUEUE {
            return Err(ProxyError::BadGateway(format!(
                "cannot resolve {authority}: too many names are being resolved"
            )));
        }
        state.queue.push_back(Job {
            authority: authority.clone(),
            key,
            id,
            inbox: Arc::clone(inbox),
        });
        // More jobs waiting than free threads to take them: one more
        // thread, unless at the cap (then the job waits for a busy one).
        let free = state.threads - state.busy;
        let grow = state.queue.len() > free && state.threads < pool.max_threads;
        if grow {
            state.threads += 1;
        }
        drop(state);
        pool.work.notify_one();
        if grow {
            if let Err(e) = spawn(pool) {
                // The job stays queued for the threads there are; if there
                // are none, its connection's deadline answers for it.
                tracing::warn!(error = %e, "cannot start a resolver thread");
            }
        }
        Ok(())
    }

    /// Resolver threads alive right now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.handle.pool.lock().threads
    }
}

/// Starts one resolver thread; the caller has counted it in `threads`
/// already, and this uncounts it if the thread cannot start.
fn spawn(pool: &Arc<Pool>) -> std::io::Result<()> {
    let n = {
        let mut state = pool.lock();
        state.started += 1;
        state.started
    };
    let thread_pool = Arc::clone(pool);
    let spawned = std::thread::Builder::new()
        .name(format!("resolver-{n}"))
        .spawn(move || serve(&thread_pool));
    if spawned.is_err() {
        pool.lock().threads -= 1;
    }
    spawned.map(drop)
}

/// A resolver thread: take a job, block in the lookup, deliver, repeat;
/// exit when the pool stops, or when idle too long if it is an extra one.
fn serve(pool: &Pool) {
    let mut state = pool.lock();
    loop {
        if state.stopped {
            state.threads -= 1;
            return;
        }
        if let Some(job) = state.queue.pop_front() {
            // Hold the lock only while taking a job, not while resolving it.
            state.busy += 1;
            drop(state);
            let result = (pool.lookup)(&job.authority);
            job.inbox.deliver(Answer {
                key: job.key,
                id: job.id,
                result,
            });
            state = pool.lock();
            state.busy -= 1;
            continue;
        }
        let (guard, wait) = pool
            .work
            .wait_timeout(state, pool.idle_exit)
            .unwrap_or_else(PoisonError::into_inner);
        state = guard;
        if wait.timed_out() && state.queue.is_empty() && state.threads > pool.min_threads {
            state.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Instant;

    fn name(host: &str) -> Authority {
        Authority {
            host: host.into(),
            port: 80,
        }
    }

    /// A poll with a waker, and the inbox it wakes.
    fn loop_inbox() -> (Poll, Arc<Inbox>) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        (poll, Inbox::new(waker))
    }

    /// Waits (at most `limit`) until `inbox` holds `count` answers in all.
    fn wait_for(poll: &mut Poll, inbox: &Inbox, count: usize, limit: Duration) -> Vec<Answer> {
        let mut events = Events::with_capacity(4);
        let mut answers = Vec::new();
        let until = Instant::now() + limit;
        while answers.len() < count && Instant::now() < until {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            answers.extend(inbox.take());
        }
        answers
    }

    /// A lookup that answers `fast` at once and blocks on every other name
    /// until the gate opens (or 10 s pass, so a failing test still ends).
    fn gated_lookup() -> (Arc<(Mutex<bool>, Condvar)>, Box<Lookup>) {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let in_lookup = Arc::clone(&gate);
        let lookup = move |authority: &Authority| {
            if authority.host != "fast" {
                let (open, changed) = &*in_lookup;
                let open = open.lock().unwrap();
                let _ = changed
                    .wait_timeout_while(open, Duration::from_secs(10), |open| !*open)
                    .unwrap();
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], authority.port))])
        };
        (gate, Box::new(lookup))
    }

    fn open(gate: &(Mutex<bool>, Condvar)) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    #[test]
    fn an_answer_wakes_the_loop_that_asked() {
        let (mut poll, inbox) = loop_inbox();
        let resolver = Resolver::start(1, 1).unwrap();
        resolver.resolve(&name("localhost"), 3, 99, &inbox).unwrap();
        let answers = wait_for(&mut poll, &inbox, 1, Duration::from_secs(5));
        assert_eq!(answers.len(), 1);
        assert_eq!((answers[0].key, answers[0].id), (3, 99));
        let addrs = answers[0].result.as_ref().unwrap();
        assert!(
            addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()),
            "{addrs:?}"
        );
    }

    #[test]
    fn slow_names_do_not_hold_up_the_next_one() {
        // One permanent thread, four slow lookups in progress: a fifth name
        // gets a thread of its own instead of waiting behind them.
        let (mut poll, inbox) = loop_inbox();
        let (gate, lookup) = gated_lookup();
        let resolver = Resolver::with_lookup(1, 8, IDLE_EXIT, lookup).unwrap();
        for key in 0..4 {
            resolver.resolve(&name("slow"), key, 0, &inbox).unwrap();
        }
        resolver.resolve(&name("fast"), 4, 0, &inbox).unwrap();
        let answers = wait_for(&mut poll, &inbox, 1, Duration::from_secs(5));
        let keys: Vec<usize> = answers.iter().map(|a| a.key).collect();
        assert_eq!(keys, vec![4], "only the fast name is answered so far");
        assert_eq!(resolver.threads(), 5, "one thread per name in flight");
        open(&gate);
        let rest = wait_for(&mut poll, &inbox, 4, Duration::from_secs(5));
        assert_eq!(rest.len(), 4);
    }

    #[test]
    fn at_the_cap_names_wait_for_a_busy_thread() {
        let (mut poll, inbox) = loop_inbox();
        let (gate, lookup) = gated_lookup();
        let resolver = Resolver::with_lookup(1, 2, IDLE_EXIT, lookup).unwrap();
        resolver.resolve(&name("slow"), 0, 0, &inbox).unwrap();
        resolver.resolve(&name("slow"), 1, 0, &inbox).unwrap();
        resolver.resolve(&name("fast"), 2, 0, &inbox).unwrap();
        let early = wait_for(&mut poll, &inbox, 1, Duration::from_millis(300));
        assert!(early.is_empty(), "no third thread: {early:?}");
        assert_eq!(resolver.threads(), 2);
        open(&gate);
        let answers = wait_for(&mut poll, &inbox, 3, Duration::from_secs(5));
        assert_eq!(
            answers.len(),
            3,
            "queued names are answered once a thread frees up"
        );
    }

    #[test]
    fn extra_threads_exit_once_idle_and_the_pool_shrinks_to_its_minimum() {
        let (mut poll, inbox) = loop_inbox();
        let (gate, lookup) = gated_lookup();
        let resolver = Resolver::with_lookup(1, 4, Duration::from_millis(50), lookup).unwrap();
        for key in 0..3 {
            resolver.resolve(&name("slow"), key, 0, &inbox).unwrap();
        }
        open(&gate);
        assert_eq!(
            wait_for(&mut poll, &inbox, 3, Duration::from_secs(5)).len(),
            3
        );
        let until = Instant::now() + Duration::from_secs(5);
        while resolver.threads() > 1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(resolver.threads(), 1, "back to the minimum");
        // And the one left still works.
        resolver.resolve(&name("fast"), 9, 0, &inbox).unwrap();
        assert_eq!(
            wait_for(&mut poll, &inbox, 1, Duration::from_secs(5)).len(),
            1
        );
    }

    #[test]
    fn dropping_the_last_handle_stops_every_thread() {
        let (gate, lookup) = gated_lookup();
        open(&gate);
        let resolver = Resolver::with_lookup(3, 3, IDLE_EXIT, lookup).unwrap();
        let pool = Arc::clone(&resolver.handle.pool);
        let clone = resolver.clone();
        drop(resolver);
        assert_eq!(pool.lock().threads, 3, "a clone still holds the pool open");
        drop(clone);
        let until = Instant::now() + Duration::from_secs(5);
        while pool.lock().threads > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.lock().threads, 0);
    }
}
