//! The library's log, for a C host to pull: `bp_set_log_level` installs a
//! `log::Log` that keeps records in a bounded in-memory ring, and
//! `bp_log_next` takes them out one at a time.
//!
//! Pull, not callbacks: records are written by library threads (workers,
//! coordinator) that the host did not start, and no host code may run
//! there. The logger never blocks and never calls out: a record is
//! formatted, then pushed into a lock-free bounded channel; when the ring
//! is full the oldest record is dropped and counted, and the next
//! bp_log_next reports how many were lost.

use std::ffi::c_char;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::error::{bp_status, copy_message, invalid_argument, set_last_error};
use super::panic::ffi_panic_boundary;

/// How much the library logs (bp_set_log_level) and how much a record
/// matters (bp_log_next). In C a `uint32_t`, like bp_status; each level
/// includes the ones above it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bp_log_level {
    /// Nothing.
    BP_LOG_OFF = 0,
    /// A job failed; an abort failed (an upload is left on the server).
    BP_LOG_ERROR = 1,
    /// Something the host should know but that did not fail the job.
    BP_LOG_WARN = 2,
    /// Resumes, orphaned uploads found, and other rare events.
    BP_LOG_INFO = 3,
    /// Retries and their reasons.
    BP_LOG_DEBUG = 4,
    /// Everything, dependencies' details included (TLS): verbose.
    BP_LOG_TRACE = 5,
}

/// Records kept until bp_log_next takes them; past this the oldest go.
const RING_CAPACITY: usize = 1000;

/// A longer record is cut to this many bytes (memory stays bounded: at most
/// RING_CAPACITY records of this size).
const MAX_RECORD_BYTES: usize = 4096;

/// One log record: its level (a bp_log_level value) and "target: message".
#[derive(Debug, PartialEq, Eq)]
struct Record {
    level: u32,
    text: String,
}

/// A bounded ring of records: pushing never blocks, and a full ring drops
/// its oldest record to make room.
struct Ring {
    sender: Sender<Record>,
    receiver: Receiver<Record>,
    dropped: AtomicU64,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        Ring {
            sender,
            receiver,
            dropped: AtomicU64::new(0),
        }
    }

    fn push(&self, mut record: Record) {
        loop {
            match self.sender.try_send(record) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    record = back;
                    if self.receiver.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The ring owns both ends: it cannot be disconnected.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// The next record; first, if records were dropped since the last
    /// call, a warning that says how many.
    fn pop(&self) -> Option<Record> {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            return Some(Record {
                level: bp_log_level::BP_LOG_WARN as u32,
                text: format!(
                    "batchput: {dropped} log records dropped (the log keeps \
                     {RING_CAPACITY}: call bp_log_next more often)"
                ),
            });
        }
        self.receiver.try_recv().ok()
    }
}

static RING: LazyLock<Ring> = LazyLock::new(|| Ring::new(RING_CAPACITY));

/// The `log::Log` bp_set_log_level installs.
struct RingLogger;

static LOGGER: RingLogger = RingLogger;

/// Whether RingLogger is the process's logger: decided by the first
/// bp_set_log_level, for good (`log` takes one logger per process).
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn level_number(level: ::log::Level) -> u32 {
    (match level {
        ::log::Level::Error => bp_log_level::BP_LOG_ERROR,
        ::log::Level::Warn => bp_log_level::BP_LOG_WARN,
        ::log::Level::Info => bp_log_level::BP_LOG_INFO,
        ::log::Level::Debug => bp_log_level::BP_LOG_DEBUG,
        ::log::Level::Trace => bp_log_level::BP_LOG_TRACE,
    }) as u32
}

