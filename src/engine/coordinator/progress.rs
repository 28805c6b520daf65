//! The heartbeat and what callers see: the stall and deadline checks, speed
//! sampling, and the snapshot `poll` copies out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Coordinator, Ending, FileRun, SAMPLE_EVERY, SPEED_WINDOW};
use crate::error::{Error, ErrorKind};
use crate::job::{FileState, FileStatus};

impl Coordinator<'_> {
    // ------------------------------------------------------------ heartbeat

    pub(super) fn heartbeat(&mut self) {
        let now = Instant::now();
        if self.ending.is_none() {
            let halt = *self.shared.halt.lock();
            if let Some(halt) = halt {
                self.begin_ending(Ending::Halted(halt));
            }
        }
        // Bytes on the wire count as life for the stall detector even
        // before the server acknowledges them (a 1 GiB part takes a while).
        let sent = self.ctx.activity.load(Ordering::Relaxed);
        if sent != self.last_sent {
            self.last_sent = sent;
            self.last_progress = now;
        }
        // Waiting in our own rate limiter is pacing, not a stall.
        if self.engine.rate.as_ref().is_some_and(|r| r.is_pacing()) {
            self.last_progress = now;
        }
        if self.ending.is_none() {
            let cfg = &self.engine.cfg;
            let stalled = now.duration_since(self.last_progress);
            if stalled >= cfg.stall_timeout {
                let e = Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "stalled: nothing sent or acknowledged for {} ms (stall_timeout_ms) while {}",
                        stalled.as_millis(),
                        self.describe_in_flight()
                    ),
                );
                self.begin_ending(Ending::Failed(e));
            } else if let Some(deadline) = cfg.deadline {
                if now.duration_since(self.started) >= deadline {
                    let e = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "deadline of {} ms (deadline_ms) passed with {} of {} files done",
                            deadline.as_millis(),
                            self.files_done,
                            self.plans.len()
                        ),
                    );
                    self.begin_ending(Ending::Failed(e));
                }
            }
        }
        let pressure = self.ctx.pressure.load(Ordering::Relaxed);
        let floor = self.engine.store.answer_floor();
        let before = self.concurrency.limit();
        if let Some(limit) = self.concurrency.tick(now, sent, pressure, floor) {
            log::debug!("requests in flight: up to {limit} now");
            // A cut (pressure, or a raise that did not pay) takes effect
            // only once the threads at work are within it: see
            // `dispatch_limit`.
            self.draining |= limit < before && self.queue_behind;
        }
        if now.duration_since(self.last_sample) >= SAMPLE_EVERY {
            self.sample(now);
        }
    }

    fn describe_in_flight(&self) -> String {
        // Tasks beyond the limit wait in the pool's queue, not on the wire.
        let in_flight = self.in_flight.min(self.concurrency.limit());
        let running: Vec<&str> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == FileState::Running)
            .take(3)
            .map(|(i, _)| &*self.keys[i])
            .collect();
        if running.is_empty() {
            format!("{in_flight} request(s) were in flight")
        } else {
            format!(
                "{} request(s) were in flight for '{}'{}",
                in_flight,
                running.join("', '"),
                if self
                    .files
                    .iter()
                    .filter(|r| r.state == FileState::Running)
                    .count()
                    > 3
                {
                    " and more"
                } else {
                    ""
                }
            )
        }
    }

    fn sample(&mut self, now: Instant) {
        self.last_sample = now;
        self.samples.push_back((now, self.bytes_done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > SPEED_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front().expect("just pushed");
        let dt = now.duration_since(t0).as_secs_f64();
        if dt >= 0.5 {
            self.speed = (self.bytes_done - b0) as f64 / dt;
            self.peak = self.peak.max(self.speed);
        }
        for (i, run) in self.files.iter_mut().enumerate() {
            if run.state != FileState::Running {
                continue;
            }
            let dt = now.duration_since(run.sample.0).as_secs_f64();
            if dt >= 1.0 {
                let speed = (run.bytes_done - run.sample.1) as f64 / dt;
                run.peak = run.peak.max(speed);
                run.sample = (now, run.bytes_done);
                self.dirty.push(i);
            }
        }
    }

    // ------------------------------------------------------------ publish

    pub(super) fn publish(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        let mut p = self.shared.published.lock();
        let prog = &mut p.progress;
        prog.files_done = self.files_done;
        prog.files_failed = self.files_failed;
        prog.parts_done = self.parts_done;
        prog.bytes_done = self.bytes_done;
        // At least what is acknowledged: an acknowledgement can land before
        // the sender's count does.
        prog.bytes_sent = self
            .ctx
            .bytes_sent
            .load(Ordering::Relaxed)
            .max(self.bytes_done);
        prog.speed_bps = self.speed;
        prog.elapsed = elapsed;
        prog.avg_speed_bps = if elapsed.as_secs_f64() > 0.0 {
            (self.bytes_done - self.bytes_resumed) as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        // A job shorter than the smoothing window has no smoothed sample:
        // its peak is at least its average.
        prog.peak_speed_bps = self.peak.max(self.speed).max(prog.avg_speed_bps);
        if prog.error.is_none() {
            if let Some(Ending::Failed(e)) = &self.ending {
                prog.error = Some(e.clone());
            }
        }
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for f in self.dirty.drain(..) {
            p.files[f] = status_of(&self.files[f], now);
        }
    }
}

fn status_of(run: &FileRun, now: Instant) -> FileStatus {
    let avg = match run.started {
        Some(start) => {
            let end = run.finished.unwrap_or(now);
            let secs = end.duration_since(start).as_secs_f64();
            if secs > 0.0 {
                run.bytes_done as f64 / secs
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    FileStatus {
        bytes_done: run.bytes_done,
        avg_speed_bps: avg,
        peak_speed_bps: run.peak.max(avg),
        state: run.state,
        etag: run.etag.clone(),
        upload_id: run.upload_id.as_deref().map(str::to_string),
        endpoint: run.endpoint.clone(),
        error: run.error.clone(),
        verified: run.verified,
    }
}
