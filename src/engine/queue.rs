//! The queues between the engine's threads: tasks to the pool, messages to
//! the coordinator, ranges to the MD5 thread and its digests back. Each is
//! a mutex-guarded queue with a condition variable: a waiting thread sleeps
//! at once and an item wakes exactly one.
//!
//! Why not crossbeam's channels (which these were at first): their `recv`
//! spins and calls `sched_yield` several times before it sleeps, and on
//! two cores shared with the server a yield can hand the core to another
//! thread. 2,000 files of 1 KiB made 4.8 `sched_yield` calls per file on
//! the pool's queue alone; a download of 2,000 x 64 KiB, 6.3 per file on
//! the coordinator's and the MD5 thread's (bench/NOTES.md).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A blocking queue, many producers and consumers.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// No more items are taken in; those queued are still handed out.
    closed: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    /// The state; nothing panics under the lock, but a poisoned queue is
    /// still a queue.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` and wakes one waiting thread; a closed queue gives the
    /// item back.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// The next item, waiting for one; `None` once the queue is closed and
    /// empty.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// [`pop`](Self::pop), waiting at most `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.closed || left.is_zero() {
                return None;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The next item if one is queued.
    pub fn try_pop(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Takes no more items; those queued are still handed out, then every
    /// waiting thread gets `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// [`close`](Self::close), and drops what is still queued (outside
    /// the lock: dropping an item may wake someone).
    pub fn close_and_discard(&self) {
        let discarded = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        self.ready.notify_all();
        drop(discarded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_come_in_order_to_waiting_threads_and_a_close_ends_the_wait() {
        let q = Arc::new(Queue::default());
        let taker = {
            let q = q.clone();
            std::thread::spawn(move || std::iter::from_fn(|| q.pop()).collect::<Vec<u32>>())
        };
        for i in 0..1000 {
            q.push(i).unwrap();
        }
        q.close();
        assert_eq!(q.push(7), Err(7), "a closed queue takes nothing");
        assert_eq!(taker.join().unwrap(), (0..1000).collect::<Vec<_>>());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_timed_pop_waits_about_its_timeout_and_a_discard_drops_the_rest() {
        let q: Queue<Arc<()>> = Queue::default();
        let t = Instant::now();
        assert!(q.pop_timeout(Duration::from_millis(30)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(30));
        let item = Arc::new(());
        q.push(item.clone()).unwrap();
        assert!(q.try_pop().is_some());
        q.push(item.clone()).unwrap();
        q.close_and_discard();
        assert_eq!(Arc::strong_count(&item), 1, "the queued item was dropped");
        assert!(q.is_closed());
        assert!(q.pop_timeout(Duration::from_secs(5)).is_none());
    }
}