/// "target: message", cut at MAX_RECORD_BYTES on a character boundary.
fn format_record(target: &str, args: &std::fmt::Arguments<'_>) -> String {
    let mut text = String::new();
    let _ = write!(text, "{target}: {args}");
    if text.len() > MAX_RECORD_BYTES {
        let mut end = MAX_RECORD_BYTES - "...".len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

impl ::log::Log for RingLogger {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &::log::Record<'_>) {
        if self.enabled(record.metadata()) {
            RING.push(Record {
                level: level_number(record.level()),
                text: format_record(record.target(), record.args()),
            });
        }
    }

    fn flush(&self) {}
}

/// Sets how much the library logs: `level` is a bp_log_level
/// (BP_LOG_OFF ... BP_LOG_TRACE). Nothing is logged until this is called.
///
/// The first call installs batchput's logger, which keeps the last 1000
/// records in memory for bp_log_next (older ones are dropped, and counted).
/// The library never calls back: read the records from your own thread,
/// e.g. in the loop that polls a job.
///
/// Returns BP_OK; BP_INVALID_ARGUMENT for a level above BP_LOG_TRACE;
/// BP_LOGGER_IN_USE when another logger already serves the process (only a
/// Rust program that links batchput and set up its own `log` logger): the
/// records go to that logger, its level is left alone, and bp_log_next
/// stays empty. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn bp_set_log_level(level: u32) -> bp_status {
    ffi_panic_boundary!("bp_set_log_level", {
        let filter = match level {
            0 => ::log::LevelFilter::Off,
            1 => ::log::LevelFilter::Error,
            2 => ::log::LevelFilter::Warn,
            3 => ::log::LevelFilter::Info,
            4 => ::log::LevelFilter::Debug,
            5 => ::log::LevelFilter::Trace,
            _ => {
                return invalid_argument(
                    FUNCTION,
                    format_args!(
                        "argument 'level' is {level}: want BP_LOG_OFF (0) to BP_LOG_TRACE (5)"
                    ),
                )
            }
        };
        if !*INSTALLED.get_or_init(|| ::log::set_logger(&LOGGER).is_ok()) {
            set_last_error(
                FUNCTION,
                "another logger is installed in this process (by a Rust host through the \
                 `log` crate): batchput's records go to it, and bp_log_next has none",
            );
            return bp_status::BP_LOGGER_IN_USE;
        }
        ::log::set_max_level(filter);
        bp_status::BP_OK
    })
}

/// Takes the oldest log record waiting, if any.
///
/// OUT: `*level`, the record's bp_log_level (when `level` is not NULL);
/// its text, "target: message" (the target names the part of the library,
/// or the dependency, that logged it), copied into `buf` as bp_last_error
/// copies: at most `len - 1` bytes and a NUL; `*written` (when not NULL) is
/// the full length without the NUL. A record longer than the buffer is cut,
/// and taken all the same: use a buffer of 1024 bytes or more (records are
/// at most 4096 bytes). If records were dropped because the log was full,
/// the next record says how many.
///
/// Returns BP_OK with a record; BP_EMPTY (not an error) when none is
/// waiting, and then writes nothing; BP_INVALID_ARGUMENT for a NULL `buf`
/// with `len` > 0 (no record is taken). Thread safety: any thread; each
/// record goes to one caller.
#[no_mangle]
pub unsafe extern "C" fn bp_log_next(
    level: *mut u32,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bp_status {
    ffi_panic_boundary!("bp_log_next", {
        // Checked before taking a record, so a bad call loses none.
        if buf.is_null() && len > 0 {
            return invalid_argument(
                FUNCTION,
                format_args!("argument 'buf' is NULL but 'len' is {len}"),
            );
        }
        let Some(record) = RING.pop() else {
            return bp_status::BP_EMPTY;
        };
        if !level.is_null() {
            // SAFETY: not NULL, writable by the caller's contract.
            unsafe { level.write(record.level) };
        }
        // SAFETY: buf has len bytes (checked above for NULL); written is
        // NULL or writable.
        unsafe { copy_message(FUNCTION, &record.text, buf, len, written) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> Record {
        Record {
            level: 3,
            text: format!("r{n}"),
        }
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_says_how_many() {
        let ring = Ring::new(3);
        assert_eq!(ring.pop(), None);
        for n in 0..5 {
            ring.push(record(n));
        }
        let first = ring.pop().unwrap();
        assert_eq!(first.level, bp_log_level::BP_LOG_WARN as u32);
        assert!(
            first.text.contains("2 log records dropped"),
            "{}",
            first.text
        );
        // The newest three survive, oldest first.
        for n in 2..5 {
            assert_eq!(ring.pop(), Some(record(n)));
        }
        assert_eq!(ring.pop(), None);
    }

    #[test]
    fn pushing_from_many_threads_keeps_the_ring_bounded() {
        let ring = Ring::new(10);
        std::thread::scope(|s| {
            for t in 0..4 {
                let ring = &ring;
                s.spawn(move || {
                    for n in 0..1000 {
                        ring.push(record(t * 1000 + n));
                    }
                });
            }
        });
        let mut got = Vec::new();
        while let Some(r) = ring.pop() {
            got.push(r);
        }
        // The drop warning, then at most the capacity.
        assert!(got[0].text.contains("log records dropped"), "{:?}", got[0]);
        assert!(got.len() <= 11, "{}", got.len());
        let dropped: u64 = got[0].text.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(dropped + got.len() as u64 - 1, 4000);
    }

    #[test]
    fn long_records_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_RECORD_BYTES);
        let text = format_record("batchput::engine", &format_args!("{long}"));
        assert!(text.len() <= MAX_RECORD_BYTES, "{}", text.len());
        assert!(text.starts_with("batchput::engine: éé"));
        assert!(text.ends_with("..."));
        let short = format_record("t", &format_args!("job failed: {}", 42));
        assert_eq!(short, "t: job failed: 42");
    }
}
