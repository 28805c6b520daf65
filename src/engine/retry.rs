//! Retrying a request: exponential backoff with full jitter, longer after
//! a throttling answer, a free retry for a keep-alive connection the
//! server closed while idle, and pressure counted for `workers=auto`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::rate::sleep_unless_cancelled;
use super::worker::{stopped, JobContext};
use crate::error::{ErrorKind, Result};

/// Runs `attempt` until it succeeds, fails for good, or the job is
/// cancelled. Waits between attempts with exponential backoff and full
/// jitter; a throttling answer (SlowDown, 503) backs off longer.
///
/// A failure on a reused keep-alive connection before any answer byte (the
/// server closed it while idle) is retried once at once, without counting
/// as an attempt: it says nothing about the server.
pub(crate) fn retrying<T>(
    ctx: &JobContext,
    mut attempt: impl FnMut(u32) -> Result<T>,
) -> Result<T> {
    let mut n = 1;
    let mut free_retry = true;
    loop {
        if ctx.cancelled() {
            return Err(stopped());
        }
        match attempt(n) {
            Ok(v) => return Ok(v),
            Err(e) => {
                if e.kind() == ErrorKind::Stopped || ctx.cancelled() {
                    // Whether the server may still act on what was cut off
                    // matters to cleanup: keep it.
                    return Err(stopped().with_outcome_unknown(e.outcome_unknown()));
                }
                if e.is_stale_connection() && free_retry {
                    log::debug!("retrying on a new connection: {e}");
                    free_retry = false;
                    continue;
                }
                if e.is_throttle() || matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout) {
                    ctx.pressure.fetch_add(1, Ordering::Relaxed);
                }
                if !e.is_retryable() || n >= ctx.attempts {
                    return Err(e.with_attempts(n));
                }
                log::debug!("attempt {n} failed, retrying: {e}");
                if !sleep_unless_cancelled(backoff(n, e.is_throttle()), &ctx.cancel) {
                    return Err(stopped());
                }
                n += 1;
            }
        }
    }
}

/// Full-jitter exponential backoff: a random wait in [0, min(cap, base·2ⁿ⁻¹)].
pub(super) fn backoff(attempt: u32, throttled: bool) -> Duration {
    let (base_ms, cap_ms) = if throttled {
        (500u64, 20_000)
    } else {
        (100, 5_000)
    };
    let upper = base_ms
        .saturating_mul(1u64 << (attempt - 1).min(20))
        .min(cap_ms);
    Duration::from_millis(random_below(upper + 1))
}

pub(super) fn random_below(n: u64) -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            let here = &t as *const u64 as u64;
            (t ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x % n.max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt, false);
            assert!(d <= Duration::from_millis(5_000));
            let t = backoff(attempt, true);
            assert!(t <= Duration::from_millis(20_000));
        }
        assert!(backoff(1, false) <= Duration::from_millis(100));
    }
}
