//! How many requests a job keeps in flight: a fixed number (`workers=N`),
//! or, with `workers=auto`, as many as make the transfer faster.
//!
//! On loopback every request is nearly free and a few dozen saturate the
//! CPU; on a link with 40 ms of round trip, small files need hundreds in
//! flight (s5cmd runs 256 workers; the CRT scales connections to a target
//! throughput). `auto` finds the point by hill climbing on what is
//! measured, once per [`WINDOW`]:
//! - while the job is held back by the limit (work waited for a slot),
//!   probe: double the limit (a far server is found in a second: 16, 32,
//!   64, 128, 256);
//! - after a raise, keep it only if throughput grew by [`GAIN`]; otherwise
//!   go back and hold for [`HOLD`] before probing again. A raise that paid
//!   nearly in full (throughput up [`STEEP`]: far from what the link or
//!   the server allow) is followed by a fourfold one, so 40 ms of round
//!   trip reaches 256 a window sooner;
//! - on pressure (a 503 SlowDown, a connection error, a timeout: counted by
//!   the workers' retry loop) cut the limit by a third and hold.
//!
//! A far store is known before the first window ends: once the shortest
//! wait for an answer (the round trip, about; `Store::answer_floor`) is
//! [`NEAR`] or more, the limit starts over at what that round trip needs
//! ([`START`] per [`NEAR`] of it: 40 ms gives 256, 10 ms 64), once per job,
//! and climbs on from there, but to no more than [`START_BYTES`] in flight
//! (big parts need few requests to fill a link: 4 x 256 MiB in 8 MiB parts
//! get no such start). Up from 16 by doubling, 40 ms of round trip
//! spent its first 0.75 s below 256 (2,000 x 64 KiB upload through the
//! bench's latency proxy: 1.78 -> 1.50 s, bench/NOTES.md). A store that
//! pushed back first (pressure, before or after a window counted it) gets
//! no such start: the answers it delays say as much about its load as
//! about the distance.
//!
//! The start is a guess from the first answers, and they can mislead. A
//! new connection's first answer can wait for a TLS front to reach the
//! server (`Store::answer_floor` leaves those out: timed, they started
//! loopback behind stunnel at 24-256). And a near server busy with other
//! work answers the first requests late. So until a window has measured
//! it, the start follows the floor down as shorter answers come, to no
//! less than [`START`]. A far store's floor does not drop below its round
//! trip, so its start stands. Once a start is too high on a near store,
//! its answers queue and stay late, so the floor alone cannot undo it;
//! hence the care over which answers count.
//!
//! The pool holds up to `max_workers` threads, started as the limit needs
//! them; idle ones wait on the pool's queue at no cost (see `engine::pool`).

use std::time::{Duration, Instant};

/// How often the limit is reconsidered.
pub(super) const WINDOW: Duration = Duration::from_millis(250);
/// Throughput must grow this much for a raise to be kept.
const GAIN: f64 = 1.08;
/// A doubling that grew throughput this much is followed by a fourfold
/// raise.
const STEEP: f64 = 1.6;
/// After a raise that did not pay, or after pressure, how long the limit
/// stays put.
const HOLD: Duration = Duration::from_secs(6);
/// Where `auto` starts.
pub(super) const START: usize = 16;
/// The lowest pressure cuts it to.
const FLOOR: usize = 2;
/// The round trip [`START`] requests in flight are right for: a store
/// whose answers never begin sooner than this is far, and starts with
/// `START` per `NEAR` of its round trip. Loopback answers within a
/// millisecond; s3s-fs on loopback keeps two cores busy with 16.
const NEAR: Duration = Duration::from_micros(2500);
/// The most bytes the start from the round trip puts in flight: 256
/// requests of 128 KiB. Beyond what the round trip alone asks for, the
/// link's width decides, and the climb finds that.
const START_BYTES: u64 = 32 << 20;

/// The limit of one job and what it learnt.
#[derive(Debug)]
pub(super) struct Concurrency {
    adaptive: bool,
    limit: usize,
    max: usize,
    window_start: Instant,
    bytes_at_start: u64,
    pressure_at_start: u64,
    /// Work waited for a slot during this window.
    held_back: bool,
    /// The limit and throughput before the last raise, while probing.
    probe: Option<(usize, f64)>,
    hold_until: Option<Instant>,
    /// The round trip has been looked at (once per job).
    placed: bool,
    /// The limit the start from the round trip set, until a window
    /// measured it: a shorter floor revises it (see the module's doc).
    placed_limit: Option<usize>,
    /// The job's bytes per request, on average (0: not known).
    request_size: u64,
}

