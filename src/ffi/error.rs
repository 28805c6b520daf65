//! Status codes, their static text, and the detail messages: this
//! thread's last error (`bp_last_error`) and a job's own (`bp_job_last_error`
//! lives in `job.rs` but copies out through [`copy_message`]).

use std::cell::RefCell;
use std::ffi::c_char;
use std::fmt::Display;

use super::panic::ffi_panic_boundary;
use crate::ErrorKind;

/// What a call returned. `BP_OK` (0) is success; `BP_PENDING`, `BP_EMPTY`
/// and `BP_DONE` are not errors either (a job still running when bp_job_wait
/// timed out; no log record waiting for bp_log_next; the end of a listing);
/// every other value is a
/// failure, whose detail bp_last_error() gives (and, for a job's own failure,
/// bp_job_last_error()).
///
/// In C `bp_status` is a `uint32_t` (the enum only names the values), so its
/// size never depends on the compiler (`-fshort-enums`). Values are fixed: a
/// new status gets a new number, and a retired number is never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum bp_status {
    /// Success.
    BP_OK = 0,
    /// Not an error: the job is still running (bp_job_wait timed out).
    BP_PENDING = 1,
    /// An argument is NULL, empty or out of range; an option key is unknown
    /// or its value is bad; a required option is missing. The message names
    /// the argument or the option.
    BP_INVALID_ARGUMENT = 2,
    /// A string argument is not valid UTF-8. The message names it.
    BP_INVALID_UTF8 = 3,
    /// The call does not fit the object's state (pausing a job that has no
    /// journal, say).
    BP_MISUSE = 4,
    /// The batch is unusable: empty, a duplicate or invalid key, a
    /// directory or special file. Found by bp_start before any byte is sent.
    BP_INVALID_INPUT = 5,
    /// A local file could not be read (missing, permission, I/O error).
    BP_LOCAL_IO = 6,
    /// A source file changed size or modification time while it uploaded.
    BP_FILE_CHANGED = 7,
    /// The server answered with an error; the message has the HTTP status,
    /// the S3 error code, the server's words and its request id.
    BP_SERVER = 8,
    /// The connection failed: refused, reset, DNS, TLS, proxy.
    BP_NETWORK = 9,
    /// A request timed out, the job stalled (stall_timeout_ms) or ran past
    /// its deadline (deadline_ms).
    BP_TIMEOUT = 10,
    /// What the server stored does not match what was sent.
    BP_INTEGRITY = 11,
    /// The job was stopped (bp_job_stop, bp_job_free, bp_uploader_free).
    BP_STOPPED = 12,
    /// The job was paused (bp_job_pause); bp_resume continues it.
    BP_PAUSED = 13,
    /// A journal is unreadable, corrupt, or belongs to another batch.
    BP_JOURNAL = 14,
    /// Another process holds the journal's lock.
    BP_JOURNAL_LOCKED = 15,
    /// A bug inside batchput: an invariant broke.
    BP_INTERNAL = 16,
    /// A bug inside batchput: the call panicked (and was stopped at the
    /// boundary; the process is fine).
    BP_PANIC = 17,
    /// Not an error: there is nothing to read (bp_log_next, no log record
    /// waiting).
    BP_EMPTY = 18,
    /// Another logger is installed in the process (a Rust host set one up
    /// with the `log` crate): batchput's records go to it, and
    /// bp_set_log_level changed nothing.
    BP_LOGGER_IN_USE = 19,
    /// Not an error: there is nothing more (bp_list_next, at the end of
    /// the listing). (Since 0.3.0.)
    BP_DONE = 20,
    /// The caller's buffer is too small for the answer; the call's
    /// `*written` says how many bytes it needs (bp_presign). (Since 0.3.0.)
    BP_BUFFER_TOO_SMALL = 21,
}

/// Every status, in numeric order.
const ALL_STATUSES: [bp_status; 22] = [
    bp_status::BP_OK,
    bp_status::BP_PENDING,
    bp_status::BP_INVALID_ARGUMENT,
    bp_status::BP_INVALID_UTF8,
    bp_status::BP_MISUSE,
    bp_status::BP_INVALID_INPUT,
    bp_status::BP_LOCAL_IO,
    bp_status::BP_FILE_CHANGED,
    bp_status::BP_SERVER,
    bp_status::BP_NETWORK,
    bp_status::BP_TIMEOUT,
    bp_status::BP_INTEGRITY,
    bp_status::BP_STOPPED,
    bp_status::BP_PAUSED,
    bp_status::BP_JOURNAL,
    bp_status::BP_JOURNAL_LOCKED,
    bp_status::BP_INTERNAL,
    bp_status::BP_PANIC,
    bp_status::BP_EMPTY,
    bp_status::BP_LOGGER_IN_USE,
    bp_status::BP_DONE,
    bp_status::BP_BUFFER_TOO_SMALL,
];

impl bp_status {
    /// The status a Rust error maps to.
    pub fn from_kind(kind: ErrorKind) -> bp_status {
        match kind {
            ErrorKind::InvalidConfig => bp_status::BP_INVALID_ARGUMENT,
            ErrorKind::InvalidInput => bp_status::BP_INVALID_INPUT,
            ErrorKind::LocalIo => bp_status::BP_LOCAL_IO,
            ErrorKind::FileChanged => bp_status::BP_FILE_CHANGED,
            ErrorKind::Server => bp_status::BP_SERVER,
            ErrorKind::Network | ErrorKind::Tls => bp_status::BP_NETWORK,
            ErrorKind::Timeout => bp_status::BP_TIMEOUT,
            ErrorKind::Integrity => bp_status::BP_INTEGRITY,
            ErrorKind::Stopped => bp_status::BP_STOPPED,
            ErrorKind::Paused => bp_status::BP_PAUSED,
            ErrorKind::Journal => bp_status::BP_JOURNAL,
            ErrorKind::JournalLocked => bp_status::BP_JOURNAL_LOCKED,
            ErrorKind::Misuse => bp_status::BP_MISUSE,
            ErrorKind::Internal => bp_status::BP_INTERNAL,
        }
    }

