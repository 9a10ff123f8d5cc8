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
//! The request queue is bounded: when it is full the connection gets a 502
//! at once instead of a queue that grows without limit.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use mio::Waker;
use proxy_core::{Authority, ProxyError};

/// How many names may wait for a resolver thread.
const QUEUE: usize = 1024;

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
        match self.answers.lock() {
            Ok(mut answers) => std::mem::take(&mut *answers),
            // A resolver thread panicked while holding the lock; the list
            // itself is still a valid Vec.
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn deliver(&self, answer: Answer) {
        match self.answers.lock() {
            Ok(mut answers) => answers.push(answer),
            Err(poisoned) => poisoned.into_inner().push(answer),
        }
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

/// The sending side of the resolver pool; each loop holds a clone.
#[derive(Debug, Clone)]
pub struct Resolver {
    jobs: SyncSender<Job>,
}

impl Resolver {
    /// Starts `threads` resolver threads. They exit when every `Resolver`
    /// clone is dropped.
    pub fn start(threads: usize) -> std::io::Result<Resolver> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || serve(&queue))?;
        }
        Ok(Resolver { jobs })
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
        let job = Job {
            authority: authority.clone(),
            key,
            id,
            inbox: Arc::clone(inbox),
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ProxyError::BadGateway(format!(
                "cannot resolve {authority}: too many names are being resolved"
            ))),
            Err(TrySendError::Disconnected(_)) => Err(ProxyError::BadGateway(format!(
                "cannot resolve {authority}: the resolver has stopped"
            ))),
        }
    }
}

/// A resolver thread: take a job, block in `getaddrinfo`, deliver, repeat.
fn serve(queue: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only while taking a job, not while resolving it.
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // Every sender is gone: the proxy is stopping.
        };
        let result = (job.authority.host.as_str(), job.authority.port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        job.inbox.deliver(Answer {
            key: job.key,
            id: job.id,
            result,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn an_answer_wakes_the_loop_that_asked() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let inbox = Inbox::new(waker);
        let resolver = Resolver::start(1).unwrap();
        let localhost = Authority {
            host: "localhost".into(),
            port: 80,
        };
        resolver.resolve(&localhost, 3, 99, &inbox).unwrap();
        let mut events = Events::with_capacity(4);
        let mut answers = Vec::new();
        for _ in 0..50 {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            answers.extend(inbox.take());
            if !answers.is_empty() {
                break;
            }
        }
        assert_eq!(answers.len(), 1);
        assert_eq!((answers[0].key, answers[0].id), (3, 99));
        let addrs = answers[0].result.as_ref().unwrap();
        assert!(
            addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}