impl Concurrency {
    pub fn new(adaptive: bool, fixed: usize, max: usize, now: Instant) -> Concurrency {
        Concurrency {
            adaptive,
            limit: if adaptive { START.min(max) } else { fixed },
            max: if adaptive { max } else { fixed },
            window_start: now,
            bytes_at_start: 0,
            pressure_at_start: 0,
            held_back: false,
            probe: None,
            hold_until: None,
            placed: false,
            placed_limit: None,
            request_size: 0,
        }
    }

    /// For a job whose requests carry `bytes` each, on average: the start
    /// from the round trip puts at most [`START_BYTES`] in flight.
    pub fn with_request_size(mut self, bytes: u64) -> Concurrency {
        self.request_size = bytes;
        self
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Work was ready while every slot was taken.
    pub fn note_held_back(&mut self) {
        self.held_back = true;
    }

    /// Called every heartbeat with the bytes ever handed to the network,
    /// the pressure events ever counted and the store's answer floor (see
    /// the module's doc); returns the new limit when it changed.
    pub fn tick(
        &mut self,
        now: Instant,
        bytes: u64,
        pressure: u64,
        floor: Option<Duration>,
    ) -> Option<usize> {
        if !self.adaptive {
            return None;
        }
        if let Some(limit) = floor.and_then(|floor| self.place(pressure, floor)) {
            if limit < self.limit {
                // A revision: while the requests beyond the new limit
                // finish, few are sent, and a raise measured against that
                // would seem to pay (a download on loopback went 23, 16,
                // then 32 and 64). The window after this one measures.
                self.hold_until = Some(now + WINDOW * 2);
            }
            // A new start: the climb measures from here.
            self.limit = limit;
            self.placed_limit = Some(limit);
            self.window_start = now;
            self.bytes_at_start = bytes;
            self.pressure_at_start = pressure;
            self.held_back = false;
            self.probe = None;
            return Some(limit);
        }
        let elapsed = now.duration_since(self.window_start);
        if elapsed < WINDOW {
            return None;
        }
        let rate = bytes.saturating_sub(self.bytes_at_start) as f64 / elapsed.as_secs_f64();
        let pressed = pressure > self.pressure_at_start;
        let held_back = self.held_back;
        self.window_start = now;
        self.bytes_at_start = bytes;
        self.pressure_at_start = pressure;
        self.held_back = false;
        let before = self.limit;
        // From here on what is measured moves the limit, not the guess.
        self.placed_limit = None;
        if pressed {
            self.limit = (self.limit * 2 / 3).max(FLOOR);
            self.probe = None;
            self.hold_until = Some(now + HOLD);
        } else if let Some((old_limit, old_rate)) = self.probe.take() {
            if rate >= old_rate * GAIN {
                // It paid: try further, faster if it paid nearly in full.
                let factor = if rate >= old_rate * STEEP { 4 } else { 2 };
                self.raise(rate, factor);
            } else {
                self.limit = old_limit;
                self.hold_until = Some(now + HOLD);
            }
        } else if held_back && self.hold_until.is_none_or(|t| now >= t) {
            self.raise(rate, 2);
        }
        (self.limit != before).then_some(self.limit)
    }

    /// The start from the round trip, when it changes the limit: taken at
    /// the first floor known, then revised down as the floor drops, until
    /// a window measured it (see the module's doc).
    fn place(&mut self, pressure: u64, floor: Duration) -> Option<usize> {
        let needed = (START as f64 * floor.as_secs_f64() / NEAR.as_secs_f64()) as usize;
        let by_bytes = START_BYTES
            .checked_div(self.request_size)
            .map_or(usize::MAX, |n| n as usize);
        let needed = needed.min(by_bytes).min(self.max);
        if !self.placed {
            self.placed = true;
            // Not over a store that already pushed back (a SlowDown, a
            // cut connection, a timeout, whether or not a window has
            // counted it yet): its cut and hold stand.
            let pushed_back = pressure > 0 || self.hold_until.is_some();
            return (needed > self.limit && !pushed_back).then_some(needed);
        }
        // A shorter answer than the one the start was taken from: the
        // store is nearer than it looked.
        let placed = self.placed_limit?;
        let revised = needed.max(START.min(self.max));
        (revised < placed && self.limit == placed).then_some(revised)
    }

    fn raise(&mut self, rate: f64, factor: usize) {
        let next = (self.limit * factor).min(self.max);
        if next > self.limit {
            self.probe = Some((self.limit, rate));
            self.limit = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs windows where throughput is `rate(limit)` and work is always
    /// held back; returns the limit after each window.
    fn climb(max: usize, rate: impl Fn(usize) -> f64, windows: usize) -> Vec<usize> {
        let t0 = Instant::now();
        let mut c = Concurrency::new(true, 0, max, t0);
        let mut bytes = 0.0;
        let mut out = Vec::new();
        for i in 1..=windows {
            c.note_held_back();
            bytes += rate(c.limit()) * WINDOW.as_secs_f64();
            c.tick(t0 + WINDOW * i as u32, bytes as u64, 0, None);
            out.push(c.limit());
        }
        out
    }

    #[test]
    fn a_link_that_rewards_concurrency_climbs_to_the_maximum() {
        // Latency-bound: throughput proportional to requests in flight.
        let limits = climb(64, |l| l as f64 * 1e6, 12);
        assert_eq!(*limits.last().unwrap(), 64, "{limits:?}");
        // A doubling that paid in full is followed by a fourfold raise:
        // 16, 32, 128, 256 in three windows.
        let limits = climb(256, |l| l as f64 * 1e6, 3);
        assert_eq!(limits, [32, 128, 256]);
        // One that paid only in part is not.
        let limits = climb(256, |l| (l as f64).sqrt() * 1e6, 2);
        assert_eq!(limits, [32, 64]);
    }

    #[test]
    fn a_saturated_server_keeps_the_limit_where_it_was() {
        // Already saturated at 16: raising does not pay, so it goes back.
        let limits = climb(64, |_| 500e6, 40);
        assert!(limits.iter().all(|&l| l <= 32), "{limits:?}");
        assert_eq!(limits[1], 16, "{limits:?}");
        // And stays at 16 between probes (a probe every HOLD).
        let at_16 = limits.iter().filter(|&&l| l == 16).count();
        assert!(at_16 >= limits.len() * 3 / 4, "{limits:?}");
    }

    #[test]
    fn the_optimum_is_found_between_start_and_maximum() {
        // Gains up to 100 in flight, flat after: 128 still pays over 64,
        // 256 does not over 128, so it settles at 128.
        let limits = climb(256, |l| (l.min(100) as f64) * 1e6, 40);
        let settled = limits[limits.len() - 6..]
            .iter()
            .filter(|&&l| l == 128)
            .count();
        assert!(settled >= 5, "{limits:?}");
    }

    #[test]
    fn pressure_cuts_the_limit_and_holds_it() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(true, 0, 64, t0);
        c.note_held_back();
        assert_eq!(c.tick(t0 + WINDOW, 1_000_000, 0, None), Some(32));
        // A SlowDown in the next window.
        assert_eq!(c.tick(t0 + WINDOW * 2, 3_000_000, 1, None), Some(21));
        c.note_held_back();
        // Held: no probe while HOLD runs.
        assert_eq!(c.tick(t0 + WINDOW * 3, 4_000_000, 1, None), None);
        c.note_held_back();
        assert!(c.tick(t0 + WINDOW * 3 + HOLD, 9_000_000, 1, None).is_some());
    }

    #[test]
    fn a_far_store_starts_at_what_its_round_trip_needs() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Loopback: no change, and the floor is looked at once.
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(
            c.tick(t0 + ms(100), 0, 0, Some(Duration::from_micros(300))),
            None
        );
        assert_eq!(c.limit(), START);
        // 40 ms: 256 at once, and the climb goes on from there.
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, None), None);
        assert_eq!(c.tick(t0 + ms(200), 5, 0, Some(ms(40))), Some(256));
        // 10 ms: 64 (below), within the maximum.
        let mut c = Concurrency::new(true, 0, 48, t0);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, Some(ms(10))), Some(48));
        // Big requests: no more than START_BYTES in flight from it (8 MiB
        // parts: 4, under the start of 16, so none).
        let mut c = Concurrency::new(true, 0, 256, t0).with_request_size(8 << 20);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, Some(ms(40))), None);
        let mut c = Concurrency::new(true, 0, 256, t0).with_request_size(1 << 20);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, Some(ms(40))), Some(32));
        let mut c = Concurrency::new(true, 0, 256, t0).with_request_size(64 << 10);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, Some(ms(40))), Some(256));
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(100), 0, 0, Some(ms(10))), Some(64));
        // Once per job: a later, longer floor changes nothing by itself.
        assert_eq!(c.tick(t0 + ms(150), 0, 0, Some(ms(40))), None);
        assert_eq!(c.limit(), 64);
        // From there it climbs as before while it pays.
        c.note_held_back();
        assert_eq!(
            c.tick(t0 + ms(100) + WINDOW, 1 << 20, 0, Some(ms(10))),
            Some(128)
        );
    }

    #[test]
    fn a_start_from_a_late_first_answer_follows_shorter_answers_down() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // The first answer took 20 ms (a new connection through a TLS
        // front): 128. Then one took 5 ms: 32. Then a reused connection's
        // 0.4 ms: back at the start, and no lower.
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(20), 0, 0, Some(ms(20))), Some(128));
        assert_eq!(c.tick(t0 + ms(21), 0, 0, Some(ms(20))), None);
        assert_eq!(c.tick(t0 + ms(22), 0, 0, Some(ms(5))), Some(32));
        let near = Some(Duration::from_micros(400));
        assert_eq!(c.tick(t0 + ms(23), 0, 0, near), Some(START));
        assert_eq!(c.tick(t0 + ms(24), 0, 0, near), None);
        assert_eq!(c.limit(), START);
        // The climb goes on from there as on any near store, a window
        // later: the first window after a revision sees the requests
        // beyond it finish, and little sent.
        c.note_held_back();
        assert_eq!(c.tick(t0 + ms(23) + WINDOW, 1 << 20, 0, near), None);
        c.note_held_back();
        assert_eq!(c.tick(t0 + ms(23) + WINDOW * 2, 3 << 20, 0, near), Some(32));
        // Once a window measured the start, a shorter answer moves it no
        // more: whether the climb raised it,
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(20), 0, 0, Some(ms(20))), Some(128));
        c.note_held_back();
        assert_eq!(
            c.tick(t0 + ms(20) + WINDOW, 1 << 20, 0, Some(ms(20))),
            Some(256)
        );
        assert_eq!(c.tick(t0 + ms(30) + WINDOW, 1 << 20, 0, near), None);
        assert_eq!(c.limit(), 256);
        // kept it,
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(20), 0, 0, Some(ms(20))), Some(128));
        assert_eq!(c.tick(t0 + ms(20) + WINDOW, 0, 0, Some(ms(20))), None);
        assert_eq!(c.tick(t0 + ms(30) + WINDOW, 0, 0, near), None);
        assert_eq!(c.limit(), 128);
        // or cut it for pressure.
        let mut c = Concurrency::new(true, 0, 256, t0);
        assert_eq!(c.tick(t0 + ms(20), 0, 0, Some(ms(20))), Some(128));
        assert_eq!(c.tick(t0 + ms(20) + WINDOW, 0, 1, Some(ms(20))), Some(85));
        assert_eq!(c.tick(t0 + ms(30) + WINDOW, 0, 1, near), None);
        assert_eq!(c.limit(), 85);
    }

    #[test]
    fn a_store_that_pushed_back_gets_no_start_from_its_round_trip() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // A SlowDown before the floor was known (not yet counted by a
        // window): the start from a 40 ms round trip is not taken.
        let mut c = Concurrency::new(true, 0, 64, t0);
        assert_eq!(c.tick(t0 + ms(100), 0, 3, Some(ms(40))), None);
        assert_eq!(c.limit(), START);
        // One a window cut for: the cut and its hold stand.
        let mut c = Concurrency::new(true, 0, 64, t0);
        assert_eq!(c.tick(t0 + WINDOW, 0, 3, None), Some(START * 2 / 3));
        assert_eq!(c.tick(t0 + WINDOW + ms(10), 0, 3, Some(ms(40))), None);
        assert_eq!(c.limit(), START * 2 / 3);
    }

    #[test]
    fn a_fixed_count_never_moves() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(false, 7, 64, t0);
        c.note_held_back();
        assert_eq!(
            c.tick(t0 + WINDOW * 5, 1 << 30, 9, Some(Duration::from_millis(40))),
            None
        );
        assert_eq!(c.limit(), 7);
    }

    #[test]
    fn no_probe_while_the_job_has_less_work_than_slots() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(true, 0, 64, t0);
        assert_eq!(c.tick(t0 + WINDOW, 1 << 20, 0, None), None);
        assert_eq!(c.limit(), START);
    }
}
