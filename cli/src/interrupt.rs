//! Ctrl-C and SIGTERM while a job runs, and following the job to its end.
//!
//! The first signal ends the job the gentle way: a journaled job is
//! paused (an upload's open uploads and acknowledged parts stay on the
//! server, a download's temporary files on disk, for `batchput resume`),
//! any other is stopped (open uploads aborted, unfinished temporary files
//! removed). A second signal quits at once, whatever is left. Not an API
//! (see the crate's docs).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use batchput::{Job, JobState, Progress};

use crate::progress::{Display, Rate};
use crate::ui::Direction;

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The job is a download: what a quit without cleanup leaves is said so.
static DOWNLOADING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(sig: libc::c_int) {
    // Only async-signal-safe work here: atomics, write(2), _exit(2).
    let _ = FIRST_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
        const UPLOAD: &[u8] = b"\nbatchput: interrupted again, exiting without cleanup; \
            open multipart uploads may remain ('batchput cleanup' aborts them)\n";
        const DOWNLOAD: &[u8] = b"\nbatchput: interrupted again, exiting without cleanup; \
            temporary .NAME.batchput-partial files may remain beside the destinations\n";
        let msg = if DOWNLOADING.load(Ordering::SeqCst) {
            DOWNLOAD
        } else {
            UPLOAD
        };
        // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is static.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(128 + sig);
        }
    }
}

/// Catches SIGINT and SIGTERM: the first is recorded for [`interrupted`]
/// (the caller pauses or stops its job); a second one exits at once.
pub fn catch_interrupts() {
    catch_interrupts_for(Direction::Upload);
}

/// [`catch_interrupts`] for a job moving `direction`: a second signal says
/// what it leaves behind in that job's terms.
pub fn catch_interrupts_for(direction: Direction) {
    DOWNLOADING.store(direction == Direction::Download, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler only touches atomics and async-signal-safe
        // calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The first signal caught by [`catch_interrupts`], if any.
pub fn interrupted() -> Option<i32> {
    match FIRST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How a signal is named to the person who sent it: `"Ctrl-C"`, `"SIGTERM"`.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "Ctrl-C",
        _ => "a signal",
    }
}

/// What "quit at once" takes after signal `sig`, said in its own terms.
fn again(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "a second SIGTERM or Ctrl-C quits at once",
        _ => "press Ctrl-C again to quit at once",
    }
}

/// What the first interrupt does to the job.
#[derive(Debug, Clone)]
pub enum OnInterrupt {
    /// Stop: cut what is in flight, abort every open upload.
    Stop,
    /// Pause: cut what is in flight, keep the uploads and their parts; the
    /// journal at this path resumes them.
    Pause(PathBuf),
}

/// How a watched job ended.
pub struct Outcome {
    /// The final snapshot.
    pub progress: Progress,
    /// The signal that stopped or paused it, when one did.
    pub signal: Option<i32>,
    /// The highest speed of bytes sent that the display measured.
    pub peak_bps: Option<f64>,
}

impl Outcome {
    /// The process exit code: 0 success, 1 failure, 128 + signal when a
    /// signal stopped or paused it (130 for Ctrl-C, 143 for SIGTERM).
    pub fn exit_code(&self) -> u8 {
        match (self.progress.state, self.signal) {
            (JobState::Succeeded, _) => 0,
            (JobState::Stopped | JobState::Paused, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
            _ => 1,
        }
    }
}

/// Follows `job` to its end, redrawing `display`; on the first interrupt
/// it pauses or stops the job as `on_interrupt` says and keeps waiting for
/// that to finish.
pub fn watch(job: &Job, display: &Display, on_interrupt: &OnInterrupt) -> Outcome {
    let mut signal = None;
    let mut rate = Rate::new();
    loop {
        let finished = job.wait(Some(Duration::from_millis(100)));
        let p = job.progress();
        // A resumed job's kept bytes were never sent by it.
        rate.add(p.elapsed, p.bytes_sent.saturating_sub(p.bytes_resumed));
        display.update(&p, &rate);
        if finished {
            display.finish();
            return Outcome {
                progress: p,
                signal,
                peak_bps: rate.peak(),
            };
        }
        if signal.is_none() {
            if let Some(sig) = interrupted() {
                signal = Some(sig);
                let paused = match on_interrupt {
                    OnInterrupt::Pause(_) => job.pause().is_ok(),
                    OnInterrupt::Stop => false,
                };
                let (pausing, stopping) = match display.direction() {
                    Direction::Upload => (
                        "acknowledged parts stay on the server for resume",
                        "aborting open uploads",
                    ),
                    Direction::Download => (
                        "fetched parts stay in the temporary files for resume",
                        "removing unfinished temporary files",
                    ),
                };
                if paused {
                    display.note(&format!(
                        "{}: pausing; {pausing} ({})",
                        signal_name(sig),
                        again(sig)
                    ));
                } else {
                    job.stop();
                    display.note(&format!(
                        "{}: stopping and {stopping} ({})",
                        signal_name(sig),
                        again(sig)
                    ));
                }
            }
        }
    }
}
