//! The worker pool: up to a fixed number of threads that take tasks from
//! one queue and block on it when there is nothing to do.
//!
//! Threads start when a task finds none idle, up to the pool's size, and
//! then stay for the pool's life. With `workers=auto` the size is
//! `max_workers` (256) so a far server can get that many requests at once;
//! on loopback 16-32 are ever busy. Starting all 256 with the uploader took
//! 26 ms, in front of the first request of every run of the CLI.
//!
//! Why not rayon (which it replaced): rayon's idle workers spin, yielding and
//! trying to steal from each other before they sleep, and on loopback most
//! of the pool's threads are idle most of the time: perf showed 60 % of the
//! client's CPU in crossbeam-epoch, stealing and `sched_yield` (2,000 x 64
//! KiB: 4.7 CPU s against 0.7 with 16 threads). Here an idle thread sleeps
//! on a condition variable and costs nothing, and a task wakes exactly one.
//!
//! Why not a crossbeam channel (which this used at first): its `recv`
//! spins and calls `sched_yield` several times before it sleeps, and on two
//! cores shared with the server a yield can hand the core to another
//! thread: 2,000 files of 1 KiB made 4.8 `sched_yield` calls per file. A
//! mutex-guarded queue with a condition variable sleeps at once.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// The pool's queue: a task wakes one sleeping thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Tasks not yet taken.
    tasks: VecDeque<Task>,
    /// Set when the pool drops: threads end once `tasks` is empty.
    closing: bool,
    /// Threads waiting for a task.
    idle: usize,
    /// Idle threads woken for a task and not yet back under the lock: they
    /// count as coming for the queue (see `push_behind`), and only they
    /// leave the wait. A thread that wakes without being meant to (a
    /// condition variable allows it) would otherwise take a task queued
    /// behind the busy ones: one request more than `workers=auto`'s limit
    /// at the moment (a fixed `workers=N` has only N threads).
    wakeups: usize,
    /// Threads started.
    threads: usize,
}

impl QueueState {
    /// Wakes one idle thread not woken yet, if there is one: whether it
    /// did (the caller notifies the condition variable).
    fn wake_one(&mut self) -> bool {
        let wake = self.idle > self.wakeups;
        if wake {
            self.wakeups += 1;
        }
        wake
    }
}

impl Queue {
    /// The state; a panic never happens under the lock, but a poisoned
    /// queue is still a queue.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` under the lock, then wakes the idle thread it chose
    /// (with `wake_one`), if any, once the lock is free for that thread.
    fn then_wake(&self, change: impl FnOnce(&mut QueueState) -> bool) -> bool {
        let wake = change(&mut self.lock());
        if wake {
            self.ready.notify_one();
        }
        wake
    }

    /// Queues `task` and wakes an idle thread for it; whether no thread
    /// was idle to take it.
    fn push(&self, task: Task) -> bool {
        let mut none_idle = false;
        self.then_wake(|state| {
            state.tasks.push_back(task);
            none_idle = state.idle < state.tasks.len();
            state.wake_one()
        });
        none_idle
    }

    /// Queues `task` for a thread that comes back for more: one that
    /// finishes a task takes it without sleeping. An idle thread is woken
    /// only if the queue is longer than the threads at work or woken
    /// (those come back to it in turn): a task is never left with nobody
    /// to take it. Whether one was woken.
    fn push_behind(&self, task: Task) -> bool {
        self.then_wake(|state| {
            state.tasks.push_back(task);
            let coming = state.threads - (state.idle - state.wakeups);
            state.tasks.len() > coming && state.wake_one()
        })
    }

    /// Wakes an idle thread if a task waits that no woken one will take.
    fn wake_for_queued(&self) {
        self.then_wake(|state| state.tasks.len() > state.wakeups && state.wake_one());
    }

    /// The next task, waiting for one; `None` once the pool closes and the
    /// queue is empty.
    fn pop(&self) -> Option<Task> {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                return Some(task);
            }
            if state.closing {
                return None;
            }
            state.idle += 1;
            loop {
                state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                if state.wakeups > 0 {
                    state.wakeups -= 1;
                    break;
                }
                if state.closing {
                    break;
                }
            }
            state.idle -= 1;
        }
    }

    fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_all();
    }
}

