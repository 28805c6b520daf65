//! One token bucket per uploader, shared by all its workers, so
//! `rate_limit` caps the uploader's total bytes per second whatever the
//! worker count.
//!
//! The bucket also tells the stall detector when a worker is only waiting
//! for it: time spent in our own limiter is pacing, not a stalled server.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How recent a grant must be for a waiting worker to count as alive.
const GRANTED_WITHIN: Duration = Duration::from_secs(1);

/// A token bucket of `rate` bytes per second. Its burst is a quarter of a
/// second's worth (at least one byte), so the cap holds over short spans
/// at any rate; a request larger than the burst is granted a burst at a
/// time, so a waiter sees a grant every quarter second.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
    /// Workers inside `take`.
    waiting: AtomicUsize,
    /// When tokens were last granted, in nanoseconds after `born`.
    last_grant_ns: AtomicU64,
    born: Instant,
}

/// Counts a worker as waiting for as long as it is inside `take`, even if
/// the wait ends in a panic.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TokenBucket {
    pub fn new(bytes_per_sec: u64) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).max(1.0);
        let born = Instant::now();
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, born)),
            waiting: AtomicUsize::new(0),
            last_grant_ns: AtomicU64::new(0),
            born,
        }
    }

    /// Takes `n` bytes' worth of tokens, sleeping as long as the debt
    /// requires. Returns early (false) when `cancel` is set.
    pub fn take(&self, n: u64, cancel: &AtomicBool) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let mut left = n as f64;
        while left > 0.0 {
            let slice = left.min(self.burst);
            left -= slice;
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
                s.0 = (s.0 + refill).min(self.burst);
                s.1 = now;
                s.0 -= slice;
                // A negative balance is debt this caller sleeps off; later
                // callers see it too, so the total rate holds.
                (s.0 < 0.0).then(|| Duration::from_secs_f64(-s.0 / self.rate))
            };
            let granted = match wait {
                Some(w) => sleep_unless_cancelled(w, cancel),
                None => !cancel.load(Ordering::Relaxed),
            };
            if !granted {
                return false;
            }
            self.mark_granted();
        }
        !cancel.load(Ordering::Relaxed)
    }

    fn mark_granted(&self) {
        let ns = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_grant_ns.store(ns, Ordering::Relaxed);
    }

    /// Whether a worker is waiting in this limiter and the limiter granted
    /// tokens within the last second: the job is being paced by us, not
    /// stalled by the server, and the stall timer must not fire.
    pub fn is_pacing(&self) -> bool {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let last = Duration::from_nanos(self.last_grant_ns.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last) < GRANTED_WITHIN
    }
}

/// Sleeps for `d` in short steps; returns false as soon as `cancel` is set.
pub(crate) fn sleep_unless_cancelled(d: Duration, cancel: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bucket_holds_the_rate() {
        let b = TokenBucket::new(1 << 20);
        let cancel = AtomicBool::new(false);
        let t = Instant::now();
        // A quarter second of burst, then 1.75 MiB more takes 1.75 s.
        for _ in 0..8 {
            assert!(b.take(256 << 10, &cancel));
        }
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(1600), "{e:?}");
        assert!(e < Duration::from_millis(2500), "{e:?}");
    }

    #[test]
    fn a_low_rate_holds_over_one_large_request() {
        // 8 KiB/s: one 16 KiB request is not a free burst; it takes about
        // (16 - 2) / 8 = 1.75 s.
        let b = TokenBucket::new(8 << 10);
        let cancel = AtomicBool::new(false);
        let t = Instant::now();
        assert!(b.take(16 << 10, &cancel));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(1600), "{e:?}");
        assert!(e < Duration::from_millis(2500), "{e:?}");
    }

    #[test]
    fn a_waiter_is_pacing_while_grants_keep_coming() {
        let b = Arc::new(TokenBucket::new(4 << 10));
        assert!(!b.is_pacing(), "nobody waits yet");
        let cancel = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (b, cancel) = (b.clone(), cancel.clone());
            // 3 s of tokens at 4 KiB/s.
            std::thread::spawn(move || b.take(12 << 10, &cancel))
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(2000) {
            std::thread::sleep(Duration::from_millis(100));
            assert!(b.is_pacing(), "not pacing after {:?}", t.elapsed());
        }
        cancel.store(true, Ordering::Relaxed);
        assert!(!waiter.join().unwrap(), "cancel ends the wait");
        assert!(!b.is_pacing(), "nobody waits any more");
    }

    #[test]
    fn cancel_cuts_the_wait() {
        let b = TokenBucket::new(1);
        let cancel = AtomicBool::new(true);
        let t = Instant::now();
        assert!(!b.take(1 << 20, &cancel));
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