    fn text(self) -> &'static std::ffi::CStr {
        match self {
            bp_status::BP_OK => c"ok",
            bp_status::BP_PENDING => c"still running (not an error)",
            bp_status::BP_INVALID_ARGUMENT => c"invalid argument",
            bp_status::BP_INVALID_UTF8 => c"string argument is not valid UTF-8",
            bp_status::BP_MISUSE => c"call does not fit the object's state",
            bp_status::BP_INVALID_INPUT => c"invalid batch",
            bp_status::BP_LOCAL_IO => c"cannot read a local file",
            bp_status::BP_FILE_CHANGED => c"a file changed while it uploaded",
            bp_status::BP_SERVER => c"the server answered with an error",
            bp_status::BP_NETWORK => c"network error",
            bp_status::BP_TIMEOUT => c"timed out",
            bp_status::BP_INTEGRITY => c"stored data does not match what was sent",
            bp_status::BP_STOPPED => c"stopped",
            bp_status::BP_PAUSED => c"paused",
            bp_status::BP_JOURNAL => c"journal error",
            bp_status::BP_JOURNAL_LOCKED => c"journal is locked by another process",
            bp_status::BP_INTERNAL => c"internal error (a bug in batchput)",
            bp_status::BP_PANIC => c"panic inside batchput (a bug)",
            bp_status::BP_EMPTY => c"nothing to read (not an error)",
            bp_status::BP_LOGGER_IN_USE => c"another logger is installed in the process",
            bp_status::BP_DONE => c"nothing more (not an error)",
            bp_status::BP_BUFFER_TOO_SMALL => c"the buffer is too small",
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error, prefixed with the
/// function that failed.
pub(crate) fn set_last_error(function: &str, message: impl Display) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        use std::fmt::Write;
        let _ = write!(e, "{function}: {message}");
    });
}

/// Records a Rust error as this thread's last error and returns its status.
pub(crate) fn fail(function: &str, err: &crate::Error) -> bp_status {
    set_last_error(function, err);
    bp_status::from_kind(err.kind())
}

/// Records an invalid-argument error and returns `BP_INVALID_ARGUMENT`.
pub(crate) fn invalid_argument(function: &str, message: impl Display) -> bp_status {
    set_last_error(function, message);
    bp_status::BP_INVALID_ARGUMENT
}

/// The error for a NULL pointer argument.
pub(crate) fn null_argument(function: &str, name: &str) -> bp_status {
    invalid_argument(function, format_args!("argument '{name}' is NULL"))
}

/// Copies `message` into the caller's buffer, snprintf-style: at most
/// `len - 1` bytes (cut at a UTF-8 character boundary) and a NUL, and the
/// full length (without the NUL) in `*written` when `written` is not NULL.
///
/// # Safety
/// `buf` is NULL with `len` 0, or points to `len` writable bytes; `written`
/// is NULL or writable.
pub(crate) unsafe fn copy_message(
    function: &str,
    message: &str,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bp_status {
    if buf.is_null() && len > 0 {
        return invalid_argument(
            function,
            format_args!("argument 'buf' is NULL but 'len' is {len}"),
        );
    }
    if len > 0 {
        let mut n = message.len().min(len - 1);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: buf has len writable bytes and n < len; the message does
        // not overlap a caller's buffer (it is ours).
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    if !written.is_null() {
        // SAFETY: not NULL, writable by the caller's contract.
        unsafe { written.write(message.len()) };
    }
    bp_status::BP_OK
}

/// Copies this thread's last error message into `buf`.
///
/// The last error is the message of the most recent call on this thread
/// that returned a failure status; calls that succeed leave it as it was
/// (like errno). It names the function and, for a bad argument, the
/// argument ("bp_config_set: option 'workers': must be between 1 and 1024
/// (got '0')"). An empty string when no call has failed on this thread.
///
/// Copies at most `len - 1` bytes and a terminating NUL, cut at a UTF-8
/// character boundary, like snprintf. `buf` may be NULL when `len` is 0.
/// OUT: `*written` (when `written` is not NULL) is the full length of the
/// message in bytes, NOT counting the NUL: the text was cut when
/// `*written >= len`.
///
/// Returns BP_OK, or BP_INVALID_ARGUMENT when `buf` is NULL and `len` > 0.
/// Thread safety: reads only this thread's state.
#[no_mangle]
pub unsafe extern "C" fn bp_last_error(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bp_status {
    ffi_panic_boundary!("bp_last_error", {
        let message = LAST_ERROR.with(|e| e.borrow().clone());
        unsafe { copy_message(FUNCTION, &message, buf, len, written) }
    })
}

/// A static, NUL-terminated description of a status ("invalid argument").
/// Never NULL, never to be freed. Any number is safe to pass, even one this
/// version does not know: that gives "unknown status". Thread safety: any
/// thread.
#[no_mangle]
pub extern "C" fn bp_status_str(status: u32) -> *const c_char {
    // A plain u32, not a bp_status: a Rust enum holding a value it does not
    // list would be undefined behaviour.
    ALL_STATUSES
        .iter()
        .find(|s| **s as u32 == status)
        .map_or(c"unknown status".as_ptr(), |s| s.text().as_ptr())
}
