//! One token bucket per uploader, shared by all its workers, so
//! `rate_limit` caps the uploader's total bytes per second whatever the
//! worker count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket of `rate` bytes per second. Its burst is a quarter of a
/// second's worth (at least one chunk), so the cap holds over short spans.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(bytes_per_sec: u64) -> TokenBucket {
        let rate = bytes_per_sec as f64;
        let burst = (rate / 4.0).max(super::worker::CHUNK as f64);
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes `n` bytes' worth of tokens, sleeping as long as the debt
    /// requires. Returns early (false) when `cancel` is set.
    pub fn take(&self, n: u64, cancel: &AtomicBool) -> bool {
        let wait = {
            let mut s = self.state.lock();
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
            s.0 = (s.0 + refill).min(self.burst);
            s.1 = now;
            s.0 -= n as f64;
            // A negative balance is debt this caller sleeps off; later
            // callers see it too, so the total rate holds.
            (s.0 < 0.0).then(|| Duration::from_secs_f64(-s.0 / self.rate))
        };
        match wait {
            Some(w) => sleep_unless_cancelled(w, cancel),
            None => !cancel.load(Ordering::Relaxed),
        }
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
    fn cancel_cuts_the_wait() {
        let b = TokenBucket::new(1);
        let cancel = AtomicBool::new(true);
        let t = Instant::now();
        assert!(!b.take(1 << 20, &cancel));
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