thread_local! {
    /// This thread's index in its pool, if it is a pool thread.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the pool thread running this code (`None` elsewhere).
pub(crate) fn current_index() -> Option<usize> {
    INDEX.with(Cell::get)
}

pub(crate) struct Pool {
    queue: Arc<Queue>,
    name: String,
    size: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// A pool of up to `n` threads named `{name}-{i}`; the first starts now
    /// (an error here is the caller's), the others when a task finds none
    /// idle.
    pub fn new(n: usize, name: &str) -> std::io::Result<Pool> {
        let pool = Pool {
            queue: Arc::new(Queue::default()),
            name: name.to_string(),
            size: n.max(1),
            threads: Mutex::new(Vec::with_capacity(n)),
        };
        pool.start_thread()?;
        Ok(pool)
    }

    /// Starts one more thread, if the pool is not full.
    fn start_thread(&self) -> std::io::Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let i = threads.len();
        if i >= self.size {
            return Ok(());
        }
        let q = self.queue.clone();
        q.lock().threads += 1;
        let thread = std::thread::Builder::new()
            .name(format!("{}-{i}", self.name))
            .spawn(move || {
                INDEX.with(|c| c.set(Some(i)));
                while let Some(task) = q.pop() {
                    // Tasks catch their own panics and report them; this
                    // only keeps a bug from taking the thread (and, in a C
                    // host, the process) down.
                    if catch_unwind(AssertUnwindSafe(task)).is_err() {
                        log::error!("a batchput worker panicked outside a task");
                    }
                }
            })
            .inspect_err(|_| self.queue.lock().threads -= 1)?;
        threads.push(thread);
        Ok(())
    }

    /// Queues `task` for the next free thread, starting one if none is
    /// idle and the pool is not full.
    pub fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        if self.queue.push(Box::new(task)) {
            if let Err(e) = self.start_thread() {
                // The threads there are take the task in turn.
                log::warn!("cannot start another worker thread: {e}");
            }
        }
    }

    /// Queues `task` behind the tasks at work: the first thread to finish
    /// one takes it next, without the sleep and wake-up a new task costs
    /// (on loopback, a quarter of a small file's client CPU was context
    /// switches). For work beyond the requests a job wants in flight, so
    /// that its threads go from one request to the next; a thread is woken
    /// for it only if none at work would come back for it (returns
    /// whether one was).
    pub fn spawn_behind(&self, task: impl FnOnce() + Send + 'static) -> bool {
        self.queue.push_behind(Box::new(task))
    }

    /// Wakes an idle thread for the first queued task, if any: for when a
    /// job's requests in flight fell below its limit while tasks it queued
    /// behind others still wait.
    pub fn wake_for_queued(&self) {
        self.queue.wake_for_queued();
    }

    /// Runs `f` on every item on the pool and returns the results in the
    /// items' order.
    pub fn map<T, R>(&self, items: Vec<T>, f: impl Fn(T) -> R + Send + Sync + 'static) -> Vec<R>
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        let f = Arc::new(f);
        let n = items.len();
        let (tx, rx) = crossbeam_channel::unbounded();
        for (i, item) in items.into_iter().enumerate() {
            let (f, tx) = (f.clone(), tx.clone());
            self.spawn(move || {
                let _ = tx.send((i, f(item)));
            });
        }
        drop(tx);
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        for (i, r) in rx {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.expect("every task of the map reports (a panic is a bug)"))
            .collect()
    }
}

impl Drop for Pool {
    /// Closes the queue and joins every thread: no library thread outlives
    /// the pool (a C caller may unload the library next, and valgrind sees
    /// no thread's memory still in use). Tasks already queued run first; a
    /// job's end has cut off their requests, so they end within moments.
    fn drop(&mut self) {
        self.queue.close();
        let me = std::thread::current().id();
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            // The last owner may be one of our own threads: it cannot join
            // itself, and it is ending anyway.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn map_keeps_the_order_and_spawn_runs_everything_before_drop() {
        let pool = Pool::new(4, "test-pool").unwrap();
        let got = pool.map((0..100).collect(), |i: u32| i * 2);
        assert_eq!(got, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let ran = ran.clone();
            pool.spawn(move || {
                assert!(current_index().is_some_and(|i| i < 4));
                ran.fetch_add(1, Ordering::Relaxed);
            });
        }
        drop(pool);
        assert_eq!(ran.load(Ordering::Relaxed), 50);
        assert_eq!(current_index(), None);
    }

    #[test]
    fn threads_start_when_tasks_find_none_idle_up_to_the_size() {
        let pool = Pool::new(64, "test-pool").unwrap();
        for i in 0..200 {
            assert_eq!(pool.map(vec![i], |i: u32| i + 1), [i + 1]);
        }
        let started = pool.threads.lock().unwrap().len();
        assert!(started <= 4, "{started} threads for one task at a time");
        // Eight tasks that wait for each other need eight threads at once.
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let got = pool.map((0..8).collect(), move |i: u32| {
            barrier.wait();
            i
        });
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        let small = Pool::new(2, "test-pool").unwrap();
        let _ = small.map((0..50).collect(), |i: u32| i);
        assert_eq!(small.threads.lock().unwrap().len(), 2);
    }

    fn idle(pool: &Pool) -> usize {
        pool.queue.lock().idle
    }

    #[test]
    fn a_task_queued_behind_goes_to_the_next_thread_done_or_to_an_idle_one_when_asked() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let (ran_tx, ran) = channel();
        // The only thread busy until told: it will come back for a task
        // queued behind, so nobody is woken, and it takes it when done.
        let pool = Pool::new(1, "test-pool").unwrap();
        let (release, held) = channel::<()>();
        pool.spawn(move || held.recv().unwrap());
        while idle(&pool) > 0 || !pool.queue.lock().tasks.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let tx = ran_tx.clone();
        assert!(!pool.spawn_behind(move || tx.send("next").unwrap()));
        release.send(()).unwrap();
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)), Ok("next"));

        // With every thread idle, one is woken for it.
        while idle(&pool) < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let tx = ran_tx.clone();
        assert!(pool.spawn_behind(move || tx.send("alone").unwrap()));
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)), Ok("alone"));

        // Tasks queued behind two busy threads of a pool with idle ones
        // wait for those two: two at work, as the job's limit asks.
        let pool = Pool::new(8, "test-pool").unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(3));
        pool.map(vec![0, 1, 2], move |i: u32| {
            barrier.wait();
            i
        });
        let (started_tx, started) = channel();
        let releases: Vec<_> = (0..2)
            .map(|_| {
                let (release, held) = channel::<()>();
                let started_tx = started_tx.clone();
                pool.spawn(move || {
                    started_tx.send(()).unwrap();
                    held.recv().unwrap();
                });
                release
            })
            .collect();
        started.recv().unwrap();
        started.recv().unwrap();
        // Every other thread asleep, none woken.
        while {
            let state = pool.queue.lock();
            state.idle + 2 != state.threads || state.wakeups > 0
        } {
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads = pool.threads.lock().unwrap().len();
        for name in ["first", "second"] {
            let tx = ran_tx.clone();
            assert!(!pool.spawn_behind(move || tx.send(name).unwrap()));
        }
        assert!(ran.recv_timeout(Duration::from_millis(200)).is_err());
        // Asked to, an idle thread takes them while the two still work.
        pool.wake_for_queued();
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)), Ok("first"));
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)), Ok("second"));
        for release in releases {
            release.send(()).unwrap();
        }
        // No thread was started for tasks queued behind.
        assert_eq!(pool.threads.lock().unwrap().len(), threads);
    }

    #[test]
    fn a_panicking_task_leaves_the_thread_working() {
        let pool = Pool::new(1, "test-pool").unwrap();
        pool.spawn(|| panic!("a bug"));
        assert_eq!(pool.map(vec![1], |i: i32| i + 1), [2]);
    }
}
